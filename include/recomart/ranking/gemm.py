"""Dense user × item products whose rows do not depend on the other rows of the call.

BLAS chooses its kernel, and with it the order in which a dot product is summed, by the shape of the
call, and OpenBLAS's single-precision kernels for Haswell and Zen also by a row's position in it.  A
user ranked by a shard of 134 users then gets scores that differ in their last bits from the same
user ranked among 400, and the published rows depend on the shard count.  :func:`row_stable_matmul`
calls BLAS only with one shape (``ROW_TILE`` rows, the last tile zero-padded) in double precision,
whose kernels give a row the same result at any position of a tile (checked for OpenBLAS's SkylakeX,
Haswell, Zen, SandyBridge, Nehalem, Cooperlake and SapphireRapids kernels), and rounds to float32.
It costs about 2.5× one float32 GEMM, a few seconds of a nightly run at 100k × 20k.
"""

from __future__ import annotations

import numpy as np

#: Rows per BLAS call.
ROW_TILE = 128


def row_stable_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` as float32[m, n] (``a``: [m, f], ``b``: [f, n], any float dtype), each row equal to the
    product of that row alone; written into ``out`` (float32[m, n]) when given, which is returned."""
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.float32)
    b64 = np.asarray(b, dtype=np.float64)
    tile = np.zeros((ROW_TILE, a.shape[1]), dtype=np.float64)
    product = np.empty((ROW_TILE, n), dtype=np.float64)
    for start in range(0, m, ROW_TILE):
        rows = min(ROW_TILE, m - start)
        tile[rows:] = 0.0
        tile[:rows] = a[start : start + rows]
        np.matmul(tile, b64, out=product)
        out[start : start + rows] = product[:rows]
    return out
