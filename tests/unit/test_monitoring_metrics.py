"""The pure monitoring metrics: PSI (numeric quantile bins, categories, the epsilon floor) and the
recommendation-health metrics on lists whose figures are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recomart.monitoring.drift import (
    EPSILON,
    categorical_psi,
    feature_psi,
    numeric_psi,
    psi_from_shares,
    quantile_edges,
)
from recomart.monitoring.health import (
    Popularity,
    gini,
    intra_list_diversity,
    personalization,
    recommendation_health,
)


def test_psi_of_a_sample_against_itself_is_zero_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)
    same = rng.normal(0, 1, 20_000)
    assert numeric_psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert numeric_psi(reference, same) < 0.01
    small, large = numeric_psi(reference, same + 0.25), numeric_psi(reference, same + 1.0)
    assert 0.02 < small < 0.1 < 0.2 < large


def test_psi_matches_the_formula_on_hand_counted_bins() -> None:
    # reference deciles of 0..99 cut at 9.9, 19.8, ...; the current sample puts half its rows in the
    # first bin and half in the last
    reference = np.arange(100, dtype=float)
    current = np.array([0.0] * 50 + [99.0] * 50)
    ref = np.full(10, 0.1)
    cur = np.array([0.5] + [0.0] * 8 + [0.5])
    expected = sum(
        (c - r) * math.log(max(c, EPSILON) / r) if c else (EPSILON - r) * math.log(EPSILON / r)
        for c, r in zip(cur, ref, strict=True)
    )
    assert numeric_psi(reference, current) == pytest.approx(expected, rel=1e-9)


def test_repeated_quantiles_merge_into_one_bin_and_missing_values_get_their_own() -> None:
    zero_heavy = np.array([0.0] * 80 + list(range(1, 21)), dtype=float)
    edges = quantile_edges(zero_heavy)
    assert edges.size == np.unique(edges).size and edges.size < 9
    with_missing = np.append(zero_heavy[:90], [np.nan] * 10)
    assert numeric_psi(zero_heavy, with_missing) > 0.1  # 10 % of rows moved into the empty missing bin


def test_categorical_psi_counts_new_categories_and_uses_epsilon_for_empty_bins() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    assert categorical_psi(reference, reference.sample(frac=1, random_state=1)) == pytest.approx(0.0)
    shifted = pd.Series(["a"] * 50 + ["c"] * 50)  # b vanished, c is new
    expected = psi_from_shares(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5]))
    assert categorical_psi(reference, shifted) == pytest.approx(expected)
    assert expected > 0.2
    assert feature_psi(reference, shifted) == pytest.approx(expected)  # text -> categories


def test_gini_of_even_and_concentrated_exposure() -> None:
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)  # (n - 1) / n for one item taking all
    assert gini(np.array([])) == 0.0


def _lists(lists: dict[str, list[str]], strategy: str = "hybrid") -> pd.DataFrame:
    rows = [(u, r, i, strategy) for u, items in lists.items() for r, i in enumerate(items, 1)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "strategy"])


def test_personalization_is_one_minus_mean_pairwise_overlap() -> None:
    items = [f"i{n}" for n in range(30)]
    identical = _lists({"u1": items[:10], "u2": items[:10], "u3": items[:10]})
    disjoint = _lists({"u1": items[:10], "u2": items[10:20], "u3": items[20:30]})
    half = _lists({"u1": items[:10], "u2": items[5:15]})
    assert personalization(identical) == pytest.approx(0.0)
    assert personalization(disjoint) == pytest.approx(1.0)
    assert personalization(half) == pytest.approx(0.5)
    many = _lists({f"u{n}": items[n % 3 * 10 : n % 3 * 10 + 10] for n in range(300)})
    assert personalization(many, sample=50, seed=1) == personalization(many, sample=50, seed=1)  # seeded


def test_intra_list_diversity_by_category() -> None:
    category = pd.Series({"a1": "A", "a2": "A", "b1": "B", "b2": "B"})
    recs = _lists({"same": ["a1", "a2"], "mixed": ["a1", "b1"], "half": ["a1", "a2", "b1", "b2"]})
    # same: 0 of 1 pair differs; mixed: 1 of 1; half: 4 of 6
    assert intra_list_diversity(recs, category) == pytest.approx((0 + 1 + 4 / 6) / 3)


def test_recommendation_health_on_a_known_generation() -> None:
    catalogue = pd.Index([f"i{n}" for n in range(20)])
    category = pd.Series({f"i{n}": "even" if n % 2 == 0 else "odd" for n in range(20)})
    popularity = Popularity(pd.Series({"i0": 50.0, "i1": 25.0}), n_users=100)
    recs = pd.concat(
        [_lists({"u1": ["i0", "i1"], "u2": ["i0", "i2"]}), _lists({"new": ["i0", "i1"]}, "popular_cold_start")]
    )
    health = recommendation_health(recs, catalogue, popularity, category)
    assert health["coverage"] == pytest.approx(3 / 20)
    assert health["cold_start_share"] == pytest.approx(1 / 3)
    shares = np.array([0.5, 0.25, 0.5, 1 / 101, 0.5, 0.25])
    assert health["avg_rec_popularity"] == pytest.approx(shares.mean())
    assert health["novelty"] == pytest.approx(np.mean(-np.log2(shares)))
    assert health["intra_list_diversity"] == pytest.approx(2 / 3)  # u2's i0, i2 share a category
    # pairs share 1 (u1, u2), 2 (u1, new) and 1 (u2, new) items; overlap is counted out of k = 10 slots
    assert health["personalization"] == pytest.approx(1 - (1 + 2 + 1) / 3 / 10)


def _experiment_frame(users_a: int, users_b: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = users_a + users_b
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "variant": ["hybrid"] * users_a + ["popularity"] * users_b,
            "converted": rng.binomial(1, 0.1, n),
            "revenue": np.nan,
            "pre_metric": rng.poisson(1.0, n).astype(float),
            "first_exposure_day": pd.Timestamp("2026-11-01").date(),
        }
    )


@pytest.mark.parametrize(("users_b", "status"), [(5000, "ok"), (4000, "alert")])
def test_experiment_checks_alert_on_a_sample_ratio_mismatch(users_b: int, status: str) -> None:
    from recomart.experiments.analysis import analyse
    from recomart.monitoring.evaluate import EXPERIMENT_KEYS, experiment_checks

    result = analyse(_experiment_frame(5000, users_b), control="hybrid", shares={"hybrid": 0.5, "popularity": 0.5})
    checks = experiment_checks("exp1", result.as_dict())
    [srm] = [c for c in checks if c.metric_key == "experiment.srm_p"]
    assert srm.status == status and srm.scope == "exp1"
    assert {c.metric_key for c in checks} == set(EXPERIMENT_KEYS)
    assert {c.subject for c in checks if c.metric_key == "experiment.conversion"} == {"exp1:hybrid", "exp1:popularity"}
