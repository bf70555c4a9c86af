"""The accuracy benchmark's evaluation loop, baselines and UCI cleaning on tiny hand-made frames."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ lives at the project root, outside the installed package
    sys.path.insert(0, str(ROOT))
A = importlib.import_module("benchmarks.accuracy")

TRAIN = pd.DataFrame(
    {
        "user_id": ["a", "a", "b", "b", "c"],
        "item_id": ["x", "y", "x", "z", "x"],
        "rating": 1.0,
        "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
        "purchases": [1, 5, 2, 1, 1],
    }
)
# a re-buys y (a repeat) and discovers z; b discovers y; c buys only x again
TEST = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["y", "z", "y", "x"]})


def fixed(lists: dict[str, list]) -> A.Scorer:
    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        return np.array([lists[u] for u in users], dtype=object)

    return score


def test_discovery_excludes_bought_items_from_relevant_set_and_ranking() -> None:
    cheat = fixed({"a": ["y", "z"], "b": ["y", "x"]})  # 'y' for a and 'x' for b were bought before
    metrics, info = A.evaluate_scorers(TRAIN, TEST, {"cheat": cheat}, k=2, exclude_seen=True)
    assert info["n_eval_users"] == 2  # c has nothing new to discover
    # a: y blanked, z hit at rank 2 (1 relevant); b: y hit at rank 1
    assert metrics["cheat"]["precision_at_2"] == pytest.approx((0.5 + 0.5) / 2)
    assert metrics["cheat"]["ndcg_at_2"] == pytest.approx((1 / np.log2(3) + 1.0) / 2)


def test_replenishment_counts_repeats() -> None:
    scorers = {"buy_again": A.buy_again_scorer(k=2), "popularity": A.popularity_scorer(exclude_seen=False, k=2)}
    metrics, info = A.evaluate_scorers(TRAIN, TEST, scorers, k=2, exclude_seen=False)
    assert info["n_eval_users"] == 3
    ids = A.buy_again_scorer(k=2)(TRAIN, np.array(["a", "b", "c"], dtype=object))
    assert ids[0].tolist() == ["y", "x"]  # own counts first (y bought 5 times)
    assert ids[2].tolist() == ["x", "y"]  # c's own x, then the popular items fill the slot
    # a: y hit at rank 1 of 2 relevant; b: [x, z] misses its new y; c: x hit
    idcg2 = 1 + 1 / np.log2(3)
    assert metrics["buy_again"]["hit_rate_at_2"] == pytest.approx(2 / 3)
    assert metrics["buy_again"]["ndcg_at_2"] == pytest.approx((1 / idcg2 + 0 + 1) / 3)
    # popularity [x, y] for everyone: a's y at rank 2, b's y at rank 2, c's x at rank 1
    assert metrics["popularity"]["ndcg_at_2"] == pytest.approx((1 / np.log2(3) / idcg2 + 1 / np.log2(3) + 1) / 3)


def test_popularity_masks_seen_items_in_discovery() -> None:
    ids = A.popularity_scorer(exclude_seen=True, k=2)(TRAIN, np.array(["a", "c"], dtype=object))
    assert ids[0].tolist() == ["z", None]  # a has seen x and y; only z is left
    assert ids[1].tolist() == ["y", "z"]


def test_scorer_with_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        A.evaluate_scorers(TRAIN, TEST, {"bad": fixed({"a": ["y"], "b": ["y"], "c": ["x"]})}, k=2, exclude_seen=False)


def test_extra_scorers_are_optional_and_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert A.extra_scorers("uci", "discovery", module_name="recomart.no_such_module") == {}
    fake = types.ModuleType("fake_extra_scorers")

    def benchmark_scorers(dataset: str, setting: str, k: int = 10) -> dict:
        def broken(train, users):
            raise RuntimeError("boom")

        return {"good": fixed({"a": ["y", "z"], "b": ["y", "x"]}), "broken": broken}

    fake.benchmark_scorers = benchmark_scorers
    monkeypatch.setitem(sys.modules, "fake_extra_scorers", fake)
    errors: dict[str, str] = {}
    scorers = A.extra_scorers("uci", "discovery", 2, module_name="fake_extra_scorers", errors=errors)
    assert set(scorers) == {"good", "broken"}
    metrics, _ = A.evaluate_scorers(TRAIN, TEST, scorers, k=2, exclude_seen=True)
    assert metrics["good"]["ndcg_at_2"] > 0 and metrics["broken"]["ndcg_at_2"] == 0
    assert "boom" in errors["broken"]


def test_clean_uci_mirrors_the_dbt_rules() -> None:
    rows = [
        ("536365", "85123A", "HEART", 6, "2010-12-01 08:26:00", 2.55, "17850.0", "UK"),  # kept
        ("536365", "85123A", "HEART", 6, "2010-12-01 08:26:00", 2.55, "17850.0", "UK"),  # exact duplicate
        ("536366", "22633", "HAND", 6, "2011-06-01 08:28:00", 1.85, "", "UK"),  # no customer
        ("C536379", "22633", "HAND", 1, "2010-12-01 09:41:00", 1.85, "14527.0", "UK"),  # cancellation
        ("536370", "POST", "POSTAGE", 3, "2010-12-01 08:45:00", 18.0, "12583.0", "FR"),  # not a product
        ("536371", "gift_0001_10", "VOUCHER", 1, "2010-12-01 09:00:00", 8.5, "12583.0", "FR"),  # voucher
        ("536372", "22632", "HAND", 0, "2010-12-01 09:01:00", 1.85, "17850.0", "UK"),  # quantity 0
        ("536373", "22632", "HAND", 2, "2010-12-01 09:02:00", 0.0, "17850.0", "UK"),  # price 0
        ("536374", "23843", "DOORMAT", 80995, "2011-12-09 09:15:00", 2.08, "16446.0", "UK"),  # outlier
        ("536375", "22632", "HAND", 2, "2011-06-01 09:02:00", 1.85, "17850.0", "UK"),  # kept, BST
    ]
    raw = pd.DataFrame(rows, columns=A.UCI_COLUMNS).replace({"CustomerID": {"": None}})
    clean = A.clean_uci(raw)
    assert clean.order_id.tolist() == ["536365", "536375"]
    assert clean.user_id.tolist() == ["17850", "17850"]
    # UK local time to UTC: GMT in December, BST (UTC+1) in June
    assert clean.event_timestamp.tolist() == [
        pd.Timestamp("2010-12-01 08:26:00", tz="UTC"),
        pd.Timestamp("2011-06-01 08:02:00", tz="UTC"),
    ]
    pairs = A.pairs_from_events(clean)
    assert pairs.purchases.tolist() == [1, 1] and pairs.rating.tolist() == [1.0, 1.0]


def test_extra_scorers_get_the_benchmark_validation_and_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("fake_hook_kwargs")
    seen: dict = {}

    def benchmark_scorers(dataset: str, setting: str, k: int = 10, **kwargs) -> dict:
        seen.update(kwargs)
        return {}

    fake.benchmark_scorers = benchmark_scorers
    monkeypatch.setitem(sys.modules, "fake_hook_kwargs", fake)

    def splitter(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return frame, frame

    record: dict = {}
    A.extra_scorers("uci", "replenishment", module_name="fake_hook_kwargs", validation=splitter, record=record)
    assert seen["validation"] is splitter and seen["record"] is record


def test_only_keeps_the_named_scorers_and_rejects_unknown_names() -> None:
    scorers = {"svd": fixed({}), "ease": fixed({}), "rp3beta": fixed({})}
    assert A._only(scorers, None) is scorers
    assert set(A._only(scorers, frozenset({"ease", "buy_again"}))) == {"ease"}  # buy-again: replenishment only
    with pytest.raises(ValueError, match="no scorer named eas"):
        A._only(scorers, frozenset({"eas"}))


def test_merge_rows_adds_only_the_new_rows_on_the_same_evaluation_set() -> None:
    info = {"n_eval_users": 3, "n_relevant_pairs": 4, "n_items": 3}
    stored = {"info": dict(info), "metrics": {"svd": {"ndcg_at_10": 0.2}}, "extra_scorer_errors": {}}
    fresh = {
        "info": dict(info),
        "metrics": {"ease": {"ndcg_at_10": 0.3}},
        "candidates_fit": {"ease": {"params": {"l2": 500.0}}},
        "extra_scorer_errors": {},
    }
    A._merge_rows(stored, fresh, "ml_ranking")
    assert stored["metrics"] == {"svd": {"ndcg_at_10": 0.2}, "ease": {"ndcg_at_10": 0.3}}
    assert stored["candidates_fit"] == {"ease": {"params": {"l2": 500.0}}}
    # a later --only run of another scorer: the hook leaves {} for the scorers that did not run
    ranker = {**fresh, "metrics": {"ranker": {"ndcg_at_10": 0.4}}}
    A._merge_rows(stored, {**ranker, "candidates_fit": {"ease": {}, "ranker": {"best_iteration": 9}}}, "ml_ranking")
    assert stored["candidates_fit"] == {"ease": {"params": {"l2": 500.0}}, "ranker": {"best_iteration": 9}}
    assert "hybrid_fit" not in stored  # only a re-run hybrid replaces the stored fit evidence
    A._merge_rows(stored, {**fresh, "hybrid_fit": {"options": {"content_embedding": 1.0}}}, "ml_ranking")
    assert stored["hybrid_fit"] == {"options": {"content_embedding": 1.0}}
    other = {**fresh, "info": {**info, "n_eval_users": 2}}
    with pytest.raises(ValueError, match="n_eval_users 2 differs from the stored 3"):
        A._merge_rows(stored, other, "uci/discovery")
