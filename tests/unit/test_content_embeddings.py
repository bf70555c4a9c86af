"""The content component with item embeddings (issue 18): the score is ``(1 - s) · TF-IDF + s · embedding``
similarity to the user's recency-weighted profile, the state keeps the vectors, and the training search
uses the embeddings only when the validation window prefers them (and records both variants)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest

from recomart.model.blend_search import BlendFit, blend_record, choose_blend, content_label
from recomart.model.catalogue import Catalogue
from recomart.model.tracking import content_metrics
from recomart.ranking.base import TrainingSet
from recomart.ranking.content import Content
from recomart.ranking.embedding import ItemVectors
from recomart.ranking.history import HISTORY_HALF_LIFE_DAYS, UserHistory
from recomart.ranking.hybrid import HybridRecommender

N_USERS, N_ITEMS, N_GROUPS, DIM = 150, 60, 6, 12
ITEMS = np.array([f"i{i:02d}" for i in range(N_ITEMS)], dtype=object)
GROUP = np.arange(N_ITEMS) % N_GROUPS


def _vectors(seed: int, *, informative: bool) -> ItemVectors:
    """Unit vectors; ``informative``: near one centroid per item group (the groups users buy from)."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(N_GROUPS, DIM)) * 3
    raw = rng.normal(size=(N_ITEMS, DIM)) + (centroids[GROUP] if informative else 0)
    return ItemVectors(ITEMS, (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32))


def _products() -> pd.DataFrame:
    """Titles that say nothing of the groups (TF-IDF has no signal), one shared word so it has a vocabulary."""
    return pd.DataFrame({"item_id": ITEMS, "title": [f"product {n}" for n in range(N_ITEMS)]})


