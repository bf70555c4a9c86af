"""Train on planted tastes without surprise's per-pair path, fit the blend, beat popularity, register in MLflow."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import psycopg
import pytest
import surprise
from psycopg import sql

from recomart.marts import read_ratings
from recomart.model.config import TrainingConfig
from recomart.model.registry import load_champion, log_and_register
from recomart.model.train import train_tune_evaluate
from recomart.ranking.hybrid import RANKED_COLUMNS

pytestmark = pytest.mark.integration


def planted_ratings(
    n_users: int = 300, n_items: int = 100, n_clusters: int = 5, per_user: int = 20, seed: int = 7
) -> pd.DataFrame:
    """Users of 5 taste clusters pick 80 % of their items in their cluster, under a Zipf popularity skew."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, n_items)
    popularity = (1.0 / np.arange(1, n_items + 1) ** 0.8)[rng.permutation(n_items)]
    user_cluster = rng.integers(0, n_clusters, n_users)
    own = np.where(item_cluster[None, :] == np.arange(n_clusters)[:, None], popularity, 0.0)
    weights = 0.8 * own / own.sum(axis=1, keepdims=True) + 0.2 * popularity / popularity.sum()
    # Gumbel top-k = weighted sampling without replacement, for all users at once
    keys = np.log(weights[user_cluster]) + rng.gumbel(size=(n_users, n_items))
    items = np.argsort(-keys, axis=1)[:, :per_user]
    users = np.repeat(np.arange(n_users), per_user)
    items = items.ravel()
    liked = item_cluster[items] == user_cluster[users]
    rating = np.clip(np.where(liked, 4.0, 2.0) + rng.normal(0, 0.7, len(users)), 1, 5).round(1)
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 60, len(users)), unit="D")
    return pd.DataFrame(
        {
            "user_id": [f"u{u:04d}" for u in users],
            "item_id": [f"i{i:03d}" for i in items],
            "rating": rating,
            "event_timestamp": ts,
        }
    )


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return planted_ratings()


