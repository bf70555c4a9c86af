"""How fast the machine is right now: a fixed CPU workload, timed.

On a shared virtual machine the same work can take 1.3 to 1.7 times as long from one hour to the next
(docs/scaling.md: two scale studies of one day). A benchmark that records this probe next to its figures
lets two runs be compared by the machine's speed as well as by their code: the ratio of two probes is
the ratio of the machine's speeds, as far as one core's integer, memory and numpy work tell it.

``.venv/bin/python -m benchmarks.speed_probe`` prints one probe.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.item_similarity import median_seconds

#: the fixed workloads' sizes: about 0.1 to 0.2 s each on the reference machine
SORT_VALUES = 5_000_000
LOOP_STEPS = 2_000_000


def _numpy_sort() -> None:
    """One core of numpy: sort a fixed array (no BLAS, so no thread pool to vary)."""
    np.sort(np.random.default_rng(7).random(SORT_VALUES))


def _python_loop() -> None:
    """The interpreter alone: a fixed arithmetic loop."""
    total = 0
    for step in range(LOOP_STEPS):
        total += step * step % 7


def probe(repeats: int = 5) -> dict[str, float]:
    """``{"numpy_sort_s", "python_loop_s"}``: the median seconds of ``repeats`` runs of each fixed
    workload (lower is faster)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    return {
        "numpy_sort_s": median_seconds(_numpy_sort, repeats),
        "python_loop_s": median_seconds(_python_loop, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each workload (their median is kept)")
    print(json.dumps(probe(parser.parse_args(argv).repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