def _pairs(seed: int) -> pd.DataFrame:
    """Each user buys from one group over 60 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        group_items = ITEMS[u % N_GROUPS == GROUP]
        for item in rng.choice(group_items, size=6, replace=False):
            rows.append((f"u{u:03d}", item))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 60, len(frame)), unit="D")
    return frame.assign(rating=1.0, event_timestamp=ts)


@pytest.fixture(scope="module")
def training() -> TrainingSet:
    return TrainingSet.build(_pairs(1), _products(), None)


def _fitted(training: TrainingSet, share: float | None, vectors: ItemVectors | None) -> Content:
    return Content(embedding_share=share, item_vectors=vectors).fit(training)


def test_the_score_mixes_tfidf_and_embedding_similarity_by_the_share(training: TrainingSet) -> None:
    vectors = _vectors(2, informative=True)
    history = training.entries
    rows = np.arange(history.n_users)
    tfidf = _fitted(training, None, vectors).score(history, rows)
    assert np.array_equal(tfidf, Content().fit(training).score(history, rows))  # no share: TF-IDF alone
    aligned = vectors.aligned(training.item_ids)
    w = history.weight_matrix(HISTORY_HALF_LIFE_DAYS).toarray()
    profiles = (w / np.maximum(w.sum(axis=1, keepdims=True), 1e-30)) @ aligned  # brute force
    embed = profiles @ aligned.T
    assert np.allclose(_fitted(training, 1.0, vectors).score(history, rows), embed, atol=1e-5)
    assert np.allclose(_fitted(training, 0.5, vectors).score(history, rows), 0.5 * tfidf + 0.5 * embed, atol=1e-5)
    # a share without vectors is TF-IDF alone (nothing to blend)
    assert np.array_equal(_fitted(training, 1.0, None).score(history, rows), tfidf)


def test_items_without_a_vector_score_zero_and_the_state_keeps_the_vectors(training: TrainingSet) -> None:
    some = ItemVectors(ITEMS[:50], _vectors(2, informative=True).vectors[:50])
    hybrid = HybridRecommender(options={"content_embedding": 1.0}, item_vectors=some).fit(training)
    history = training.entries
    rows = np.arange(10)
    scores = hybrid.content.score(history, rows)
    missing = ~np.isin(training.item_ids, some.item_ids)
    assert missing.sum() == 10 and np.all(scores[:, missing] == 0) and np.any(scores[:, ~missing] != 0)
    arrays, settings = hybrid.state()
    again = HybridRecommender.from_state(arrays, json.loads(json.dumps(settings)))  # no vectors passed
    assert again.content.share == 1.0
    assert np.array_equal(again.content.score(UserHistory.align(_pairs(1), history.user_ids, ITEMS), rows), scores)


@functools.cache
def _chosen(informative: bool) -> BlendFit:
    """The blend chosen on the last quarter of the pairs, with informative or random vectors."""
    pairs = _pairs(3)
    cut = pairs["event_timestamp"].quantile(0.75)
    train, valid = pairs[pairs["event_timestamp"] < cut], pairs[pairs["event_timestamp"] >= cut]
    catalogue = Catalogue(_products(), None, False, _vectors(4, informative=informative))
    return choose_blend(train, valid, catalogue, svd=None)


@pytest.mark.parametrize("informative", [True, False])
def test_the_validation_window_alone_decides_whether_embeddings_are_used(informative: bool) -> None:
    fit = _chosen(informative)
    labels = [content_label(t["options"]) for t in fit.trials]
    assert labels == ["tfidf"] * 4 + ["blend_0.5", "embed"]  # the option grid, then the shares on the best set
    best = max(range(len(fit.trials)), key=lambda i: (fit.trials[i]["validation_ndcg"], -i))
    assert fit.options == fit.trials[best]["options"]
    record = json.loads(json.dumps(blend_record(fit)))
    content = record["content"]
    assert content["chosen"] == content_label(fit.options)
    assert (
        set(content["blend_validation_ndcg"])
        == set(content["alone_validation_ndcg"])
        == {
            "tfidf",
            "blend_0.5",
            "embed",
        }
    )
    if informative:  # titles carry no group, the vectors do: alone, the embeddings rank far better
        assert content["alone_validation_ndcg"]["embed"] > 2 * content["alone_validation_ndcg"]["tfidf"]
    else:
        assert content["alone_validation_ndcg"]["embed"] < content["alone_validation_ndcg"]["tfidf"] + 0.05
    # the variant chosen is the one whose best blend scored highest on validation (ties: TF-IDF)
    blended = content["blend_validation_ndcg"]
    assert blended[content["chosen"]] == max(blended.values())
    assert content["chosen"] != "tfidf" or blended["tfidf"] >= max(blended["blend_0.5"], blended["embed"])


def test_without_vectors_no_embedding_variant_is_tried() -> None:
    pairs = _pairs(3)
    cut = pairs["event_timestamp"].quantile(0.75)
    fit = choose_blend(
        pairs[pairs["event_timestamp"] < cut], pairs[pairs["event_timestamp"] >= cut], Catalogue(_products()), svd=None
    )
    assert [content_label(t["options"]) for t in fit.trials] == ["tfidf"] * 4
    assert blend_record(fit)["content"]["chosen"] == "tfidf"


def test_the_train_run_logs_each_content_variant_as_a_validation_metric() -> None:
    pairs = _pairs(3)
    cut = pairs["event_timestamp"].quantile(0.75)
    catalogue = Catalogue(_products(), None, False, _vectors(4, informative=True))
    fit = choose_blend(
        pairs[pairs["event_timestamp"] < cut], pairs[pairs["event_timestamp"] >= cut], catalogue, svd=None
    )
    record = blend_record(fit)
    metrics = content_metrics(record)
    assert set(metrics) == {
        f"valid_content_{variant}_{kind}_ndcg"
        for variant in ("tfidf", "blend_0.5", "embed")
        for kind in ("blend", "alone")
    }
    assert metrics["valid_content_embed_alone_ndcg"] == record["content"]["alone_validation_ndcg"]["embed"]
    assert content_metrics({}) == {}
