"""The train DAG's path fits the hybrid's blend weights and component options, stores them with the
registered version, gates on the blend, and the recommend DAG's path ranks with the champion's weights and
options (real Postgres, MLflow, fitted data)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import psycopg
import pytest
from test_reco_writer import copy_frame  # tests/integration is on sys.path (rootdir import mode)
from test_train import planted_ratings

from recomart.marts import read_catalogue, read_ranking_inputs
from recomart.model.blend_search import DEFAULT_WEIGHTS
from recomart.model.config import DEFAULT_SVD_PARAMS, TrainingConfig
from recomart.model.gate import decide
from recomart.model.promotion import train_and_gate
from recomart.model.registry import load_champion
from recomart.ranking.base import TrainingSet
from recomart.ranking.blend import OPTION_DEFAULTS, BlendWeights
from recomart.ranking.hybrid import HybridRecommender

pytestmark = pytest.mark.integration

_MARTS_DDL = """
CREATE SCHEMA marts;
CREATE TABLE marts.user_item_ratings (
    user_id text, item_id text, rating double precision, interactions integer, purchases integer,
    last_interaction_at timestamptz, event_timestamp timestamptz);
CREATE TABLE marts.user_features (user_id text, segment text, event_timestamp timestamptz);
CREATE TABLE marts.dim_products (item_id text, title text, description text, category text, brand text, price numeric);
"""


@pytest.fixture(scope="module")
def marts_dsn(private_database) -> str:
    """A private database with the three marts the train and recommend paths read, from planted tastes."""
    dsn = private_database("blend")
    ratings = planted_ratings()
    items = np.sort(ratings["item_id"].unique())
    users = np.sort(ratings["user_id"].unique())
    cats = np.array(["Shoes", "Books", "Garden", "Kitchen"])[np.arange(len(items)) % 4]
    products = pd.DataFrame(
        {
            "item_id": items,
            "title": [f"{c} item {i}" for c, i in zip(cats, items, strict=True)],
            "description": "a product",
            "category": cats,
            "brand": "acme",
            "price": 10.0,
        }
    )
    as_of = ratings["event_timestamp"].max()
    with psycopg.connect(dsn) as conn:
        conn.execute(_MARTS_DDL)
        copy_frame(conn, "marts.dim_products", products)
        segments = pd.DataFrame({"user_id": users, "segment": "regular", "event_timestamp": as_of})
        copy_frame(conn, "marts.user_features", segments)
        copy_frame(
            conn,
            "marts.user_item_ratings",
            ratings.assign(
                interactions=1, purchases=1, last_interaction_at=ratings["event_timestamp"], event_timestamp=as_of
            ),
        )
    return dsn


@pytest.fixture(scope="module")
def trained(marts_dsn: str, test_settings) -> dict:
    """The train DAG's task on the marts: the summary of the first (promoted) version."""
    from recomart.tasks.train import train_and_register

    return train_and_register(test_settings, marts_dsn)


def test_registered_weights_are_the_fitted_ones_and_recommend_applies_them(marts_dsn, test_settings, trained) -> None:
    from recomart.recommend.run import generate_recommendations

    summary = trained
    assert summary["decision"] == "promoted"
    blend = summary["blend"]
    assert blend["fitted"] and blend["weights"] != DEFAULT_WEIGHTS.as_dict()
    assert blend["validation_ndcg"] >= max(v for v in blend["component_validation_ndcg"].values() if v is not None)

    loaded = load_champion(test_settings.mlflow_tracking_uri, test_settings.model_name)
    assert loaded is not None
    meta, version = loaded.metadata, loaded.version
    assert version == summary["model_version"]
    assert meta["weights"] == blend["weights"] and meta["blend"] == blend
    with psycopg.connect(marts_dsn) as conn:
        stored = conn.execute("select blend from ops.model_promotions where model_version = %s", (version,)).fetchone()[
            0
        ]
    assert stored == {**blend, "strategy": summary["strategy"]}

    result = generate_recommendations(
        marts_dsn,
        tracking_uri=test_settings.mlflow_tracking_uri,
        model_name=test_settings.model_name,
        dataset=test_settings.dataset,
        log=lambda _: None,
    )
    assert result.model_version == version
    with psycopg.connect(marts_dsn) as conn:
        details = conn.execute(
            "select details from reco.generations where generation_id = %s", (result.generation_id,)
        ).fetchone()[0]
    details = details if isinstance(details, dict) else json.loads(details)
    assert details["weights_source"] == "champion"
    assert details["weights"] == pytest.approx(BlendWeights.from_meta({"weights": blend["weights"]}).as_dict())


