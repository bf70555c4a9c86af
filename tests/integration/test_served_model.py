"""The registered model is the served model: ``mlflow.pyfunc.load_model("models:/<name>@champion")``
ranked against the generation's history returns ``reco.user_recommendations`` row for row.

The train DAG's task registers the champion on hand-made marts; the history then moves on (new
purchases of known users, new users the factors do not know, users without history) before the
nightly job runs, so seen items and buy-again must come from the history passed in, not from sets
frozen at training.  The pyfunc is also loaded in a fresh interpreter where ``recomart`` is not
importable, as in a process with only the lock installed.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import psycopg
import pytest
from test_reco_writer import copy_frame  # tests/integration is on sys.path (rootdir import mode)
from test_train import planted_ratings

from recomart.config import Settings
from recomart.marts import read_ranking_inputs
from recomart.ranking.hybrid import RANKED_COLUMNS

pytestmark = pytest.mark.integration

N_NEW_USERS, N_COLD_USERS, N_REPEAT_BUYERS = 25, 30, 40
AFTER = pd.Timedelta(days=2)  # how long after the training data the new interactions happen

_MARTS_DDL = """
CREATE SCHEMA marts;
CREATE TABLE marts.user_item_ratings (
    user_id text, item_id text, rating double precision, interactions integer, purchases integer,
    last_interaction_at timestamptz, event_timestamp timestamptz);
CREATE TABLE marts.user_features (user_id text, segment text, event_timestamp timestamptz);
CREATE TABLE marts.dim_products (item_id text, title text, description text, category text, brand text, price numeric);
"""


def _products(items: np.ndarray) -> pd.DataFrame:
    cats = np.array(["Shoes", "Books", "Garden", "Kitchen"])[np.arange(len(items)) % 4]
    return pd.DataFrame(
        {
            "item_id": items,
            "title": [f"{c} item {i}" for c, i in zip(cats, items, strict=True)],
            "description": "a product",
            "category": cats,
            "brand": np.array(["acme", "zeta"])[np.arange(len(items)) % 2],
            "price": 10.0 + np.arange(len(items)) % 7,
        }
    )


def _rating_rows(pairs: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    return pairs.assign(
        interactions=1, purchases=1, last_interaction_at=pairs["event_timestamp"], event_timestamp=as_of
    )[["user_id", "item_id", "rating", "interactions", "purchases", "last_interaction_at", "event_timestamp"]]


@pytest.fixture(scope="module")
def marts_dsn(private_database) -> str:
    """Marts of planted tastes: 300 users (two segments) × 100 items, every pair a purchase."""
    dsn = private_database("served")
    ratings = planted_ratings()
    users = np.sort(ratings["user_id"].unique())
    as_of = ratings["event_timestamp"].max()
    segments = pd.DataFrame(
        {
            "user_id": users,
            "segment": np.where(np.arange(len(users)) % 3 == 0, "vip", "regular"),
            "event_timestamp": as_of,
        }
    )
    with psycopg.connect(dsn) as conn:
        conn.execute(_MARTS_DDL)
        copy_frame(conn, "marts.dim_products", _products(np.sort(ratings["item_id"].unique())))
        copy_frame(conn, "marts.user_features", segments)
        copy_frame(conn, "marts.user_item_ratings", _rating_rows(ratings, as_of))
    return dsn


def _newer_history(dsn: str) -> dict[str, str]:
    """After training: known users buy an item they never touched, new users (unknown to the factors)
    buy a few items, cold users appear without history.  Returns {known user: item bought after training}."""
    ratings = planted_ratings()
    rng = np.random.default_rng(3)
    items = np.sort(ratings["item_id"].unique())
    as_of = ratings["event_timestamp"].max() + AFTER
    seen = ratings.groupby("user_id")["item_id"].agg(set)
    buyers = np.sort(ratings["user_id"].unique())[:: len(seen) // N_REPEAT_BUYERS][:N_REPEAT_BUYERS]
    bought = {user: str(rng.choice([i for i in items if i not in seen[user]])) for user in buyers}
    new_users = [f"n{n:03d}" for n in range(N_NEW_USERS)]
    rows = [(user, item) for user, item in bought.items()]
    rows += [(user, str(item)) for user in new_users for item in rng.choice(items, 3, replace=False)]
    newer = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=4.0, event_timestamp=as_of)
    cold_users = [f"c{n:03d}" for n in range(N_COLD_USERS)]
    segments = pd.DataFrame(
        {
            "user_id": new_users + cold_users,
            "segment": ["vip" if n % 2 else "regular" for n in range(N_NEW_USERS + N_COLD_USERS)],
            "event_timestamp": as_of,
        }
    )
    with psycopg.connect(dsn) as conn:
        copy_frame(conn, "marts.user_item_ratings", _rating_rows(newer, as_of))
        copy_frame(conn, "marts.user_features", segments)
    return bought


@pytest.fixture(scope="module")
def served(marts_dsn: str, test_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train and register (the train DAG's task), move the history on, run the nightly job, and keep
    the generation's users and history (as the nightly job read them) for predict()."""
    from recomart.recommend.run import generate_recommendations
    from recomart.tasks.train import train_and_register

    summary = train_and_register(test_settings, marts_dsn)
    assert summary["decision"] == "promoted", summary["reason"]
    bought = _newer_history(marts_dsn)
    result = generate_recommendations(
        marts_dsn,
        tracking_uri=test_settings.mlflow_tracking_uri,
        model_name=test_settings.model_name,
        dataset=test_settings.dataset,
        log=lambda _: None,
    )
    inputs = read_ranking_inputs(marts_dsn)
    history_path = tmp_path_factory.mktemp("served") / "history.parquet"
    inputs.history.to_parquet(history_path)
    with psycopg.connect(marts_dsn) as conn:
        cur = conn.execute(f"select {', '.join(RANKED_COLUMNS)} from reco.user_recommendations order by user_id, rank")
        table = pd.DataFrame(cur.fetchall(), columns=RANKED_COLUMNS)
    return {
        "result": result,
        "users": inputs.users,
        "history": history_path,
        "table": table,
        "bought": bought,
        "summary": summary,
    }


