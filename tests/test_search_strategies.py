"""Text, hybrid and MMR search and centroids: pure rules by tables, then against the server."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    PGVectorStore,
    SchemaMismatchError,
    ValidationError,
)
from pgvs.search.ranking import check_hybrid, check_mmr, fuse, mmr_select
from pgvs.search.text import check_text

DIM = 8
DOCS = [
    "torch.nanmean computes the mean of all non-NaN elements",
    "torch.nn.functional.grid_sample samples the input at grid locations",
    "x.conj returns the conjugate of a complex tensor",
    "The Adam optimizer keeps running averages of gradients",
    "set_to_none resets gradients to None instead of zero in zero_grad",
    "A plain sentence about cats and dogs",
    "Another sentence about dogs running in the park",
    "grid layout for plots, not sampling at all",
    "the mean of a tensor along a dimension",
    "sampling from a distribution with a given seed",
]


def _vectors(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


@pytest.fixture
async def text_store(pg_dsn: str, table_name: str) -> AsyncIterator[AsyncPGVectorStore]:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        id_type="bigint",
        text_search="english",
    ) as store:
        await store.add_vectors(
            _vectors(len(DOCS)),
            ids=list(range(len(DOCS))),
            contents=DOCS,
            metadata=[{"n": i, "even": i % 2 == 0} for i in range(len(DOCS))],
        )
        yield store


# -- pure rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \t\n", "empty"),
        (None, "must be a string"),
        (b"bytes", "must be a string"),
        ("a\x00b", "NUL"),
        ("x" * 10_001, "at most 10000"),
        ("bad \ud800 surrogate", "lone surrogate"),
    ],
)
def test_bad_query_text_is_refused_before_io(text: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_text(text)


def test_good_query_text_passes_unchanged() -> None:
    assert check_text(' "exact phrase" or -not ') == ' "exact phrase" or -not '


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fusion": "max"}, "fusion must be"),
        ({"rrf_k": 0}, "rrf_k must be at least 1"),
        ({"rrf_k": math.nan}, "finite"),
        ({"vector_weight": -1}, "must not be negative"),
        ({"vector_weight": 0, "text_weight": 0}, "both 0"),
        ({"text_weight": True}, "finite number"),
        ({"candidates": 5}, "at least k=10"),
        ({"candidates": 10.5}, "at least k=10"),
    ],
)
def test_bad_hybrid_options(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "k": 10,
        "fusion": "rrf",
        "rrf_k": 60,
        "vector_weight": 1.0,
        "text_weight": 1.0,
        "candidates": None,
    }
    arguments.update(options)
    with pytest.raises(ValidationError, match=message):
        check_hybrid(**arguments)


def test_default_candidates_grow_with_k() -> None:
    common: dict[str, Any] = {"fusion": "rrf", "rrf_k": 60, "vector_weight": 1, "text_weight": 1}
    assert check_hybrid(k=4, candidates=None, **common) == 50
    assert check_hybrid(k=40, candidates=None, **common) == 200
    assert check_hybrid(k=4, candidates=4, **common) == 4


@pytest.mark.parametrize(
    ("fetch_k", "lambda_mult", "message"),
    [(3, 0.5, "fetch_k must be"), (10, 1.5, "between 0 and 1"), (10, -0.1, "between 0 and 1")],
)
def test_bad_mmr_options(fetch_k: int, lambda_mult: float, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_mmr(4, fetch_k, lambda_mult)


def test_fuse_rrf_and_weighted() -> None:
    rrf = fuse(["a", "b"], ["b", "c"], rrf_k=60)
    assert rrf == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})
    weighted = fuse(
        ["a", "b", "c"],
        ["c"],
        fusion="weighted",
        vector_weight=2.0,
        vector_scores=[0.9, 0.5, 0.1],
        text_scores=[3.0],
    )
    assert weighted == pytest.approx({"a": 2.0, "b": 1.0, "c": 0.0 + 1.0})


def test_mmr_selection() -> None:
    query = np.array([1.0, 0.0])
    near, near_copy, other = [1.0, 0.05], [1.0, 0.06], [0.6, 0.8]
    candidates = np.array([near, near_copy, other])
    assert mmr_select(query, candidates, 3, 1.0) == [0, 1, 2]  # plain relevance
    assert mmr_select(query, candidates, 2, 0.5) == [0, 1]  # relevance still wins at 0.5
    assert mmr_select(query, candidates, 2, 0.3) == [0, 2]  # the copy is redundant
    assert mmr_select(query, candidates, 5, 0.3) == [0, 2, 1]  # k beyond the candidates
    assert mmr_select(query, np.zeros((0, 2)), 3, 0.5) == []
    # A zero vector is similar to nothing and never chosen over a relevant row.
    assert mmr_select(query, np.array([[0.0, 0.0], near]), 1, 0.5) == [1]


# -- text search ------------------------------------------------------------------------------


async def test_identifiers_are_found_by_their_names_and_parts(
    text_store: AsyncPGVectorStore,
) -> None:
    async def top(text: str) -> list[int]:
        return [hit.id for hit in await text_store.text_search(text, k=3)]

    assert (await top("torch.nanmean"))[0] == 0  # a dotted name: the parser's one host token
    assert (await top("nanmean"))[0] == 0  # its last part alone
    assert (await top("grid_sample"))[0] == 1  # snake_case
    assert (await top("conj"))[0] == 2
    assert (await top("set_to_none zero_grad"))[0] == 4
    hits = await text_store.text_search("nanmean", k=3)
    assert hits[0].text_rank == 1
    assert hits[0].score > 0
    assert math.isnan(hits[0].distance)
    assert hits[0].content == DOCS[0]
    assert hits[0].metadata == {"n": 0, "even": True}


async def test_web_search_syntax(text_store: AsyncPGVectorStore) -> None:
    async def ids(text: str, **options: Any) -> set[int]:
        return {hit.id for hit in await text_store.text_search(text, k=10, **options)}

    assert await ids("dogs") == {5, 6}
    assert await ids("dogs -park") == {5}
    assert await ids('"dogs running"') == {6}
    assert await ids("cats or optimizer") == {3, 5}
    assert await ids("dogs", filter={"n": {"$gt": 5}}) == {6}


@pytest.mark.parametrize(
    "text",
    ["'", "&&", "!!!", "a | | b", "(((", "'; DROP TABLE x; --", ":*", "<->", '"', "-", "or"],
)
async def test_any_text_is_safe(text_store: AsyncPGVectorStore, text: str) -> None:
    hits = await text_store.text_search(text, k=5)  # never a tsquery syntax error
    assert isinstance(hits, list)
    assert await text_store.count() == len(DOCS)


async def test_text_search_needs_the_config(pg_dsn: str, table_name: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name
    ) as store:
        with pytest.raises(ConfigurationError, match="text_search=None") as caught:
            await store.text_search("anything")
        assert caught.value.hint is not None
        assert "text_search='english'" in caught.value.hint
        with pytest.raises(ConfigurationError, match="needs full-text search"):
            await store.hybrid_search(np.ones(DIM), "anything")


async def test_unknown_text_configuration(pg_dsn: str, table_name: str) -> None:
    store = AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, text_search="klingon"
    )
    with pytest.raises(ConfigurationError, match="'klingon' is not a text search configuration"):
        await store.initialize()
    await store.close()
    with pytest.raises(ConfigurationError, match="must name a text search configuration"):
        AsyncPGVectorStore(dimensions=DIM, text_search="english; DROP TABLE t")


async def test_an_existing_table_gains_text_search_and_keeps_its_rows(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    options: dict[str, Any] = {
        "connection_string": pg_dsn,
        "dimensions": DIM,
        "table_name": table_name,
        "id_type": "bigint",
    }
    async with AsyncPGVectorStore(**options) as plain:
        await plain.add_vectors(_vectors(len(DOCS)), ids=list(range(len(DOCS))), contents=DOCS)
    manual = AsyncPGVectorStore(**options, text_search="english", auto_create_table=False)
    with pytest.raises(SchemaMismatchError, match="content_tsv"):
        await manual.initialize()
    await manual.close()
    async with AsyncPGVectorStore(**options, text_search="english") as texted:
        assert await texted.count() == len(DOCS)
        assert [hit.id for hit in await texted.text_search("conjugate")] == [2]
        # New rows get their tsvector as they are written (a generated column).
        await texted.add_vectors(_vectors(1, seed=9), ids=[99], contents=["brand new zebra"])
        assert [hit.id for hit in await texted.text_search("zebra")] == [99]
    indexes = await raw_conn.fetch(
        "SELECT indexdef FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%gin%'",
        table_name,
    )
    assert any("content_tsv" in row["indexdef"] for row in indexes)


# -- hybrid search ------------------------------------------------------------------------------


def _reference(
    vector_hits: list[Any], text_hits: list[Any], k: int, **options: Any
) -> list[tuple[Any, float]]:
    vector_ids = [hit.id for hit in vector_hits]
    text_ids = [hit.id for hit in text_hits]
    fused = fuse(
        vector_ids,
        text_ids,
        vector_scores=[-hit.distance for hit in vector_hits],
        text_scores=[hit.score for hit in text_hits],
        **options,
    )

    def rank(ids: list[Any], key: Any) -> float:
        return ids.index(key) if key in ids else math.inf

    order = sorted(fused, key=lambda key: (-fused[key], rank(vector_ids, key), rank(text_ids, key)))
    return [(key, fused[key]) for key in order[:k]]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"rrf_k": 1, "vector_weight": 0.5, "text_weight": 2.0},
        {"fusion": "weighted"},
        {"fusion": "weighted", "vector_weight": 0.0},
    ],
)
async def test_hybrid_fusion_matches_the_reference(
    text_store: AsyncPGVectorStore, options: dict[str, Any]
) -> None:
    query = _vectors(1, seed=3)[0]
    text = "sampling"  # a plain word: the same query for text_search (web) and the hybrid leg
    candidates = 6
    hits = await text_store.hybrid_search(query, text, k=5, candidates=candidates, **options)
    vector_hits = await text_store.search(query, k=candidates)
    text_hits = await text_store.text_search(text, k=candidates)
    expected = _reference(vector_hits, text_hits, 5, **options)
    assert [hit.id for hit in hits] == [key for key, _ in expected]
    assert [hit.score for hit in hits] == pytest.approx([score for _, score in expected])
    vector_ids = [hit.id for hit in vector_hits]
    text_ids = [hit.id for hit in text_hits]
    for hit in hits:
        assert hit.vector_rank == (vector_ids.index(hit.id) + 1 if hit.id in vector_ids else None)
        assert hit.text_rank == (text_ids.index(hit.id) + 1 if hit.id in text_ids else None)
        stored = vector_hits[vector_ids.index(hit.id)] if hit.id in vector_ids else None
        if stored is not None:
            assert hit.distance == pytest.approx(stored.distance, abs=1e-6)
        assert hit.content == DOCS[hit.id]


async def test_hybrid_is_one_statement(
    text_store: AsyncPGVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    original = asyncpg.Connection.fetch

    async def counting(self: asyncpg.Connection, sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return await original(self, sql, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetch", counting)
    hits = await text_store.hybrid_search(_vectors(1)[0], "mean", k=3)
    assert len(hits) == 3
    assert len(statements) == 1
    assert statements[0].startswith("WITH vector_leg AS")


async def test_hybrid_keeps_tenants_and_filters_in_both_legs(pg_dsn: str, table_name: str) -> None:
    def open_store(domain: str) -> AsyncPGVectorStore:
        return AsyncPGVectorStore(
            connection_string=pg_dsn,
            dimensions=DIM,
            table_name=table_name,
            id_type="bigint",
            text_search="simple",
            domain_id=domain,
        )

    vectors = _vectors(len(DOCS))
    async with open_store("a") as a, open_store("b") as b:
        await a.add_vectors(vectors, ids=list(range(10)), contents=DOCS, metadata=[{"t": "a"}] * 10)
        await b.add_vectors(vectors, ids=list(range(10)), contents=DOCS, metadata=[{"t": "b"}] * 10)
        for store, tenant in ((a, "a"), (b, "b")):
            hits = await store.hybrid_search(vectors[0], "mean", k=10)
            assert len(hits) == 10  # the tenant's 10 rows, not 20
            assert {hit.metadata["t"] for hit in hits if hit.metadata} == {tenant}
            text_hits = await store.text_search("mean", k=10)
            assert {hit.metadata["t"] for hit in text_hits if hit.metadata} == {tenant}
        filtered = await a.hybrid_search(
            vectors[0], "mean", k=10, filter={"t": "a", "$or": [{"t": "zzz"}, {"t": "a"}]}
        )
        assert len(filtered) == 10
        nothing = await a.hybrid_search(vectors[0], "mean", k=10, filter={"t": "b"})
        assert nothing == []


async def test_hybrid_bad_input_before_io(text_store: AsyncPGVectorStore) -> None:
    query = _vectors(1)[0]
    with pytest.raises(ValidationError, match="empty"):
        await text_store.hybrid_search(query, "  ")
    with pytest.raises(ValidationError, match="rrf_k"):
        await text_store.hybrid_search(query, "mean", rrf_k=0)
    with pytest.raises(ValidationError, match="dimensions"):
        await text_store.hybrid_search(np.ones(DIM + 1), "mean")


# -- MMR and centroid -----------------------------------------------------------------------------


async def test_mmr_search(pg_dsn: str, table_name: str) -> None:
    base = np.eye(DIM, dtype=np.float32)
    offsets = np.array([[0.05], [0.1], [0.15]], dtype=np.float32)
    near_copies = base[0] + offsets * base[2:5]  # three near-copies of row 0, apart
    vectors = np.vstack([base, near_copies]).astype(np.float32)
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, id_type="bigint"
    ) as store:
        await store.add_vectors(vectors, ids=list(range(len(vectors))))
        query = base[0] + np.float32(0.3) * base[1]
        nearest = [hit.id for hit in await store.search(query, k=4)]
        relevance = await store.mmr_search(query, k=4, fetch_k=8, lambda_mult=1.0)
        assert [hit.id for hit in relevance] == nearest
        diverse = [hit.id for hit in await store.mmr_search(query, k=3, fetch_k=11)]
        assert diverse[0] == nearest[0]
        assert len({i for i in diverse if i in (0, 8, 9, 10)}) == 1  # one of the copies
        with pytest.raises(ValidationError, match="fetch_k"):
            await store.mmr_search(query, k=5, fetch_k=4)


async def test_centroid(pg_dsn: str, table_name: str) -> None:
    vectors = _vectors(20, seed=4)
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, id_type="bigint"
    ) as store:
        assert await store.centroid() is None
        await store.add_vectors(
            vectors, ids=list(range(20)), metadata=[{"odd": i % 2} for i in range(20)]
        )
        cases: list[tuple[dict[str, Any], np.ndarray]] = [
            ({}, vectors.mean(axis=0)),
            ({"ids": [1, 2, 3]}, vectors[1:4].mean(axis=0)),
            ({"filter": {"odd": 1}, "ids": [1, 2, 3]}, vectors[[1, 3]].mean(axis=0)),
        ]
        for arguments, expected in cases:
            mean = await store.centroid(**arguments)
            assert mean is not None, arguments
            np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)
        assert await store.centroid(ids=[]) is None
        assert await store.centroid(ids=[12345]) is None


def test_the_sync_store_has_the_strategies(pg_dsn: str, table_name: str) -> None:
    with PGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, text_search="english"
    ) as store:
        store.add_vectors(_vectors(3), contents=DOCS[:3])
        assert store.text_search("nanmean")[0].content == DOCS[0]
        assert len(store.hybrid_search(_vectors(1)[0], "conj", k=2)) == 2
        assert len(store.mmr_search(_vectors(1)[0], k=2, fetch_k=3)) == 2
        assert store.centroid() is not None


# -- real text ----------------------------------------------------------------------------------

TORCHDOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "torchdocs-text"


async def test_keyword_queries_find_their_source_chunk(pg_dsn: str, table_name: str) -> None:
    """Real PyTorch docstrings and the data set's keyword queries (see its README): the source
    chunk must be in the text-search top 10 nearly always (plain parsing: 133 of 200)."""
    corpus = [json.loads(line) for line in (TORCHDOCS / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (TORCHDOCS / "queries.jsonl").open(encoding="utf-8")]
    keyword = [q for q in queries if q["kind"] == "keyword"][:100]
    embeddings = np.load(TORCHDOCS / "embeddings.npy")
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=384,
        table_name=table_name,
        id_type="bigint",
        text_search="english",
        index_type="none",
    ) as store:
        await store.ingest(
            embeddings,
            ids=[chunk["id"] for chunk in corpus],
            contents=[chunk["text"] for chunk in corpus],
        )
        found = 0
        for query in keyword:
            hits = await store.text_search(query["text"], k=10)
            found += query["source_chunk_id"] in [hit.id for hit in hits]
    assert found >= 95, f"{found} of {len(keyword)}"


# -- normalization ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
async def test_normalized_cosine_runs_inner_product_and_reports_cosine(
    pg_dsn: str, table_name: str, vector_type: str
) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(600, DIM)).astype(np.float32) * rng.uniform(
        0.1, 50, size=(600, 1)
    ).astype(np.float32)
    query = vectors[3] * np.float32(7.0)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ (query / np.linalg.norm(query))
    expected = np.argsort(-cosine)[:5]
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        id_type="bigint",
        vector_type=vector_type,
        normalize=True,
    ) as store:
        # 600 rows: add_vectors takes the COPY path, which must normalise too.
        await store.add_vectors(vectors, ids=list(range(600)))
        small = np.array([[3.0] + [0.0] * (DIM - 1)], dtype=np.float32)
        await store.add_vectors(small, ids=[1000])  # the one-statement path
        status = await store.create_index()
        assert status.opclass == f"{vector_type}_ip_ops"
        hits = await store.search(query, k=5, exact=True)
        assert [hit.id for hit in hits] == list(expected)
        tolerance = 1e-3 if vector_type == "halfvec" else 1e-5
        for hit in hits:
            assert hit.score == pytest.approx(cosine[hit.id], abs=tolerance)
            assert hit.distance == pytest.approx(1 - cosine[hit.id], abs=tolerance)
        (stored,) = await store.get_vectors([1000])
        np.testing.assert_allclose(np.asarray(stored.vector, dtype=np.float32)[0], 1.0)
        with pytest.raises(ValidationError, match="row 1: vector is all zeros"):
            await store.add_vectors(np.vstack([vectors[:1], np.zeros((1, DIM))]), ids=[1, 2])
        with pytest.raises(ValidationError, match="query vector is all zeros"):
            await store.search(np.zeros(DIM))
        assert await store.count() == 601


def test_normalize_needs_dense_vectors() -> None:
    with pytest.raises(ConfigurationError, match="normalize=True"):
        AsyncPGVectorStore(dimensions=8, vector_type="bit", metric="hamming", normalize=True)


# -- two-stage search -----------------------------------------------------------------------------


async def test_prefix_two_stage_search_keeps_recall(pg_dsn: str, table_name: str) -> None:
    """A reduced HNSW index on the first half of real MiniLM embeddings, searched through the
    index with the default re-rank: recall@10 against exact numpy ground truth stays >= 0.95."""
    embeddings = np.load(TORCHDOCS / "embeddings.npy")[:4000]
    queries = np.load(TORCHDOCS / "query_embeddings.npy")[:100]
    truth = np.argsort(-(queries @ embeddings.T), axis=1)[:, :10]
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=384,
        table_name=table_name,
        id_type="bigint",
        index_dimensions=192,
        auto_create_index=False,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        await store.ingest(embeddings, ids=list(range(len(embeddings))))
        status = await store.create_index()
        assert status.definition is not None
        assert "subvector(embedding, 1, 192)" in status.definition
        assert status.name.endswith("_prefix192")
        # 4,000 rows: the planner would rather scan; force the index as on a big table (on the
        # pool's only connection, for the rest of the test).
        await store.pool.execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
        )
        plan = await store.explain_search(queries[0], k=10)
        assert plan.uses_vector_index, plan.plan
        assert "LIMIT $2::integer * 8" in plan.sql  # candidates for the exact re-rank
        found = 0
        for query, expected in zip(queries, truth, strict=True):
            hits = await store.search(query, k=10)
            found += len({hit.id for hit in hits} & set(expected.tolist()))
            assert hits == sorted(hits, key=lambda hit: hit.distance)
        assert found / truth.size >= 0.95


def test_index_dimensions_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="index_dimensions must be an integer from 1"):
        AsyncPGVectorStore(dimensions=8, index_dimensions=8)
    with pytest.raises(ConfigurationError, match="reduction 'svd' is not one of 'prefix', 'pca'"):
        AsyncPGVectorStore(dimensions=8, index_dimensions=4, reduction="svd")
    with pytest.raises(ConfigurationError, match="reduces dense vectors"):
        AsyncPGVectorStore(dimensions=8, vector_type="sparsevec", index_dimensions=4)


async def test_the_hybrid_text_leg_requires_every_word(text_store: AsyncPGVectorStore) -> None:
    # A natural question's own "or" is a word there, not an operator (text_search differs).
    assert {hit.id for hit in await text_store.text_search("cats or optimizer")} == {3, 5}
    hits = await text_store.hybrid_search(_vectors(1)[0], "cats or optimizer", k=10)
    assert len(hits) == 10
    assert all(hit.text_rank is None for hit in hits)
    both = await text_store.hybrid_search(_vectors(1)[0], "dogs park", k=10)
    assert [hit.id for hit in both if hit.text_rank is not None] == [6]


async def test_pca_two_stage_search(pg_dsn: str, table_name: str) -> None:
    """A PCA index to a quarter of the dimensions, fitted on the store's rows at the first
    build and kept in the database as a SQL function: recall@10 through the index with the
    default re-rank >= 0.95, and a second store (another pool) projects queries the same way."""
    embeddings = np.load(TORCHDOCS / "embeddings.npy")[:4000]
    queries = np.load(TORCHDOCS / "query_embeddings.npy")[:100]
    truth = np.argsort(-(queries @ embeddings.T), axis=1)[:, :10]
    options: dict[str, Any] = {
        "connection_string": pg_dsn,
        "dimensions": 384,
        "table_name": table_name,
        "id_type": "bigint",
        "index_dimensions": 96,
        "reduction": "pca",
        "auto_create_index": False,
        "pool_min_size": 1,
        "pool_max_size": 1,
    }
    force_index = "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
    async with AsyncPGVectorStore(**options) as store:
        comment = "SELECT obj_description(to_regprocedure($1), 'pg_proc')"
        function = f"{table_name}_pca96(vector)"
        assert (await store.pool.fetchval(comment, function)).startswith("pgvs:pca provisional")
        await store.ingest(embeddings, ids=list(range(len(embeddings))))
        status = await store.create_index()
        assert status.name.endswith("_pca96")
        assert f"{table_name}_pca96(embedding)" in (status.definition or "")
        assert status.opclass == "vector_l2_ops"
        assert await store.pool.fetchval(comment, function) == "pgvs:pca fitted"
        await store.pool.execute(force_index)
        assert (await store.explain_search(queries[0], k=10)).uses_vector_index
        found = 0
        first: list[list[Any]] = []
        for query, expected in zip(queries, truth, strict=True):
            hits = await store.search(query, k=10)
            first.append([hit.id for hit in hits])
            found += len({hit.id for hit in hits} & set(expected.tolist()))
        assert found / truth.size >= 0.95
        # Rows written after the build are projected by the index itself (any write path).
        await store.add_vectors(queries[:1], ids=[99999])
        assert (await store.search(queries[0], k=1))[0].id == 99999
    async with AsyncPGVectorStore(**options) as second:
        await second.pool.execute(force_index)
        hits = await second.search(queries[1], k=10)
        assert [hit.id for hit in hits] == first[1]
