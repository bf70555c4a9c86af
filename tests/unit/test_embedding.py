"""The torch-free all-MiniLM-L6-v2 against sentence-transformers' vectors, offline loading, and the pure
parts of search: product text, refresh planning, reciprocal rank fusion, top-k, looks-like neighbours.

Needs the search extra (``./recomart setup --with search``; ``./recomart test`` installs it): a missing
extra fails here rather than skipping, so CI cannot pass without running these checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recomart.ranking.embedding import vector_neighbours
from recomart.search.embed import plan_refresh
from recomart.search.fusion import FusionParams, reciprocal_rank_fusion
from recomart.search.minilm import MODEL_NAME, MiniLMEncoder
from recomart.search.retrievers import DenseRetriever, top_rows
from recomart.search.searcher import DEFAULT_FUSION, FALLBACK_FUSION
from recomart.search.text import product_texts, text_hashes

REFERENCES = Path(__file__).resolve().parents[1] / "fixtures" / "minilm" / "references.npz"
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "search.json"


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def references() -> dict[str, np.ndarray]:
    with np.load(REFERENCES) as data:
        return {name: data[name] for name in data.files}


def test_torch_free_vectors_match_sentence_transformers(encoder: MiniLMEncoder, references: dict) -> None:
    """All 50 committed texts (UCI upper case, punctuation, scripts, emoji, >256 tokens) to cosine >= 0.999."""
    texts = [str(t) for t in references["texts"]]
    vectors = encoder.encode(texts)
    cosine = np.sum(vectors * references["vectors"], axis=1)
    worst = int(np.argmin(cosine))
    assert cosine.min() >= 0.999, f"cosine {cosine[worst]:.6f} for {texts[worst][:60]!r}"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert "torch" not in sys.modules and "sentence_transformers" not in sys.modules


def test_references_cover_truncation(encoder: MiniLMEncoder, references: dict) -> None:
    """Some reference texts run past 256 word pieces, so the check above covers the truncation rule."""
    lengths = [len(ids) for ids in encoder.token_ids([str(t) for t in references["texts"]])]
    assert max(lengths) == encoder.max_seq_length == 256
    assert sum(n == 256 for n in lengths) >= 3


def test_batching_does_not_change_vectors(encoder: MiniLMEncoder, references: dict) -> None:
    """Padding to a batch's longest text must not leak into shorter texts' vectors."""
    texts = [str(t) for t in references["texts"]][:20]
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-5


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise RuntimeError(f"network access while loading the model: {args!r}")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from recomart.search.minilm import MiniLMEncoder, model_dir
    encoder = MiniLMEncoder()
    vector = encoder.encode(["JUMBO BAG RED RETROSPOT"])[0]
    print("RESULT" + json.dumps({"name": encoder.name, "dir": str(model_dir()), "norm": float(vector @ vector),
                                 "torch": "torch" in sys.modules}))
    """
)