def _predict(test_settings: Settings, users: pd.DataFrame, history: Path) -> pd.DataFrame:
    """``predict`` of ``test_settings``' model name ``@champion`` loaded through MLflow."""
    uri = test_settings.mlflow_tracking_uri
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{test_settings.model_name}@champion")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return model.predict(users, params={"history": str(history), "k": 10})


def _assert_same_rows(got: pd.DataFrame, table: pd.DataFrame) -> None:
    got = got.sort_values(["user_id", "rank"], ignore_index=True)
    assert len(got) == len(table)
    for column in ("user_id", "rank", "item_id", "strategy"):
        assert got[column].tolist() == table[column].tolist(), column
    for column in [c for c in RANKED_COLUMNS if c.endswith("score")]:
        np.testing.assert_allclose(
            got[column].to_numpy(dtype=np.float64), table[column].to_numpy(dtype=np.float64), rtol=1e-6, err_msg=column
        )


def test_predict_with_the_generations_history_equals_the_nightly_table(served, test_settings) -> None:
    table, users = served["table"], served["users"]
    assert table["user_id"].nunique() == len(users) >= 200
    strategies = table.groupby("strategy")["user_id"].nunique().to_dict()
    assert strategies == {"hybrid": 300, "hybrid_no_svd": N_NEW_USERS, "popular_cold_start": N_COLD_USERS}
    _assert_same_rows(_predict(test_settings, users, served["history"]), table)


def test_seen_items_come_from_the_history_not_from_training(served, test_settings) -> None:
    """An item a known user bought after training is excluded by the nightly job and by predict(); without
    the newer history the same model would still recommend some of them."""
    table, bought = served["table"], served["bought"]
    written = set(zip(table["user_id"], table["item_id"], strict=True))
    assert not written & set(bought.items())
    history = pd.read_parquet(served["history"])
    old_path = served["history"].with_name("history_at_training.parquet")
    history[history["last_interaction_at"] <= history["last_interaction_at"].max() - AFTER].to_parquet(old_path)
    buyers = pd.DataFrame({"user_id": sorted(bought)})
    stale = _predict(test_settings, buyers, old_path)
    assert set(zip(stale["user_id"], stale["item_id"], strict=True)) & set(bought.items())


