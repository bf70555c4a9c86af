"""Scores that do not depend on the block: ``row_stable_matmul`` and ``recommend_top_k`` give a user the
same items and scores whichever users share the call, under the OpenBLAS kernels whose float32 GEMM
depends on a row's position (Haswell, Zen: the CI machine's) and this machine's own; the product
equals ``a @ b`` rounded to float32, and the exact top k survives a pool full of ties (the fallback
that scores every item)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from recomart.ranking.exact_top_k import exact_top_k
from recomart.ranking.gemm import ROW_TILE, row_stable_matmul

# Slices of 400 users as shards and blocks cut them (1-row, unaligned, spanning a tile boundary).
_CHECK = f"""
import numpy as np
import scipy.sparse as sp
from recomart.ranking.factors import FactorModel
from recomart.ranking.gemm import row_stable_matmul
from recomart.ranking.scoring import recommend_top_k
rng = np.random.default_rng(7)
a = rng.normal(size=(400, 66)).astype(np.float32)
b = np.ascontiguousarray(rng.normal(size=(3000, 66)).astype(np.float32)).T
whole = row_stable_matmul(a, b)
for lo, hi in ((0, 134), (134, 267), (267, 400), (5, 6), (3, 300), ({ROW_TILE} - 1, {ROW_TILE} + 2)):
    assert np.array_equal(row_stable_matmul(a[lo:hi], b), whole[lo:hi]), (lo, hi)
users, items = 400, 3000
factors = rng.normal(0, 0.1, (items, 64)).astype(np.float32)
factors[100:160] = factors[99]  # 61 items tied with item 99: wider than the pool
model = FactorModel(
    user_ids=np.arange(users).astype(str).astype(object), item_ids=np.arange(items).astype(str).astype(object),
    global_mean=3.5, user_bias=rng.normal(0, 0.2, users).astype(np.float32),
    item_bias=np.zeros(items, dtype=np.float32), user_factors=rng.normal(0, 0.1, (users, 64)).astype(np.float32),
    item_factors=factors,
)
model.user_factors[:50] = factors[99] * 50  # users whose best items are the tied ones
rows = np.arange(users)
seen = sp.csr_matrix(sp.diags((rows >= 50).astype(float)) @ sp.random(users, items, density=0.01, random_state=3))
idx, val = recommend_top_k(model, rows, 10, seen, block_size=users)
assert (idx[:50] == np.arange(99, 109)).all(), idx[:3]
for size in (1, 7, 134, 256):
    i2, v2 = recommend_top_k(model, rows, 10, seen, block_size=size)
    assert np.array_equal(i2, idx) and np.array_equal(v2, val), size
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


def test_a_pool_that_may_miss_the_best_items_is_replaced_by_every_item() -> None:
    """A pool whose lowest float32 score is not beaten by its k-th exact score by the error bound
    (here: claimed far higher) may miss better items: the user's every unmasked item is scored."""
    rng = np.random.default_rng(5)
    items = rng.normal(size=(50, 4)).astype(np.float32)
    users = rng.normal(size=(2, 4)).astype(np.float32)
    exact = users.astype(np.float64) @ items.astype(np.float64).T
    width, k = 6, 3
    worst = np.argsort(exact, axis=1, kind="stable")[:, :width].astype(np.int32)  # the pool: the worst items
    claimed = np.full((2, width), 1e9, dtype=np.float32)
    masked = int(np.argmax(exact[1]))  # user 1 may not get its best item
    mask = (np.array([0, 0, 1]), np.array([masked], dtype=np.int32), np.array([-1, 1]))
    out = (np.full((2, k), -1, dtype=np.int32), np.full((2, k), -np.inf, dtype=np.float32))
    exact_top_k(users, items, (worst, claimed), np.array([0.5, 0.0]), mask, out)
    allowed = exact.copy()
    allowed[1, masked] = -np.inf
    best = np.argsort(-allowed, axis=1, kind="stable")[:, :k]
    assert np.array_equal(out[0], best)
    np.testing.assert_allclose(out[1], np.take_along_axis(exact, best, axis=1) + [[0.5], [0.0]], rtol=1e-6)
