"""Semantic search on a real Postgres: the incremental refresh of ``reco.item_embeddings`` and the
hybrid searcher built from the stored vectors, through the Python API and ``recomart search``.

``marts.dim_products`` is made by hand (dbt is tested elsewhere) in a private database next to this
run's warehouse.  Needs the search extra (``./recomart test`` installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from recomart.marts import load_item_vectors
from recomart.search import store
from recomart.search.embed import current_texts, embed_products
from recomart.search.minilm import MiniLMEncoder
from recomart.search.searcher import EMBEDDINGS_INDEX, FALLBACK_INDEX, Searcher

pytestmark = pytest.mark.integration

# (item_id, title, description, category, brand): a small fixed catalogue, generated-shop and UCI style
CATALOGUE = [
    ("P1", "Scarlet satin clutch", "An evening purse with a chain strap.", "fashion", "Nordvik"),
    ("P2", "Canvas hiking rucksack", "A 30 litre backpack for trails.", "outdoor", "Trailhead"),
    ("P3", "Oak bookshelf", "Five shelves in solid oak.", "home", "Hearth & Co"),
    ("P4", "Ceramic teapot", "Holds six cups of tea.", "kitchen", "Hearth & Co"),
    ("P5", "Wool beanie", "A warm knitted hat for cold days.", "fashion", "Nordvik"),
    ("P6", "Picture book of dinosaurs", "Bedtime stories for young readers.", "books", "Atlas Books"),
    ("P7", "Stainless steel water bottle", "Keeps drinks cold for 24 hours.", "outdoor", "Trailhead"),
    ("P8", "Bluetooth speaker", "Portable wireless audio with deep bass.", "electronics", "Sonique"),
    ("P9", "Yoga mat", "Non-slip exercise mat, 6 mm thick.", "sports", "Flexa"),
    ("P10", "Scented soy candle", "Lavender fragrance, 40 hours of burn time.", "home", "Lumen"),
    ("22386", "JUMBO BAG PINK POLKADOT", None, "uncategorised", None),
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", None, "uncategorised", None),
    ("22423", "REGENCY CAKESTAND 3 TIER", None, "uncategorised", None),
    ("21212", "PACK OF 72 RETROSPOT CAKE CASES", None, "uncategorised", None),
    ("22720", "SET OF 3 CAKE TINS PANTRY DESIGN", None, "uncategorised", None),
    ("84879", "ASSORTED COLOUR BIRD ORNAMENT", None, "uncategorised", None),
]

# paraphrases sharing no word stem with their target's text, so only the embeddings can find them
PARAPHRASES = {
    "red handbag for a wedding party": "P1",
    "somewhere to put my novels": "P3",
    "something to keep my head toasty in winter": "P5",
    "music gadget": "P8",
}


def _catalogue_dsn(private_database: Callable[[str], str], suffix: str) -> str:
    """A new private database holding ``marts.dim_products`` with :data:`CATALOGUE`."""
    dsn = private_database(suffix)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE SCHEMA marts; CREATE TABLE marts.dim_products "
            "(item_id text primary key, title text, description text, category text, brand text, price numeric)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO marts.dim_products (item_id, title, description, category, brand)"
                " VALUES (%s, %s, %s, %s, %s)",
                CATALOGUE,
            )
    return dsn


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def catalogue_dsn(private_database: Callable[[str], str]) -> str:
    return _catalogue_dsn(private_database, "search")


@pytest.fixture(scope="module")
def first_run(catalogue_dsn: str, encoder: MiniLMEncoder) -> dict:
    return embed_products(catalogue_dsn, encoder=encoder, chunk_size=5)


def _stored(dsn: str) -> dict[str, tuple[str, str, object]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT item_id, model, text_hash, embedded_at FROM reco.item_embeddings").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_first_run_embeds_every_product(first_run: dict, encoder: MiniLMEncoder) -> None:
    assert first_run["status"] == "ok"
    assert first_run["model"] == encoder.name
    assert (first_run["products"], first_run["embedded"], first_run["new"], first_run["removed"]) == (16, 16, 16, 0)


def test_stored_vectors_equal_a_fresh_embedding(first_run: dict, catalogue_dsn: str, encoder: MiniLMEncoder) -> None:
    with psycopg.connect(catalogue_dsn) as conn:
        products = store.read_products(conn)
        stored = load_item_vectors(conn, encoder.name)
    texts = current_texts(products).set_index("item_id").loc[stored.item_ids]
    fresh = encoder.encode(texts["text"].tolist())
    assert stored.vectors.shape == (16, 384) and stored.vectors.dtype == np.float32
    assert np.abs(stored.vectors - fresh).max() < 1e-6
    assert stored.text_hashes.tolist() == texts["text_hash"].tolist()


def test_a_changed_description_re_embeds_only_that_item(
    first_run: dict, catalogue_dsn: str, encoder: MiniLMEncoder
) -> None:
    before = _stored(catalogue_dsn)
    assert embed_products(catalogue_dsn, encoder=encoder)["embedded"] == 0  # nothing changed: nothing to do
    with psycopg.connect(catalogue_dsn) as conn:
        conn.execute("UPDATE marts.dim_products SET description = 'A 45 litre backpack.' WHERE item_id = 'P2'")
    summary = embed_products(catalogue_dsn, encoder=encoder)
    after = _stored(catalogue_dsn)
    assert (summary["embedded"], summary["changed"], summary["unchanged"]) == (1, 1, 15)
    assert [i for i in after if after[i] != before[i]] == ["P2"]
    assert after["P2"][1] != before["P2"][1] and after["P2"][2] > before["P2"][2]


class _RenamedModel:
    """The same real encoder under another model name, as after a model upgrade."""

    inference = "numpy"

    def __init__(self, encoder: MiniLMEncoder, name: str) -> None:
        self.name, self._encoder = name, encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode(texts)


def test_a_model_change_rebuilds_and_removed_products_lose_their_vector(
    private_database: Callable[[str], str], encoder: MiniLMEncoder
) -> None:
    dsn = _catalogue_dsn(private_database, "search_model")
    embed_products(dsn, encoder=encoder)
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM marts.dim_products WHERE item_id = '84879'")
    summary = embed_products(dsn, encoder=_RenamedModel(encoder, "all-MiniLM-L6-v2@next"))
    assert (summary["other_model"], summary["embedded"], summary["removed"]) == (15, 15, 1)
    assert {m for m, _, _ in _stored(dsn).values()} == {"all-MiniLM-L6-v2@next"}
    assert "84879" not in _stored(dsn)


def test_search_finds_items_from_paraphrases(first_run: dict, catalogue_dsn: str) -> None:
    searcher = Searcher.from_warehouse(catalogue_dsn)
    assert searcher.index == EMBEDDINGS_INDEX and searcher.index_reason == ""
    for query, item_id in PARAPHRASES.items():
        hits = searcher.search(query, k=3)
        assert item_id in [h.item_id for h in hits], (query, [h.as_dict() for h in hits])
        hit = next(h for h in hits if h.item_id == item_id)
        assert "embeddings" in hit.retrievers and "bm25" not in hit.retrievers


def test_search_says_which_retrievers_found_a_hit(first_run: dict, catalogue_dsn: str) -> None:
    hits = Searcher.from_warehouse(catalogue_dsn).search("regency cake stand", k=5)
    top = hits[0]
    assert top.item_id == "22423" and set(top.retrievers) == {"bm25", "embeddings"}
    assert top.ranks["bm25"] >= 1 and top.score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_fallback_index_says_so(first_run: dict, catalogue_dsn: str, private_database: Callable[[str], str]) -> None:
    forced = Searcher.from_warehouse(catalogue_dsn, fallback=True)
    assert forced.index == FALLBACK_INDEX and forced.describe()["retrievers"] == ["tfidf", "lsa"]
    assert forced.search("regency cake stand", k=1)[0].item_id == "22423"
    empty = _catalogue_dsn(private_database, "search_empty")
    not_embedded = Searcher.from_warehouse(empty)
    assert not_embedded.index == FALLBACK_INDEX and "no vectors" in not_embedded.index_reason


def test_cli_search_prints_hits_as_json(first_run: dict, catalogue_dsn: str, tool_env: dict[str, str]) -> None:
    env = {**tool_env, "RECOMART_DB_PREFIX": conninfo_to_dict(catalogue_dsn)["dbname"]}
    proc = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "search", "red handbag for a wedding party", "-k", "3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.getcwd(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["index"] == EMBEDDINGS_INDEX and out["items"] == 16
    assert out["hits"][0]["item_id"] == "P1" and "embeddings" in out["hits"][0]["retrievers"]


_WITHOUT_EXTRA = """
import json, sys
sys.modules["tokenizers"] = None  # as if the search extra were not installed: importing it fails
from recomart.search.embed import embed_products
from recomart.search.searcher import Searcher
searcher = Searcher.from_warehouse(sys.argv[1])
hits = searcher.search("regency cake stand", 3)
print("RESULT" + json.dumps({"embed": embed_products(sys.argv[1]), "about": searcher.describe(),
                             "top": hits[0].item_id}))
"""


def test_without_the_extra_search_falls_back_and_the_refresh_is_skipped(first_run: dict, catalogue_dsn: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, catalogue_dsn], capture_output=True, text=True, timeout=300
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stderr[-3000:]
    result = json.loads(line[len("RESULT") :])
    assert result["about"]["index"] == FALLBACK_INDEX
    assert (
        "extra not installed" in result["about"]["index_reason"]
        and "setup --with search" in result["about"]["index_reason"]
    )
    assert result["top"] == "22423"
    assert result["embed"]["status"] == "skipped" and "tokenizers" in result["embed"]["reason"]


def test_cli_search_without_products_says_so_in_one_line(tool_env: dict[str, str]) -> None:
    """This module's own warehouse has no marts: one line naming the problem and the fix, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "search", "red bag"], env=tool_env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert 'relation "marts.dim_products" does not exist' in proc.stderr and "./recomart demo" in proc.stderr