@pytest.fixture()
def no_per_pair_surprise(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("per-pair surprise prediction must not be used")

    for name in ("predict", "test", "estimate"):
        monkeypatch.setattr(surprise.SVD, name, boom)


NO_TUNING = TrainingConfig(max_trials=1, seed=42, k=10)  # the base parameters, no search: fast and fixed


@pytest.fixture(scope="module")
def trained(ratings: pd.DataFrame):
    with pytest.MonkeyPatch.context() as mp:

        def boom(*args, **kwargs):
            raise AssertionError("per-pair surprise prediction must not be used")

        for name in ("predict", "test", "estimate"):
            mp.setattr(surprise.SVD, name, boom)
        return train_tune_evaluate(ratings, NO_TUNING)


def test_patch_really_blocks_per_pair_path(no_per_pair_surprise) -> None:
    with pytest.raises(AssertionError, match="per-pair"):
        surprise.SVD().predict("u", "i")


def test_svd_and_blend_beat_popularity_on_planted_tastes(trained, ratings: pd.DataFrame) -> None:
    svd_m, model_m, pop_m = trained.metrics["svd"], trained.metrics["model"], trained.metrics["popularity"]
    assert trained.beats_popularity
    assert svd_m["ndcg_at_10"] > 1.3 * pop_m["ndcg_at_10"]
    assert svd_m["precision_at_10"] > pop_m["precision_at_10"]
    assert model_m["ndcg_at_10"] > 1.3 * pop_m["ndcg_at_10"]
    assert trained.split["n_eval_users"] > 250
    assert 0.15 < trained.split["n_test"] / len(ratings) < 0.25
    # refit on all data: every user and item of the frame is servable
    assert trained.refit_full and trained.model.n_users == ratings.user_id.nunique()
    assert trained.model.n_items == ratings.item_id.nunique()
    # the served hybrid covers the same catalogue, its components fitted on all the data
    assert list(trained.recommender.item_ids) == sorted(ratings.item_id.unique())
    assert trained.recommender.weights == pytest.approx(
        type(trained.recommender.weights)(**trained.metadata["weights"])
    )


def test_metrics_hold_the_blend_each_component_and_popularity(trained) -> None:
    m = trained.metrics
    # no champion yet and no repeat purchases (so no buy-again): model = the strategy that won on validation
    # (here the blend), the blend and the learned ranker, then each component
    assert set(m) == {"model", "blend", "ranker", "svd", "item_item", "content", "popularity"}
    assert trained.metadata["strategy"] == "blend" and m["model"] == m["blend"] != m["ranker"]
    for name, values in m.items():
        for key in ("ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10", "hit_rate_at_10", "catalog_coverage"):
            assert 0.0 <= values[key] <= 1.0, (name, key)
        assert set(trained.curves[name]) == {"1", "2", "3", "5", "10", "15", "20"}
    # the blend carries its SVD part's user coverage; a component differs from the blend it is part of
    assert m["model"]["user_coverage"] == m["svd"]["user_coverage"] == 1.0
    assert m["item_item"]["ndcg_at_10"] != m["content"]["ndcg_at_10"]
    blend = trained.metadata["blend"]
    assert blend["fitted"] and blend["weights"] == trained.metadata["weights"]
    assert sum(blend["weights"].values()) == pytest.approx(1.0)
    assert set(blend["component_validation_ndcg"]) == {"svd", "item_item", "content", "popularity"}
    # the search keeps the best validation figure it saw, at least the best single component's
    assert blend["validation_ndcg"] >= max(blend["component_validation_ndcg"].values())


def test_same_data_same_model_whatever_the_row_order(trained, ratings, no_per_pair_surprise) -> None:
    again = train_tune_evaluate(ratings.sample(frac=1.0, random_state=3), NO_TUNING)
    np.testing.assert_array_equal(again.model.user_factors, trained.model.user_factors)
    np.testing.assert_array_equal(again.model.item_bias, trained.model.item_bias)
    assert again.data_digest == trained.data_digest
    assert again.metrics == trained.metrics
    assert again.metadata["weights"] == trained.metadata["weights"]
    other_seed = train_tune_evaluate(ratings, dataclasses.replace(NO_TUNING, seed=1, refit_full=False))
    assert not np.array_equal(other_seed.model.user_factors, trained.model.user_factors)


def test_read_ratings_reads_the_mart_in_one_query(warehouse_dsn: str, ratings: pd.DataFrame) -> None:
    schema = f"model_test_{uuid.uuid4().hex[:8]}"
    sample = ratings.head(500).assign(purchases=np.arange(500) % 3)
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "create table {}.user_item_ratings (user_id text, item_id text, rating double precision,"
                " interactions int, purchases int, last_interaction_at timestamptz,"
                " event_timestamp timestamptz)"
            ).format(sql.Identifier(schema))
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL(
                    "copy {}.user_item_ratings (user_id, item_id, rating, last_interaction_at, purchases) from stdin"
                ).format(sql.Identifier(schema))
            ) as copy,
        ):
            for row in sample.itertuples(index=False):
                copy.write_row(row)
        # the mart's event_timestamp is its as-of time (one value for all rows); the split needs each pair's
        # last interaction, which read_ratings returns as event_timestamp
        conn.execute(sql.SQL("update {}.user_item_ratings set event_timestamp = now()").format(sql.Identifier(schema)))
        try:
            got = read_ratings(warehouse_dsn, relation=f"{schema}.user_item_ratings")
        finally:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
    expected = sample.sort_values(["user_id", "item_id"], ignore_index=True)
    got = got.sort_values(["user_id", "item_id"], ignore_index=True)
    assert list(got.columns) == ["user_id", "item_id", "rating", "purchases", "event_timestamp"]
    np.testing.assert_array_equal(got.purchases, expected.purchases)
    pd.testing.assert_series_equal(got.user_id, expected.user_id)
    np.testing.assert_allclose(got.rating, expected.rating)
    delta = (got.event_timestamp - expected.event_timestamp).abs().max()
    assert delta < pd.Timedelta(milliseconds=1)
    assert str(got.event_timestamp.dt.tz) == "UTC"


