"""Session re-ranking (``recomart.serving.rerank``): boosts of session items and their neighbours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import sparse

from recomart.serving.rerank import Neighbours, Session, rerank, session_boosts

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


def test_session_from_features() -> None:
    features = {"viewed_item_ids": ["a"], "viewed_at": [NOW], "bought_item_ids": ["b"], "bought_at": [NOW]}
    session = Session.from_features(features)
    assert session.viewed == [("a", NOW)] and session.bought == [("b", NOW)] and session.events == 2
