"""The train DAG's reduce picks the trial ``tune`` would pick, whatever order the mapped trials finished in."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pandas as pd
import pytest

from recomart.model.config import TrainingConfig
from recomart.model.split import Split
from recomart.model.trials import TrialSpec, choose_trial, plan_trials, run_trial
from recomart.model.tuning import Trial, best_trial, svd_candidates, tune

CONFIG = TrainingConfig()  # tuning metric ndcg_at_10, higher is better


def _done(index: int, ndcg: float) -> dict:
    return {
        "index": index,
        "params": {"n_factors": index},
        "metrics": {"ndcg_at_10": ndcg},
        "seconds": 1.0,
        "factors": f"/stage/trial-{index:02d}.npz",
        "n_negatives": 100 + index,
    }


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_the_best_on_validation_wins_and_the_lowest_index_breaks_ties(order) -> None:
    figures = [0.30, 0.42, 0.42, 0.10]  # trials 1 and 2 tie
    results = [_done(i, figures[i]) for i in order]
    choice = choose_trial(results, CONFIG)
    assert choice["best_index"] == 1 and choice["params"] == {"n_factors": 1}
    assert choice["factors"] == "/stage/trial-01.npz" and choice["n_negatives"] == 101
    assert [t["index"] for t in choice["trials"]] == [0, 1, 2, 3]  # in index order, as tune_svd lists them
    # the same choice as the one-process search over the same figures
    searched = tune(
        lambda p: {"ndcg_at_10": figures[p["n_factors"]]},
        [{"n_factors": i} for i in range(4)],
        metric="ndcg_at_10",
        budget_s=60,
    )
    assert searched.best_params == choice["params"]


def test_a_lower_is_better_metric_and_a_later_nan_never_wins() -> None:
    trials = [
        Trial(0, {}, {"rmse": 0.9}, 1.0),
        Trial(1, {}, {"rmse": float("nan")}, 1.0),
        Trial(2, {}, {"rmse": 0.8}, 1),
    ]
    assert best_trial(list(reversed(trials)), "rmse").index == 2
    assert best_trial([trials[1], trials[0]], "rmse").index == 0


def test_skipped_trials_are_left_out_and_an_error_keeps_the_base_parameters() -> None:
    skipped = {"index": 2, "skipped": "the tuning budget of 300s was spent"}
    choice = choose_trial([skipped, _done(1, 0.2), _done(0, 0.1)], CONFIG)
    assert choice["best_index"] == 1 and len(choice["trials"]) == 2 and "1 skipped" in choice["reason"]
    failed = choose_trial([_done(0, 0.1), {"index": 1, "error": "no warm validation user"}], CONFIG)
    assert failed["params"] == dict(CONFIG.svd_params) and failed["trials"] == [] and failed["factors"] is None
    nothing = choose_trial([{"index": 0, "skipped": "no search: no validation window or a single candidate"}], CONFIG)
    assert nothing["params"] == dict(CONFIG.svd_params) and nothing["trials"] == [] and "no search" in nothing["reason"]


def _split(valid_rows: int) -> Split:
    frame = pd.DataFrame({"user_id": ["u"] * valid_rows, "item_id": ["i"] * valid_rows})
    return Split(train=frame, valid=frame, test=frame, info={})


def test_the_plan_is_the_seeded_candidates_in_order_or_one_spec_that_searches_nothing(tmp_path: Path) -> None:
    specs = plan_trials(CONFIG, _split(3), tmp_path, started=1000.0)
    assert [s.params for s in specs] == svd_candidates(CONFIG) and [s.index for s in specs] == list(range(6))
    assert all(s.search and s.deadline == 1000.0 + CONFIG.tuning_budget_s for s in specs)
    assert TrialSpec.from_dict(specs[3].as_dict()) == specs[3]
    (alone,) = plan_trials(CONFIG, _split(0), tmp_path, started=1000.0)  # no validation window
    assert not alone.search and alone.params == dict(CONFIG.svd_params)
    assert "no search" in run_trial(alone, CONFIG, exclude_seen=True)["skipped"]


def test_a_trial_after_the_deadline_is_skipped_but_the_first_always_runs(tmp_path: Path) -> None:
    late = TrialSpec(1, dict(CONFIG.svd_params), str(tmp_path), deadline=time.time() - 1)
    assert "budget" in run_trial(late, CONFIG, exclude_seen=True)["skipped"]
    first = TrialSpec(0, dict(CONFIG.svd_params), str(tmp_path / "missing"), deadline=time.time() - 1)
    with pytest.raises(FileNotFoundError):  # it runs (and finds no staged split here)
        run_trial(first, CONFIG, exclude_seen=True)