def test_register_champion_then_challenger(trained, ratings, test_settings, tmp_path) -> None:
    from mlflow import MlflowClient

    uri = test_settings.mlflow_tracking_uri
    name = f"{test_settings.model_name}_svd"
    assert load_champion(uri, name) is None
    reg = log_and_register(
        trained, tracking_uri=uri, model_name=name, artifact_dir=tmp_path / "mlartifacts", tags={"suite": "it"}
    )
    assert reg.promoted and reg.version == "1"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias(name, "champion")
    assert str(mv.version) == reg.version and mv.run_id == reg.run_id
    assert mv.tags["feature_service"] == "recommender_v1"
    assert mv.tags["data_digest"] == trained.data_digest
    run = client.get_run(reg.run_id)
    assert run.data.metrics["model_ndcg_at_10"] == pytest.approx(trained.metrics["model"]["ndcg_at_10"])
    assert "popularity_ndcg_at_10" in run.data.metrics and "item_item_ndcg_at_10" in run.data.metrics
    assert run.data.metrics["svd_ndcg_at_10"] == pytest.approx(trained.metrics["svd"]["ndcg_at_10"])
    weights = trained.metadata["weights"]
    assert {k: float(v) for k, v in run.data.params.items() if k.startswith("weight_")} == {
        f"weight_{c}": w for c, w in weights.items()
    }
    blend_json = client.download_artifacts(reg.run_id, "blend.json", str(tmp_path))
    assert json.loads(Path(blend_json).read_text()) == trained.metadata["blend"]
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "recomart"
    assert exp.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()
    assert any((tmp_path / "mlartifacts").rglob("hybrid.npz"))

    loaded = load_champion(uri, name)
    assert loaded is not None
    meta = loaded.metadata
    assert loaded.version == reg.version
    np.testing.assert_array_equal(loaded.recommender.svd.model.item_factors, trained.model.item_factors)
    np.testing.assert_array_equal(loaded.recommender.svd.model.user_ids, trained.model.user_ids)
    assert meta["weights"] == weights and meta["blend"] == trained.metadata["blend"]
    assert meta["data_digest"] == trained.data_digest

    # the pyfunc ranks top-k items per user against the history passed to it, vectorised
    history_path = tmp_path / "history.parquet"
    history = ratings.rename(columns={"event_timestamp": "last_interaction_at"}).assign(purchases=1)
    history.to_parquet(history_path)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    users = trained.model.user_ids[:3].tolist() + ["new-user"]
    out = pyfunc.predict(pd.DataFrame({"user_id": users}), params={"k": 5, "history": str(history_path)})
    assert list(out.columns) == RANKED_COLUMNS
    assert out.groupby("user_id").size().to_dict() == dict.fromkeys(users, 5)
    assert set(out.loc[out.user_id == "new-user", "strategy"]) == {"popular_cold_start"}
    bought = set(zip(history.user_id, history.item_id, strict=True))
    assert not {(u, i) for u, i in zip(out.user_id, out.item_id, strict=True)} & bought

    # a version that loses to popularity becomes the challenger; the champion stays
    weaker = dataclasses.replace(
        trained,
        beats_popularity=False,
        metrics={**trained.metrics, "model": {**trained.metrics["model"], "ndcg_at_10": 0.0}},
    )
    reg2 = log_and_register(weaker, tracking_uri=uri, model_name=name, artifact_dir=tmp_path / "mlartifacts")
    assert not reg2.promoted and "popularity" in reg2.reason
    assert str(client.get_model_version_by_alias(name, "challenger").version) == reg2.version
    assert str(client.get_model_version_by_alias(name, "champion").version) == reg.version
    assert client.get_model_version(name, reg2.version).tags["promotion_reason"] == reg2.reason
    assert load_champion(uri, name).version == reg.version