def test_recommend_uses_the_input_options_registered_with_the_champion(marts_dsn, test_settings, trained) -> None:
    """The options chosen on validation (the best candidate) are stored with the champion, and the nightly
    run ranks with exactly those: ``reco.similar_items`` has the champion's neighbour count and the written
    popularity scores are the prior over the champion's window."""
    from recomart.ranking.blend import blend_options
    from recomart.recommend.run import generate_recommendations

    loaded = load_champion(test_settings.mlflow_tracking_uri, test_settings.model_name)
    meta, version = loaded.metadata, loaded.version
    assert version == trained["model_version"]
    blend = meta["blend"]
    assert blend["fitted"] and blend["options"] and len(blend["candidates"]) >= 4
    best = max(blend["candidates"], key=lambda c: c["validation_ndcg"])
    assert blend["validation_ndcg"] == pytest.approx(best["validation_ndcg"])
    assert blend["options"] in [c["options"] for c in blend["candidates"]]

    result = generate_recommendations(
        marts_dsn,
        tracking_uri=test_settings.mlflow_tracking_uri,
        model_name=test_settings.model_name,
        dataset=test_settings.dataset,
        log=lambda _: None,
    )
    assert result.model_version == version
    assert result.options == blend_options(meta["blend"]["options"]) == blend["options"]
    top_n = blend["options"].get("top_n", OPTION_DEFAULTS["top_n"])
    with psycopg.connect(marts_dsn) as conn:
        details = conn.execute(
            "select details from reco.generations where generation_id = %s", (result.generation_id,)
        ).fetchone()[0]
        neighbours = conn.execute("select max(rank) from reco.similar_items").fetchone()[0]
        written = pd.DataFrame(
            conn.execute(
                "select item_id, popularity_score from reco.user_recommendations where strategy = 'hybrid'"
            ).fetchall(),
            columns=["item_id", "score"],
        )
    details = details if isinstance(details, dict) else json.loads(details)
    assert details["blend_options"] == blend["options"]
    assert neighbours == top_n  # 100 items that all co-occur: every item has more than top_n neighbours

    inputs, catalogue = read_ranking_inputs(marts_dsn), read_catalogue(marts_dsn)
    training = TrainingSet.build(inputs.history, catalogue.products, catalogue.users)

    def prior(options: dict) -> np.ndarray:
        recommender = HybridRecommender(repeat_purchases=details["repeat_purchases"], options=options).fit(training)
        return pd.Series(recommender.popularity.prior, index=recommender.item_ids).loc[written["item_id"]].to_numpy()

    assert written["score"].to_numpy() == pytest.approx(prior(blend["options"]), rel=1e-6)
    if blend["options"].get("prior_days") is not None:  # the all-time prior would have written other scores
        assert written["score"].to_numpy() != pytest.approx(prior({}), rel=1e-6)


def test_too_little_data_stores_the_default_weights_unfitted(test_settings, tmp_path) -> None:
    ratings = planted_ratings()
    # a third of the users and a validation window of ~13 pairs: too few validation users to fit weights
    outcome = train_and_gate(
        ratings[ratings.user_id < "u0100"],
        tracking_uri=test_settings.mlflow_tracking_uri,
        model_name=f"{test_settings.model_name}_small",
        artifact_dir=tmp_path,
        config=TrainingConfig(max_trials=1, split_options={"valid_fraction": 0.02, "test_fraction": 0.2}),
    )
    assert outcome.registered.promoted, outcome.registered.reason
    meta = load_champion(test_settings.mlflow_tracking_uri, f"{test_settings.model_name}_small").metadata
    assert meta["weights"] == DEFAULT_WEIGHTS.as_dict()
    assert meta["blend"]["fitted"] is False and "< 50: default weights" in meta["blend"]["reason"]
    assert outcome.summary("x")["blend"]["fitted"] is False


def test_gate_judges_the_blend_not_the_svd_alone(test_settings, tmp_path) -> None:
    # one SGD epoch at a tiny learning rate from wide random factors: an SVD that ranks worse than
    # popularity, while the fitted blend leans on item-to-item and beats it
    weak = {**DEFAULT_SVD_PARAMS, "n_epochs": 1, "lr_all": 1e-4, "init_std_dev": 0.5}
    outcome = train_and_gate(
        planted_ratings(),
        tracking_uri=test_settings.mlflow_tracking_uri,
        model_name=f"{test_settings.model_name}_weak",
        artifact_dir=tmp_path,
        config=TrainingConfig(max_trials=1, svd_params=weak),
    )
    m = outcome.result.metrics
    assert m["svd"]["ndcg_at_10"] < m["popularity"]["ndcg_at_10"] < m["model"]["ndcg_at_10"]
    assert outcome.result.metadata["weights"]["item_item"] > 0
    assert outcome.registered.promoted and outcome.registered.gate["candidate"] == m["model"]["ndcg_at_10"]
    svd_only = decide({"model": m["svd"], "popularity": m["popularity"]})
    assert not svd_only.promote
