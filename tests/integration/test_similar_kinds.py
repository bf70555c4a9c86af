"""The two kinds of ``reco.similar_items`` end to end: the nightly job (``generate_recommendations``, no
champion: the fallback's co-occurrence) writes ``also_bought`` and, from ``reco.item_embeddings``,
``looks_like`` in one generation; the Redis copy keeps them apart; ``GET /v1/items/{id}/similar`` over a
real uvicorn (2 workers) serves ``kind=looks_like`` on request and exactly the old response by default.

The marts are test_reco_writer's hand-made ones (120 items in 4 categories, the last 20 never bought).
The stored vectors are made by hand, clustered by category, so the "looks like" neighbours of an item
are the other items of its category, brand-new ones included; the last 10 items have no vector.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
import redis
from test_reco_writer import _hand_made_marts  # tests/integration is on sys.path (rootdir import mode)

from recomart.config import Settings
from recomart.model.config import TrainingConfig
from recomart.recommend.cache import cache_layout, unpack
from recomart.recommend.run import GenerationResult, generate_recommendations
from recomart.search import store
from recomart.serving.server import server_env, uvicorn_args
from recomart.tasks.recommend import copy_live_generation_to_redis
from recomart.tasks.train import inputs_digest

pytestmark = pytest.mark.integration

DIM = 16
WITHOUT_VECTOR = {f"p{i:04d}" for i in range(110, 120)}
GONE = "p9999"  # a vector whose product left the catalogue: never a neighbour
#: the response body of the similar route before kinds existed
SIMILAR_KEYS = {"item_id", "generation_id", "model_version", "list_source", "items", "request_id"}


def _store_vectors(dsn: str) -> pd.DataFrame:
    """Unit vectors near a centroid per category for every product but :data:`WITHOUT_VECTOR` (and one
    for :data:`GONE`), written as the search refresh does; returns ``item_id, category``."""
    with psycopg.connect(dsn) as conn:
        products = pd.DataFrame(
            conn.execute("select item_id, category from marts.dim_products order by item_id").fetchall(),
            columns=["item_id", "category"],
        )
    embedded = products[~products["item_id"].isin(WITHOUT_VECTOR)]
    embedded = pd.concat([embedded, pd.DataFrame({"item_id": [GONE], "category": ["Books"]})], ignore_index=True)
    rng = np.random.default_rng(5)
    centroids = {c: rng.normal(size=DIM) * 3 for c in sorted(embedded["category"].unique())}
    vectors = np.stack([centroids[c] + rng.normal(size=DIM) for c in embedded["category"]]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with psycopg.connect(dsn) as conn, conn.transaction():
        ids = embedded["item_id"].tolist()
        store.write_vectors(conn, ids, ["hash"] * len(ids), vectors, "hand-made@1")
    return embedded.assign(vector=list(vectors))


def _similar(dsn: str, kind: str) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select generation_id, item_id, rank, similar_item_id, score from reco.similar_items"
            " where kind = %s order by item_id, rank",
            (kind,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["generation_id", "item_id", "rank", "similar_item_id", "score"])


def _nightly(s: Settings) -> GenerationResult:
    return generate_recommendations(
        s.warehouse_url, tracking_uri=s.mlflow_tracking_uri, model_name=s.model_name, log=lambda _: None
    )


@pytest.fixture(scope="module")
def nightly(test_settings: Settings) -> tuple[GenerationResult, pd.DataFrame]:
    """The marts (in place of the empty schema the services start with), the stored vectors, one nightly
    run and its Redis copy."""
    with psycopg.connect(test_settings.warehouse_url, autocommit=True) as conn:
        conn.execute("drop schema if exists marts cascade")
    _hand_made_marts(test_settings.warehouse_url)
    embedded = _store_vectors(test_settings.warehouse_url)
    result = _nightly(test_settings)
    copy_live_generation_to_redis(test_settings, test_settings.warehouse_url)
    return result, embedded


def test_the_nightly_job_writes_both_kinds_in_one_generation(test_settings: Settings, nightly) -> None:
    result, embedded = nightly
    dsn = test_settings.warehouse_url
    also, looks = _similar(dsn, "also_bought"), _similar(dsn, "looks_like")
    assert set(also["generation_id"]) == set(looks["generation_id"]) == {result.generation_id}
    assert result.similar_kinds == {"also_bought": len(also), "looks_like": len(looks)}
    with psycopg.connect(dsn) as conn:
        count = conn.execute("select similar_item_count from reco.generations where is_live").fetchone()[0]
        kinds = conn.execute("select array_agg(distinct kind order by kind) from reco.similar_items").fetchone()[0]
        index = conn.execute(
            "select indexdef from pg_indexes where schemaname = 'reco' and tablename = 'similar_items'"
        ).fetchall()
    assert count == len(also) + len(looks) and kinds == ["also_bought", "looks_like"]
    assert [row[0].split(" USING btree ")[1] for row in index] == ["(item_id, kind, rank)"]
    assert index[0][0].startswith("CREATE UNIQUE INDEX")
    # co-occurrence knows no never-bought item; "looks like" knows every item with a vector, and only those
    assert not also["item_id"].ge("p0100").any()
    catalogue = embedded[embedded["item_id"] != GONE]
    assert set(looks["item_id"]) == set(catalogue["item_id"])
    assert GONE not in set(looks["similar_item_id"]) and not set(looks["similar_item_id"]) & WITHOUT_VECTOR
    # exactly the cosine top 50 of each item among the others (brute force), best first
    vectors = np.stack(catalogue["vector"].to_numpy())
    cosine = vectors @ vectors.T
    np.fill_diagonal(cosine, -np.inf)
    ids = catalogue["item_id"].to_numpy()
    expected = ids[np.argsort(-cosine, axis=1, kind="stable")[:, :50]]
    got = looks.groupby("item_id")["similar_item_id"].agg(list)
    assert {item: got[item] for item in ids} == {item: list(row) for item, row in zip(ids, expected, strict=True)}
    assert np.allclose(looks.groupby("item_id")["score"].first().loc[ids], cosine.max(axis=1), atol=1e-5)
    # the clusters: a brand-new item's nearest neighbours are items of its own category
    category = dict(zip(catalogue["item_id"], catalogue["category"], strict=True))
    top9 = looks[(looks["item_id"] == "p0105") & (looks["rank"] <= 9)]["similar_item_id"]
    assert {category[item] for item in top9} == {category["p0105"]}


def test_redis_keeps_the_kinds_apart(test_settings: Settings, nightly) -> None:
    result, _ = nightly
    layout = cache_layout(test_settings.db_prefix)
    r = redis.Redis.from_url(test_settings.redis_url)
    try:
        also = unpack(r.get(layout.similar(result.generation_id, "p0000")))
        looks = unpack(r.get(layout.similar(result.generation_id, "p0000", "looks_like")))
        assert r.get(layout.similar(result.generation_id, "p0105")) is None  # never bought: no also_bought
        assert r.get(layout.similar(result.generation_id, "p0115", "looks_like")) is None  # no vector
    finally:
        r.close()
    dsn = test_settings.warehouse_url
    for kind, value in (("also_bought", also), ("looks_like", looks)):
        rows = _similar(dsn, kind).query("item_id == 'p0000'")
        assert value[0] == rows["similar_item_id"].tolist()
        assert np.allclose(value[1], rows["score"], atol=1e-6)


@pytest.fixture(scope="module")
def api(test_settings: Settings, tool_env: dict[str, str], nightly) -> Iterator[httpx.Client]:
    """``recomart serve``'s uvicorn command line with 2 workers, as a real process."""
    s = test_settings
    env = {**tool_env, **server_env(s, s.api_port)}
    log = (s.state_dir / f"api-similar-{s.api_port}.log").open("w")
    process = subprocess.Popen(uvicorn_args(s, "127.0.0.1", s.api_port, 2), env=env, stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=30)
    try:
        _wait(lambda: client.get("/v1/items/p0000/similar").status_code == 200, 120)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()
        print((s.state_dir / f"api-similar-{s.api_port}.log").read_text()[-3000:], file=sys.stderr)


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout_s} s")


