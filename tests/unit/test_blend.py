"""Blend weights fitted on a validation window, and the offline scorers built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recomart.model.blend_search import DEFAULT_WEIGHTS, fit_blend, fit_blend_options
from recomart.model.catalogue import Catalogue
from recomart.model.config import BlendSearch
from recomart.model.offline import component_scorer, hybrid_scorers, last_days_validation
from recomart.ranking.blend import COMPONENTS, BlendWeights

T = pd.Timestamp("2022-01-31", tz="UTC")


def _planted(seed: int = 0, n_users: int = 300, n_groups: int = 6, per_group: int = 12):
    """Users of group g buy items of group g; one popular item everyone buys; content is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        g = u % n_groups
        items = rng.choice(per_group, size=5, replace=False) + g * per_group
        for j, i in enumerate(items):
            rows.append((f"u{u:03d}", f"i{i:03d}", int(rng.integers(0, 60)), j == 4))
        rows.append((f"u{u:03d}", "i999", int(rng.integers(0, 60)), False))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "age", "held_out"])
    frame["event_timestamp"] = T - pd.to_timedelta(frame.pop("age"), unit="D")
    frame["rating"] = 1.0
    frame["purchases"] = 1
    train = frame[~frame.pop("held_out")]
    valid = frame.loc[frame.index.difference(train.index), ["user_id", "item_id"]]
    words = np.array(["red", "blue", "green", "yellow", "black", "white", "pink"])
    items = sorted(frame["item_id"].unique())
    products = pd.DataFrame(
        {
            "item_id": items,
            "title": [f"thing {w}" for w in rng.choice(words, len(items))],
            "description": "",
            "category": "misc",
            "brand": "",
            "price": 1.0,
        }
    )
    return train, valid, products


def test_coordinate_search_finds_the_planted_co_purchase_signal() -> None:
    train, valid, products = _planted()
    fit = fit_blend(train, valid, Catalogue(products))
    assert fit.fitted and fit.n_users == 300 and fit.evaluations > 5
    assert set(fit.weights) == set(COMPONENTS) and abs(sum(fit.weights.values()) - 1) < 1e-5
    assert fit.weights["item_item"] == max(fit.weights.values())
    assert fit.weights["cf"] == 0.0 and fit.weights["buy_again"] == 0.0  # no model, no repeats
    assert fit.validation_ndcg >= max(fit.single_ndcg.values())
    assert fit.single_ndcg["item_item"] > 2 * fit.single_ndcg["content"]
    # the stored form round-trips through the champion metadata
    assert BlendWeights.from_meta({"weights": fit.weights}).item_item > 0.3


def test_too_little_validation_data_gives_the_default() -> None:
    train, valid, products = _planted()
    fit = fit_blend(train, valid.head(10), Catalogue(products), search=BlendSearch(min_users=50))
    assert not fit.fitted and fit.weights == DEFAULT_WEIGHTS.as_dict()
    assert fit.weights["cf"] == 0.7 and fit.weights["content"] == 0.3


def test_offline_scorers_return_k_ids_and_never_the_seen_items() -> None:
    train, valid, products = _planted(seed=1)
    record: dict = {}
    scorers = hybrid_scorers(Catalogue(products), validation=last_days_validation(20), k=10, record=record)
    assert set(scorers) == {"hybrid", "item_item", "content", "popularity_recent"}
    users = np.array(["u000", "u001", "nobody"], dtype=object)
    for name, scorer in scorers.items():
        ids = scorer(train, users)
        assert ids.shape == (3, 10), name
        assert None not in set(ids[2])  # an unknown user gets the cold-start list, as when served
        seen = set(train.loc[train["user_id"] == "u000", "item_id"])
        assert not seen & set(ids[0]), name
    assert record["fitted"] and set(record["weights"]) == set(COMPONENTS)
    assert record["options"] in BlendSearch().option_candidates(False) and len(record["candidates"]) == 4
    # the planted group of u000 (items i000..i011) dominates its item-item list
    top = component_scorer("item_item", Catalogue(products), k=5)(train, users[:1])[0]
    assert sum(int(i[1:]) < 12 for i in top) >= 4


def test_option_candidates_cover_the_grid() -> None:
    plain, repeat = BlendSearch().option_candidates(False), BlendSearch().option_candidates(True)
    assert len(plain) == 4 and all("buy_again_half_life_days" not in c for c in plain)
    assert len(repeat) == 8 and {"top_n": 10, "prior_days": 30, "buy_again_half_life_days": 365.0} in repeat


def test_options_are_chosen_by_validation_ndcg() -> None:
    train, valid, products = _planted()
    fit = fit_blend_options(train, valid, Catalogue(products), candidates=[{"top_n": 1}, {"top_n": 50}])
    assert [t["options"] for t in fit.trials] == [{"top_n": 1}, {"top_n": 50}]
    assert fit.validation_ndcg == max(t["validation_ndcg"] for t in fit.trials)
    # one neighbour cannot reach the rest of the planted group: the wider neighbourhood wins
    assert fit.options == {"top_n": 50} and fit.trials[0]["validation_ndcg"] < fit.validation_ndcg