def test_packaged_model_loads_with_the_network_refused() -> None:
    """A fresh interpreter with every socket connect refused and no HF token/cache settings loads the
    packaged model and embeds a text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, f"offline load failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(line[len("RESULT") :])
    assert result["name"].startswith(MODEL_NAME + "@sha256:")
    assert "site-packages" in result["dir"]
    assert abs(result["norm"] - 1.0) < 1e-5
    assert result["torch"] is False


def test_product_texts_leave_out_missing_fields() -> None:
    products = pd.DataFrame(
        {
            "item_id": ["1", "2"],
            "title": ["Sleek leather handbag", "JUMBO BAG RED RETROSPOT "],
            "description": ["A handbag for weddings.", None],
            "category": ["fashion", "uncategorised"],
            "brand": ["Nordvik", ""],
        }
    )
    assert product_texts(products).tolist() == [
        "Sleek leather handbag. A handbag for weddings. Category: fashion. Brand: Nordvik.",
        "JUMBO BAG RED RETROSPOT. Category: uncategorised.",
    ]
    hashes = text_hashes(product_texts(products))
    assert hashes.str.len().eq(64).all() and hashes.nunique() == 2


def test_plan_refresh_embeds_only_new_changed_and_other_model_items() -> None:
    current = pd.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "text": ["A", "B2", "C", "D"], "text_hash": ["ha", "hb2", "hc", "hd"]}
    )
    stored = pd.DataFrame(
        {"item_id": ["a", "b", "c", "gone"], "model": ["m", "m", "old", "m"], "text_hash": ["ha", "hb", "hc", "x"]}
    )
    plan = plan_refresh(current, stored, "m")
    assert sorted(plan.todo["item_id"]) == ["b", "c", "d"]
    assert (plan.new, plan.changed, plan.other_model, plan.unchanged) == (1, 1, 1, 1)
    assert plan.removed == ["gone"]


def test_reciprocal_rank_fusion_sums_weighted_reciprocal_ranks() -> None:
    results = {"bm25": np.array([3, 1, 2]), "embeddings": np.array([1, 4])}
    fused = reciprocal_rank_fusion(results, FusionParams(k=10, weights={"embeddings": 2.0}), n=10)
    expected = {3: 1 / 11, 1: 1 / 12 + 2 / 11, 2: 1 / 13, 4: 2 / 12}
    assert fused.rows.tolist() == sorted(expected, key=lambda r: -expected[r])
    assert np.allclose(fused.scores, [expected[r] for r in fused.rows.tolist()])
    assert dict(zip(fused.rows.tolist(), fused.ranks["bm25"].tolist(), strict=True)) == {1: 2, 4: 0, 3: 1, 2: 3}
    assert reciprocal_rank_fusion({"bm25": np.array([], dtype=np.int64)}, FusionParams(), 5).rows.size == 0


def test_top_rows_orders_ties_by_index_and_drops_non_matches() -> None:
    scores = np.array([0.0, 0.5, 0.9, 0.5, -1.0], dtype=np.float32)
    rows, values = top_rows(scores, 3, positive_only=True)
    assert rows.tolist() == [2, 1, 3] and np.allclose(values, [0.9, 0.5, 0.5])
    assert top_rows(scores, 10, positive_only=True)[0].tolist() == [2, 1, 3]
    assert top_rows(scores, 10, positive_only=False)[0].tolist() == [2, 1, 3, 0, 4]


def test_vector_neighbours_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.array([f"i{n}" for n in range(50)], dtype=object)
    got = vector_neighbours(ids, vectors, k=4, block_rows=7)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :4]
    assert got["similar_item_id"].tolist() == ids[expected].ravel().tolist()
    assert got["rank"].tolist() == [1, 2, 3, 4] * 50
    assert not (got["item_id"] == got["similar_item_id"]).any()


def test_default_fusion_is_the_one_tuned_on_the_development_queries() -> None:
    """The searcher's fusion parameters are those benchmarks/search.py chose (re-run it, then update them)."""
    tuned = json.loads(BENCHMARK.read_text())["quality"]
    for params, index in ((DEFAULT_FUSION, "hybrid"), (FALLBACK_FUSION, "fallback")):
        assert {"k": params.k, "weights": dict(params.weights), "depth": params.depth} == tuned[index]["fusion_params"]


def test_int8_candidates_give_the_exact_top_list(references: dict) -> None:
    """Above ``exact_below`` items the dense retriever picks candidates by int8 codes; the committed
    reference vectors, each with 199 noisy near-duplicates (10,000 items, tight clusters), must still
    give exactly the float32 brute-force top 100 (order and scores) for every reference as the query."""
    rng = np.random.default_rng(3)
    base = references["vectors"].astype(np.float32)
    items = np.concatenate([base + rng.normal(scale=0.03, size=base.shape).astype(np.float32) for _ in range(200)])
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    dense = DenseRetriever(items, np.arange(len(items)), encoder=None, exact_below=4096)
    assert dense.method.startswith("int8")
    for query in base / np.linalg.norm(base, axis=1, keepdims=True):
        rows, scores = dense.nearest(query, 100)
        exact_rows, exact_scores = top_rows(items @ query, 100, positive_only=False)
        assert rows.tolist() == exact_rows.tolist()
        assert np.array_equal(scores, exact_scores)
