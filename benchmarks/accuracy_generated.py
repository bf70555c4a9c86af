"""The learned ranker vs the linear blend on the generated shop's held-out window (issue 19).

    .venv/bin/python -m benchmarks.accuracy_generated

Generates the shop (:func:`recomart.datasets.generator.generate`, seed 42, the demo's 2,000 users x 500
items x 60 days, a fixed last day so the run repeats), loads it through the real ``ingest_catalog``,
``ingest_events`` and ``transform`` DAGs into private databases on ``RECOMART_PG_URL`` (dropped at the
end), reads the training pairs and catalogue from the marts as the train DAG does, and splits them with
the train DAG's own split (:func:`recomart.model.train.split_for_training` with
:meth:`TrainingConfig.from_settings`).  On the test window of that split it scores, with the benchmark's
evaluation (:func:`benchmarks.accuracy.evaluate_scorers`, seen items excluded):

- ``blend``: the linear blend (the hybrid), weights and component options fitted on the split's
  validation window, blending the SVD tuned there;
- ``ranker``: the LambdaRank ranker (:func:`recomart.model.ranker_fit.ranker_scorer`): EASE / RP3β
  parameters and the candidates per generator chosen on the same validation window, learned on its
  labels, generators refitted on train + validation;
- ``popularity``, ``ease`` and ``rp3beta`` for reference.

Nothing is chosen on the test window.  The keys ``generated.ranker_ndcg_at_10`` and
``generated.blend_ndcg_at_10`` (and the evidence under ``details.generated``) are merged into ``--out``
(default ``benchmarks/results/accuracy.json``), read just before writing so no other section changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.accuracy import RESULTS, evaluate_scorers, popularity_scorer, tune_svd_params
from benchmarks.private_deployment import private_deployment
from benchmarks.results_file import run_metadata
from recomart import processes
from recomart.chain_progress import run_dags_with_progress
from recomart.config import Settings
from recomart.datasets import generator
from recomart.demo import chain_runs
from recomart.marts import read_catalogue, read_ratings
from recomart.model.catalogue import Catalogue
from recomart.model.component_search import Splitter, candidate_scorers
from recomart.model.config import TrainingConfig
from recomart.model.offline import hybrid_scorers, svd_fitter
from recomart.model.ranker_fit import ranker_scorer
from recomart.model.split import Split
from recomart.model.train import prepare_ratings, split_for_training
from recomart.stack import start_catalog_api
from recomart.tools import airflow_migrate

log = logging.getLogger("benchmarks.accuracy_generated")

#: the generator's code is used as it was at this commit (the one before issue 19's first commit);
#: later commits only added ``planted_tastes``, which :func:`generator.generate` does not call
GENERATOR_COMMIT = "f72804b18dcc43ec21b74135a17f4e675b7323e5"
GENERATOR_CHANGES = "git diff f72804b HEAD: only PlantedTastes / planted_tastes added; generate() unchanged"
SHOP = {"users": 2000, "items": 500, "days": 60, "seed": 42, "end_date": "2026-11-30"}
LOADING_DAGS = ("ingest_catalog", "ingest_events", "transform")
K = 10


def load_marts(s: Settings, shop: dict[str, Any]) -> tuple[pd.DataFrame, Catalogue, dict[str, float]]:
    """(rating pairs, catalogue, seconds per step) of the generated ``shop`` loaded by the real DAGs."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    generator.generate(
        s.landing_dir / "generated",
        users=shop["users"],
        items=shop["items"],
        days=shop["days"],
        seed=shop["seed"],
        end_date=date.fromisoformat(shop["end_date"]),
    )
    seconds["generate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        runs = [run for run in chain_runs(s) if run["dag_id"] in LOADING_DAGS]
        run_dags_with_progress(s, runs)
    finally:
        processes.stop(s, "catalog-api")
    seconds["dags_s"] = time.perf_counter() - started
    frames = read_catalogue(s.warehouse_url)
    return read_ratings(s.warehouse_url), Catalogue(frames.products, frames.users, False, None), seconds


def split_validation(split: Split) -> Splitter:
    """The splitter the scorers tune on: given the split's train + validation pairs, its train part
    (fit) and its validation pairs (labels), exactly as the train DAG carves them."""

    def validation(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if len(frame) != len(split.train_valid):
            raise ValueError("the validation splitter only splits the train DAG's train + validation pairs")
        return split.train, split.valid[["user_id", "item_id"]]

    return validation


def evaluate_generated(ratings: pd.DataFrame, catalogue: Catalogue, config: TrainingConfig) -> dict[str, Any]:
    """Blend, ranker and references on the train DAG's test window of ``ratings`` (see the module
    docstring): ``{"metrics", "info", "svd_tuning", "hybrid_fit", "candidates_fit", "split"}``."""
    split = split_for_training(prepare_ratings(ratings), None, config)
    validation = split_validation(split)
    svd_tuning: dict[str, Any] = {}
    params = tune_svd_params(split.train_valid, exclude_seen=True, validation=validation, k=K, record=svd_tuning)
    hybrid_fit: dict[str, Any] = {}
    candidates_fit: dict[str, Any] = {}
    hybrid = hybrid_scorers(
        catalogue, validation=validation, k=K, model_fitter=svd_fitter(config, params), record=hybrid_fit
    )
    scorers = {
        "popularity": popularity_scorer(exclude_seen=True, k=K),
        "blend": hybrid["hybrid"],
        **candidate_scorers(catalogue, validation=validation, k=K, record=candidates_fit),
        "ranker": ranker_scorer(
            catalogue,
            validation=validation,
            svd=config.svd_settings(params),
            k=K,
            seed=config.seed,
            record=candidates_fit.setdefault("ranker", {}),
        ),
    }
    metrics, info = evaluate_scorers(split.train_valid, split.test, scorers, k=K, exclude_seen=True)
    split_info = {**split.info, "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test)}
    return {
        "metrics": metrics,
        "info": info,
        "svd_tuning": svd_tuning,
        "hybrid_fit": hybrid_fit,
        "candidates_fit": candidates_fit,
        "split": split_info,
    }


def merge_into(out: Path, evaluation: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``generated.*`` keys and ``details.generated`` into ``out`` (its other sections unchanged)."""
    result = json.loads(out.read_text()) if out.is_file() else {}
    metrics = evaluation["metrics"]
    section = {f"{name}_ndcg_at_10": m["ndcg_at_10"] for name, m in metrics.items()}
    section.update({f"{name}_p_at_10": m["precision_at_10"] for name, m in metrics.items()})
    section["ranker_vs_blend_ndcg"] = metrics["ranker"]["ndcg_at_10"] / max(metrics["blend"]["ndcg_at_10"], 1e-12)
    section["ranker_n_candidates"] = evaluation["candidates_fit"]["ranker"]["n_candidates_choice"]["n_candidates"]
    result["generated"] = section
    result.setdefault("details", {})["generated"] = {**evaluation, "meta": meta}
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return section


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with private_deployment("gen_rank", RECOMART_DATASET="generated") as s:
        started = time.perf_counter()
        ratings, catalogue, seconds = load_marts(s, SHOP)
        config = TrainingConfig.from_settings(s)
        t = time.perf_counter()
        evaluation = evaluate_generated(ratings, catalogue, config)
        seconds["evaluate_s"] = time.perf_counter() - t
    meta = {
        **run_metadata(),
        "shop": SHOP,
        "generator_commit": GENERATOR_COMMIT,
        "generator_changes_since": GENERATOR_CHANGES,
        "seconds": {**seconds, "total_s": time.perf_counter() - started},
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "training_config": {"split": config.split, "split_options": dict(config.split_options), "seed": config.seed},
    }
    section = merge_into(args.out, evaluation, meta)
    print(json.dumps({"generated": section, "meta": meta}, indent=2, default=str))
    return section


if __name__ == "__main__":
    main(sys.argv[1:])
