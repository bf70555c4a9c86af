"""What compressing a registered model's arrays costs: ``.venv/bin/python -m benchmarks.model_arrays``.

A dense ``--items`` x ``--items`` float32 matrix (EASE's item cap: 10,000) of seeded small normal
values, like the weights a model stores, is written to a temporary folder and read back ``--repeat``
times, with :func:`recomart.model.serialization.write_arrays` (plain ``.npz``, what registration
writes) and with ``np.savez_compressed`` (what it wrote before), both read with
:func:`~recomart.model.serialization.read_arrays`.  Reported: the median seconds of each, the files'
sizes, and the ratios compressed / plain.  The page cache holds the files, so this is the CPU cost of
(de)compression and copying, not the disk's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.item_similarity import median_seconds
from benchmarks.results_file import ROOT, run_metadata, write_result
from recomart.model.serialization import read_arrays, write_arrays

RESULTS = ROOT / "benchmarks" / "results" / "model_arrays.json"


def _compressed(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def _ratio(slow: float, fast: float) -> float | None:
    """``slow / fast`` to 1 decimal; None when ``fast`` rounded to 0 ms (a matrix too small to time)."""
    return round(slow / fast, 1) if fast > 0 else None


def measure(items: int, repeat: int) -> dict[str, Any]:
    """Median write and read seconds and file MB of both forms, and their ratios."""
    arrays = {"ease/weights": (np.random.default_rng(0).standard_normal((items, items)) * 1e-3).astype(np.float32)}
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="recomart-arrays-") as folder:
        for name, write in (("plain", write_arrays), ("compressed", _compressed)):
            path = Path(folder) / f"{name}.npz"
            figures[name] = {
                "write_s": median_seconds(lambda path=path, write=write: write(path, arrays), repeat),
                "read_s": median_seconds(lambda path=path: read_arrays(path), repeat),
                "mb": round(path.stat().st_size / 1e6, 1),
            }
    plain, compressed = figures["plain"], figures["compressed"]
    return {
        "items": items,
        "array_mb": round(arrays["ease/weights"].nbytes / 1e6, 1),
        "repeat": repeat,
        **figures,
        "write_ratio_compressed_over_plain": _ratio(compressed["write_s"], plain["write_s"]),
        "read_ratio_compressed_over_plain": _ratio(compressed["read_s"], plain["read_s"]),
        "size_ratio_compressed_over_plain": round(compressed["mb"] / plain["mb"], 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="the square matrix's side (default 10,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each write and read; the median counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    write_result({**measure(args.items, args.repeat), **run_metadata()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