def test_the_artifact_loads_and_ranks_where_recomart_is_not_installed(served, test_settings, tool_env) -> None:
    users = served["users"].iloc[::17]  # known, new and cold users alike
    users_path = served["history"].with_name("users.parquet")
    users.to_parquet(users_path)
    script = textwrap.dedent(
        """
        import importlib.util, sys
        sys.path = [p for p in sys.path if p != sys.argv[1]]
        assert importlib.util.find_spec("recomart") is None, "recomart must come from the artifact"
        import mlflow.pyfunc, pandas as pd
        model = mlflow.pyfunc.load_model(sys.argv[2])
        out = model.predict(pd.read_parquet(sys.argv[3]), params={"history": sys.argv[4], "k": 10})
        print("RESULT" + out.to_json(orient="records"))
        """
    )
    include = str(Path(__file__).resolve().parents[2] / "include")
    uri = test_settings.mlflow_tracking_uri
    env = {**tool_env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    env.pop("PYTHONPATH", None)
    model_uri = f"models:/{test_settings.model_name}@champion"
    proc = subprocess.run(
        [sys.executable, "-c", script, include, model_uri, str(users_path), str(served["history"])],
        env=env,
        cwd=users_path.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, f"child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    got = pd.DataFrame(json.loads(line[len("RESULT") :]))
    table = served["table"]
    _assert_same_rows(got, table[table["user_id"].isin(users["user_id"])].reset_index(drop=True))


@pytest.fixture(scope="module")
def ranked(served, marts_dsn: str, test_settings: Settings) -> dict:
    """The same marts (history moved on) trained with ``RECOMART_TRAIN_RANKER=ranker``: the learned ranker
    is registered (as it is whenever it wins on validation) under a second model name, and the nightly
    job ranks through it."""
    from recomart.recommend.run import generate_recommendations
    from recomart.tasks.train import train_and_register

    settings = dataclasses.replace(test_settings, model_name=f"{test_settings.model_name}_r", train_ranker="ranker")
    summary = train_and_register(settings, marts_dsn)
    generate_recommendations(
        marts_dsn, tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name, log=lambda _: None
    )
    inputs = read_ranking_inputs(marts_dsn)
    with psycopg.connect(marts_dsn) as conn:
        cur = conn.execute(f"select {', '.join(RANKED_COLUMNS)} from reco.user_recommendations order by user_id, rank")
        table = pd.DataFrame(cur.fetchall(), columns=RANKED_COLUMNS)
        logged = conn.execute(
            "select blend ->> 'strategy', reason from ops.model_promotions where model_name = %s",
            (settings.model_name,),
        ).fetchall()
    return {"settings": settings, "summary": summary, "users": inputs.users, "table": table, "logged": logged}


def test_the_blend_won_on_validation_and_is_registered(served) -> None:
    """The default rule registers whichever of the ranker and the blend wins on validation; here the blend."""
    summary = served["summary"]
    assert summary["strategy"] == "blend"
    assert "registered the blend (validation nDCG" in summary["reason"]
    assert {"ranker", "blend", "model", "popularity"} <= set(summary["metrics"])
    assert summary["metrics"]["model"] == summary["metrics"]["blend"]


def test_the_registered_ranker_is_one_artifact_equal_to_the_nightly_table(ranked, served) -> None:
    table, summary = ranked["table"], ranked["summary"]
    assert summary["strategy"] == "ranker" and "registered the ranker" in summary["reason"], summary["reason"]
    assert summary["metrics"]["model"] == summary["metrics"]["ranker"] != summary["metrics"]["blend"]
    assert ranked["logged"] == [("ranker", summary["reason"])]
    strategies = table.groupby("strategy")["user_id"].nunique().to_dict()
    assert strategies == {"ranker": 300 + N_NEW_USERS, "popular_cold_start": N_COLD_USERS}
    _assert_same_rows(_predict(ranked["settings"], ranked["users"], served["history"]), table)


def test_the_ranker_timings_are_in_the_run_and_the_summary(ranked) -> None:
    from mlflow import MlflowClient

    summary, settings = ranked["summary"], ranked["settings"]
    assert summary["timings"]["ranker_fit_s"] > 0 and summary["timings"]["ranker_features_s"] >= 0
    uri = settings.mlflow_tracking_uri
    metrics = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(summary["run_id"]).data.metrics
    assert metrics["time_ranker_fit_s"] == pytest.approx(summary["timings"]["ranker_fit_s"], abs=1e-3)
    assert "time_ranker_features_s" in metrics


def test_a_ranker_champion_is_rescored_as_a_ranker(ranked, marts_dsn: str) -> None:
    """The next round re-scores a champion registered as the ranker with its learned model (generators
    refitted on the round's train + validation parts): on the same data and seed that is the candidate's
    ranker exactly, so the candidate does not beat it."""
    from recomart.marts import read_catalogue, read_ratings
    from recomart.model.catalogue import Catalogue
    from recomart.model.config import TrainingConfig
    from recomart.model.promotion import train_and_gate

    settings = ranked["settings"]
    frames = read_catalogue(marts_dsn)
    outcome = train_and_gate(
        read_ratings(marts_dsn),
        tracking_uri=settings.mlflow_tracking_uri,
        model_name=settings.model_name,
        artifact_dir=settings.mlflow_artifacts_dir,
        config=TrainingConfig.from_settings(settings),
        catalogue=Catalogue(frames.products, frames.users, False),
    )
    metrics = outcome.result.metrics
    assert outcome.previous_champion == ranked["summary"]["model_version"]
    assert metrics["champion"] == pytest.approx(metrics["ranker"]) and metrics["champion"] != metrics["blend"]
    assert not outcome.registered.promoted and "does not beat champion" in outcome.registered.reason
