"""Session re-ranking (``recomart.serving.rerank``): boosts of session items and their neighbours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import sparse

from recomart.features.session import SESSION_FIELDS
from recomart.serving.rerank import SESSION_FEATURES, Neighbours, Session, rerank, session_boosts

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _neighbours() -> Neighbours:
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    sim = sparse.csr_matrix(
        np.array([[0, 0.5, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0.8], [0, 0, 0.8, 0]], dtype=np.float32)
    )
    return Neighbours(ids, sim, {item: n for n, item in enumerate(ids)})


def test_viewed_item_and_its_neighbours_are_boosted_older_views_less() -> None:
    session = Session(viewed=[("a", NOW), ("c", NOW - timedelta(hours=1))])
    boosts = session_boosts(session, _neighbours(), NOW)
    assert boosts["a"] == 1.0 and boosts["b"] == 0.5
    assert boosts["c"] == 0.25 and boosts["d"] == pytest.approx(0.8 * 0.25)


def test_no_session_keeps_the_nightly_order_minus_exclusions() -> None:
    ranked = rerank(["x", "y", "z"], [0.9, 0.5, 0.1], {}, 1.0, exclude={"y"})
    assert [r.item_id for r in ranked] == ["x", "z"]


def test_boosted_neighbour_enters_and_bought_item_leaves() -> None:
    ranked = rerank(["x", "y"], [1.0, 0.8], {"b": 1.0, "y": 0.5}, 0.5, exclude={"x"})
    assert [r.item_id for r in ranked] == ["y", "b"]
    assert ranked[0].score == 0.5 * 0.8 + 0.5 * 0.5 and ranked[1].nightly_score == 0.0


def test_unknown_session_item_has_no_neighbours_but_counts_itself() -> None:
    assert session_boosts(Session(carted=[("zz", NOW)]), _neighbours(), NOW) == {"zz": 1.0}


def test_re_ranking_reads_only_features_of_the_session_contract() -> None:
    assert set(SESSION_FEATURES) <= {field.name for field in SESSION_FIELDS}
    assert len(SESSION_FEATURES) == 6


def test_session_from_features() -> None:
    features = {"viewed_item_ids": ["a"], "viewed_at": [NOW], "bought_item_ids": ["b"], "bought_at": [NOW]}
    session = Session.from_features(features)
    assert session.viewed == [("a", NOW)] and session.bought == [("b", NOW)] and session.events == 2


def _loop_boosts(session: Session, neighbours: Neighbours, half_life_s: float = 1800.0) -> dict[str, float]:
    """The definition of the boosts, item by item (the oracle of the vectorised version)."""
    boosts: dict[str, float] = {}
    for item, at in [*session.viewed, *session.carted]:
        decay = 0.5 ** ((NOW - at).total_seconds() / half_life_s)
        ids, sims = neighbours.of(item)
        for neighbour, sim in [(item, 1.0), *zip(ids.tolist(), sims.tolist(), strict=True)]:
            boosts[neighbour] = boosts.get(neighbour, 0.0) + decay * sim
    top = max(boosts.values())
    return {item: value / top for item, value in boosts.items()}


def test_vectorised_boosts_and_order_match_the_item_by_item_definition() -> None:
    rng = np.random.default_rng(7)
    ids = np.array([f"i{n}" for n in range(300)], dtype=object)
    rows, cols = np.repeat(np.arange(300), 20), rng.integers(0, 300, 300 * 20)
    sim = sparse.csr_matrix((rng.random(6000).astype(np.float32), (rows, cols)), shape=(300, 300))
    neighbours = Neighbours(ids, sim, {item: n for n, item in enumerate(ids)})
    viewed = [(f"i{n}", NOW - timedelta(minutes=3 * k)) for k, n in enumerate(rng.integers(0, 300, 15))]
    session = Session(viewed=[*viewed, ("not-in-model", NOW), viewed[0]], carted=[("i5", NOW), ("not-in-model", NOW)])
    boosts = session_boosts(session, neighbours, NOW)
    assert list(boosts.items()) == list(_loop_boosts(session, neighbours).items())  # values and order
    ranked = rerank(["i1", "i2", "x"], [0.3, float("nan"), 0.3], boosts, 0.5, exclude={"i5"})
    expected = sorted(
        (
            ((0.5 * n + 0.5 * boosts.get(item, 0.0)), -pos, item)
            for pos, (item, n) in enumerate(
                [("i1", 1.0), ("i2", 0.0), ("x", 1.0), *((b, 0.0) for b in boosts if b not in {"i1", "i2", "x", "i5"})]
            )
        ),
        reverse=True,
    )
    assert [r.item_id for r in ranked] == [item for _, _, item in expected]
    assert len(ranked) == len(expected) and ranked[-1].item_id == ranked[len(ranked) - 1].item_id


def test_rows_read_in_any_order_follow_the_stable_order_of_the_scores_ties_included() -> None:
    rng = np.random.default_rng(3)
    items = [f"n{k}" for k in range(300)]
    scores = rng.integers(0, 20, 300).astype(float).tolist()  # many ties, also across the head's edge
    boosts = {f"n{k}": float(v) for k, v in zip(rng.integers(0, 400, 200).tolist(), rng.random(200), strict=False)}
    boosts |= {f"new{k}": 0.5 for k in range(50)}
    expected = rerank(items, scores, boosts, 0.3)
    order = np.argsort(-expected._scores, kind="stable")  # the definition: ties keep the candidates' order
    want = [expected._items[at] for at in order]
    head = rerank(items, scores, boosts, 0.3)
    assert [head[n].item_id for n in range(10)] == want[:10]  # only the first rows built so far
    assert [r.item_id for r in head] == want  # reading on builds the rest
    assert [r.item_id for r in rerank(items, scores, boosts, 0.3)] == want  # iterated from the start
    assert list(rerank(items, scores, boosts, 0.3)) == [head[n] for n in range(len(head))]
    assert [r.item_id for r in rerank(items, scores, boosts, 0.3)[-5:]] == want[-5:]


def test_repeated_nightly_item_keeps_its_first_place_and_last_score() -> None:
    ranked = rerank(["a", "b", "a"], [0.9, 0.5, 0.7], {}, 0.0)
    assert [(r.item_id, r.nightly_score) for r in ranked] == [("a", 0.7 / 0.9), ("b", 0.5 / 0.9)]


def test_scratch_slots_are_left_clean_so_the_next_session_is_not_mixed_with_this_one() -> None:
    neighbours = _neighbours()
    first = Session(viewed=[("a", NOW), ("zz", NOW)], carted=[("c", NOW)])
    assert list(session_boosts(first, neighbours, NOW).items()) == list(_loop_boosts(first, neighbours).items())
    ranked = rerank(["d", "x"], [1.0, 0.5], session_boosts(first, neighbours, NOW), 0.5, exclude={"b"})
    assert [r.item_id for r in ranked][:2] == ["d", "a"]
    assert (neighbours.slots(0) == -1).all()
    second = Session(viewed=[("b", NOW)])
    assert session_boosts(second, neighbours, NOW) == _loop_boosts(second, neighbours) == {"b": 1.0, "a": 0.5}
