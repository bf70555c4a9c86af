"""Row-stable products: a row's scores are the same whichever rows share the call, under the OpenBLAS
kernels whose float32 GEMM depends on a row's position (Haswell, Zen: the CI machine's) and this
machine's own; and they equal ``a @ b`` rounded to float32."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from recomart.ranking.gemm import ROW_TILE, row_stable_matmul

# Slices of 400 users as shards and blocks cut them (1-row, unaligned, spanning a tile boundary).
_CHECK = f"""
import numpy as np
from recomart.ranking.gemm import row_stable_matmul
rng = np.random.default_rng(7)
a = rng.normal(size=(400, 66)).astype(np.float32)
b = np.ascontiguousarray(rng.normal(size=(3000, 66)).astype(np.float32)).T
whole = row_stable_matmul(a, b)
for lo, hi in ((0, 134), (134, 267), (267, 400), (5, 6), (3, 300), ({ROW_TILE} - 1, {ROW_TILE} + 2)):
    assert np.array_equal(row_stable_matmul(a[lo:hi], b), whole[lo:hi]), (lo, hi)
print("ok")
"""


@pytest.mark.parametrize("coretype", ["", "Haswell", "Zen"])
def test_a_row_scores_the_same_in_any_slice(coretype: str) -> None:
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype}
    done = subprocess.run([sys.executable, "-c", _CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_it_is_the_product_rounded_to_float32_and_fills_out() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2 * ROW_TILE + 5, 9)).astype(np.float32)
    b = rng.normal(size=(9, 31)).astype(np.float32)
    out = np.full((len(a), 31), np.nan, dtype=np.float32)
    got = row_stable_matmul(a, b, out=out)
    assert got is out and got.dtype == np.float32
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-6, atol=1e-6)
    assert row_stable_matmul(a[:0], b).shape == (0, 31)