def _get(api: httpx.Client, item: str, **params) -> dict:
    response = api.get(f"/v1/items/{item}/similar", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(body: dict) -> list[str]:
    return [row["item_id"] for row in body["items"]]


def test_the_api_serves_also_bought_by_default_and_looks_like_on_request(
    api: httpx.Client, test_settings: Settings, nightly
) -> None:
    result, _ = nightly
    dsn = test_settings.warehouse_url
    also, looks = _similar(dsn, "also_bought"), _similar(dsn, "looks_like")
    default = _get(api, "p0000", k=50)
    assert set(default) == SIMILAR_KEYS and default["list_source"] == "redis"
    assert default["generation_id"] == result.generation_id
    assert _ids(default) == also.query("item_id == 'p0000'")["similar_item_id"].tolist()
    assert _ids(_get(api, "p0000", k=50, kind="also_bought")) == _ids(default)
    looking = _get(api, "p0000", k=5, kind="looks_like")
    assert set(looking) == SIMILAR_KEYS and looking["list_source"] == "redis"
    assert _ids(looking) == looks.query("item_id == 'p0000' and rank <= 5")["similar_item_id"].tolist()
    assert [row["rank"] for row in looking["items"]] == [1, 2, 3, 4, 5]
    assert looking["items"][0]["title"] and looking["items"][0]["score"] > looking["items"][4]["score"]
    # a never-bought item: nothing also bought, but it looks like others; an item without a vector: nothing
    assert _get(api, "p0105")["items"] == [] and len(_get(api, "p0105", kind="looks_like")["items"]) == 10
    assert _get(api, "p0115", kind="looks_like")["items"] == []


def test_the_api_refuses_an_unknown_kind_and_item(api: httpx.Client) -> None:
    bad = api.get("/v1/items/p0000/similar", params={"kind": "looks_alike"})
    assert bad.status_code == 422 and "also_bought" in bad.text and "looks_like" in bad.text
    assert api.get("/v1/items/no-such-item/similar", params={"kind": "looks_like"}).status_code == 404


def test_a_generation_not_in_redis_is_read_from_postgres_by_kind(api: httpx.Client, test_settings: Settings) -> None:
    """A second nightly run (not copied to Redis): the same rows again, and the API reads them from Postgres."""
    dsn = test_settings.warehouse_url
    before = {kind: _similar(dsn, kind).drop(columns="generation_id") for kind in ("also_bought", "looks_like")}
    again = _nightly(test_settings)
    for kind, frame in before.items():
        pd.testing.assert_frame_equal(_similar(dsn, kind).drop(columns="generation_id"), frame)
    _wait(lambda: _get(api, "p0000")["generation_id"] == again.generation_id, 30)
    for kind, frame in before.items():
        body = _get(api, "p0001", k=50, kind=kind)
        assert body["list_source"] == "postgres"
        assert _ids(body) == frame.query("item_id == 'p0001'")["similar_item_id"].tolist()


def test_a_changed_vector_set_is_a_new_training_input(test_settings: Settings, nightly) -> None:
    """The train task's inputs digest covers the stored vectors (the content component may use them)."""
    dsn, config = test_settings.warehouse_url, TrainingConfig()
    before = inputs_digest(dsn, config, "generated")
    assert inputs_digest(dsn, config, "generated") == before
    with psycopg.connect(dsn) as conn:
        conn.execute("update reco.item_embeddings set text_hash = 'changed' where item_id = 'p0003'")
    changed = inputs_digest(dsn, config, "generated")
    with psycopg.connect(dsn) as conn:
        conn.execute("update reco.item_embeddings set text_hash = 'hash' where item_id = 'p0003'")
    assert changed != before and inputs_digest(dsn, config, "generated") == before
