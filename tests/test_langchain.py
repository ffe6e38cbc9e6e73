"""pgvs.integrations.langchain against the embedded server, beyond LangChain's standard suite
(tests/test_langchain_standard.py): retrievers (similarity, MMR, score threshold, hybrid through
search_kwargs, filters), scores, ids per id type, bad input leaving nothing written, the
construction helpers, the sync and async routes and their loops, and a table made by
langchain-postgres itself read and written through the documented column mapping."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from pgvs._sql import quote_ident
from pgvs.config import StoreConfig
from pgvs.errors import (
    ConfigurationError,
    FilterError,
    IngestError,
    SchemaMismatchError,
    StoreClosedError,
    ValidationError,
)
from pgvs.integrations.langchain import (
    LANGCHAIN_POSTGRES_COLUMNS,
    PGVSVectorStore,
    langchain_postgres_config,
)

# Hand-placed 3-d vectors: which document is nearest, and which are near-duplicates, is known.
VECTORS: dict[str, list[float]] = {
    "postgres stores vectors": [1.0, 0.0, 0.0],
    "postgres keeps vectors": [0.99, 0.05, 0.0],  # a near-duplicate of the first
    "pgvector indexes with hnsw": [0.6, 0.8, 0.0],
    "bread needs flour and yeast": [0.0, 0.0, 1.0],
    "the kitten sleeps": [0.0, 1.0, 0.0],
}
QUERY = "where do vectors live"
VECTORS[QUERY] = [1.0, 0.0, 0.05]


class TableEmbeddings(Embeddings):
    """Deterministic embeddings from VECTORS; the async methods stay on the caller's thread."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(VECTORS[text]) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return list(VECTORS[text])

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


def config(dsn: str, table: str, **options: Any) -> dict[str, Any]:
    return {
        "dimensions": 3,
        "connection_string": dsn,
        "table_name": table,
        "pool_min_size": 1,
        **options,
    }


DOCS = [
    Document(page_content=text, metadata={"n": n, "topic": "food" if "bread" in text else "db"})
    for n, text in enumerate(list(VECTORS)[:5])
]


@pytest.fixture
def store(pg_dsn: str, table_name: str) -> Iterator[PGVSVectorStore]:
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name)) as s:
        s.add_documents(DOCS, ids=[f"d{i}" for i in range(len(DOCS))])
        yield s


@pytest.fixture
async def astore(pg_dsn: str, table_name: str) -> AsyncIterator[PGVSVectorStore]:
    async with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name)) as s:
        await s.aadd_documents(DOCS, ids=[f"d{i}" for i in range(len(DOCS))])
        yield s


def ids_of(docs: list[Document]) -> list[str | None]:
    return [doc.id for doc in docs]


def test_import_pgvs_does_not_load_langchain() -> None:
    code = (
        "import sys, pgvs, pgvs.store, pgvs.sync\n"
        "assert 'langchain_core' not in sys.modules, 'pgvs imported langchain_core'\n"
        "assert 'pgvs.integrations' not in sys.modules\n"
        "import pgvs.integrations.langchain\n"
        "assert 'langchain_core' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- retrievers ------------------------------------------------------------------------------------


def test_similarity_retriever_sync_and_filters(store: PGVSVectorStore) -> None:
    retriever = store.as_retriever(search_kwargs={"k": 2})
    assert ids_of(retriever.invoke(QUERY)) == ["d0", "d1"]
    food = store.as_retriever(search_kwargs={"k": 3, "filter": {"topic": "food"}})
    assert ids_of(food.invoke(QUERY)) == ["d3"]
    ranged = store.as_retriever(
        search_kwargs={"k": 5, "filter": {"$and": [{"n": {"$gte": 2}}, {"@id": {"$ne": "d4"}}]}}
    )
    assert sorted(ids_of(ranged.invoke(QUERY))) == ["d2", "d3"]  # type: ignore[type-var]
    with pytest.raises(FilterError, match=r"n\.\$gt"):
        store.similarity_search(QUERY, filter={"n": {"$gt": [1]}})


async def test_similarity_retriever_async(astore: PGVSVectorStore) -> None:
    retriever = astore.as_retriever(search_kwargs={"k": 2, "filter": {"n": {"$in": [1, 2]}}})
    assert ids_of(await retriever.ainvoke(QUERY)) == ["d1", "d2"]


def test_mmr_retriever_skips_the_near_duplicate(store: PGVSVectorStore) -> None:
    assert ids_of(store.similarity_search(QUERY, k=2)) == ["d0", "d1"]
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5})
    assert ids_of(mmr.invoke(QUERY)) == ["d0", "d3"]  # d1 is d0 again; d3 is the least alike
    # LangChain's own MMR over the same candidates picks the same documents
    names = list(VECTORS)[:5]
    picked = maximal_marginal_relevance(
        np.array(VECTORS[QUERY]), [VECTORS[n] for n in names], lambda_mult=0.5, k=2
    )
    assert [f"d{i}" for i in picked] == ["d0", "d3"]
    # lambda_mult=1 is plain nearest order
    assert ids_of(store.max_marginal_relevance_search(QUERY, k=2, lambda_mult=1.0)) == [
        "d0",
        "d1",
    ]
    by_vector = store.max_marginal_relevance_search_by_vector(
        VECTORS[QUERY], k=2, fetch_k=5, filter={"n": {"$ne": 0}}
    )
    assert ids_of(by_vector) == ["d1", "d3"]


async def test_mmr_async(astore: PGVSVectorStore) -> None:
    mmr = astore.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5})
    assert ids_of(await mmr.ainvoke(QUERY)) == ["d0", "d3"]
    assert ids_of(await astore.amax_marginal_relevance_search(QUERY, k=1)) == ["d0"]


def test_scores_are_distances_and_relevance_is_in_0_1(store: PGVSVectorStore) -> None:
    q = np.array(VECTORS[QUERY])
    hits = store.similarity_search_with_score(QUERY, k=5)
    for doc, distance in hits:
        v = np.array(VECTORS[doc.page_content])
        cosine = float(q @ v / np.linalg.norm(q) / np.linalg.norm(v))
        assert distance == pytest.approx(1 - cosine, abs=1e-6)
    relevance = store.similarity_search_with_relevance_scores(QUERY, k=5)
    assert [doc.id for doc, _ in relevance] == [doc.id for doc, _ in hits]
    for (_, score), (_, distance) in zip(relevance, hits, strict=True):
        assert score == pytest.approx(max(0.0, 1 - distance))
        assert 0.0 <= score <= 1.0


def test_score_threshold_retriever(store: PGVSVectorStore) -> None:
    retriever = store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 5, "score_threshold": 0.9},
    )
    assert ids_of(retriever.invoke(QUERY)) == ["d0", "d1"]


async def test_score_threshold_retriever_async(astore: PGVSVectorStore) -> None:
    retriever = astore.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 5, "score_threshold": 0.5},
    )
    assert ids_of(await retriever.ainvoke(QUERY)) == ["d0", "d1", "d2"]


@pytest.mark.parametrize("metric", ["inner_product", "euclidean", "l1"])
def test_relevance_per_metric(pg_dsn: str, table_name: str, metric: str) -> None:
    q, v = VECTORS[QUERY], [0.6, 0.8, 0.0]
    expected = {
        "inner_product": sum(a * b for a, b in zip(q, v, strict=True)),  # within [0, 1] here
        "euclidean": max(0.0, 1 - math.dist(q, v) / math.sqrt(2)),  # LangChain's convention
        "l1": 1 / (1 + sum(abs(a - b) for a, b in zip(q, v, strict=True))),
    }[metric]
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name, metric=metric)) as s:
        s.add_embeddings(["x"], [v])
        [(_, score)] = s.similarity_search_with_relevance_scores(QUERY, k=1)
        assert score == pytest.approx(expected, abs=1e-6)
    custom = PGVSVectorStore(
        TableEmbeddings(),
        config(pg_dsn, table_name, metric=metric),
        relevance_score_fn=lambda d: min(1.0, abs(d) / 10),
    )
    with custom:
        [(_, distance)] = custom.similarity_search_with_score(QUERY, k=1)
        [(_, score)] = custom.similarity_search_with_relevance_scores(QUERY, k=1)
        assert score == pytest.approx(min(1.0, abs(distance) / 10))


# -- hybrid --------------------------------------------------------------------------------------


@pytest.fixture
def text_store(pg_dsn: str, table_name: str) -> Iterator[PGVSVectorStore]:
    cfg = config(pg_dsn, table_name, text_search="english")
    with PGVSVectorStore(TableEmbeddings(), cfg) as s:
        s.add_documents(DOCS, ids=[f"d{i}" for i in range(len(DOCS))])
        yield s


def test_hybrid_through_search_kwargs(text_store: PGVSVectorStore) -> None:
    # "flour" is in one document only, and that document is the farthest from the vector.
    vector_only = text_store.similarity_search_by_vector(VECTORS[QUERY], k=1)
    assert ids_of(vector_only) == ["d0"]
    hybrid = text_store.as_retriever(search_kwargs={"k": 1, "hybrid": True, "text": "flour"})
    assert ids_of(hybrid.invoke(QUERY)) == ["d3"]
    weighted = text_store.similarity_search_by_vector(
        VECTORS[QUERY],
        k=2,
        text="flour",
        hybrid={"fusion": "weighted", "vector_weight": 0.1, "text_weight": 1.0},
    )
    assert ids_of(weighted)[0] == "d3"
    defaults = text_store.as_retriever(search_kwargs={"k": 1, "hybrid": {}, "text": "yeast"})
    assert ids_of(defaults.invoke(QUERY)) == ["d3"]
    # with the query itself as the keywords: "vectors" matches d0 and d1 (stemmed "keeps")
    both = text_store.similarity_search_with_score(QUERY, k=2, hybrid=True)
    assert {doc.id for doc, _ in both} == {"d0", "d1"}
    assert all(distance >= 0 for _, distance in both)  # scores stay distances
    filtered = text_store.similarity_search(
        QUERY, k=3, hybrid=True, text="vectors", filter={"n": 1}
    )
    assert ids_of(filtered) == ["d1"]


async def test_hybrid_async(pg_dsn: str, table_name: str) -> None:
    cfg = config(pg_dsn, table_name, text_search="english")
    async with PGVSVectorStore(TableEmbeddings(), cfg) as s:
        await s.aadd_documents(DOCS, ids=[f"d{i}" for i in range(len(DOCS))])
        hybrid = s.as_retriever(search_kwargs={"k": 1, "hybrid": True, "text": "yeast"})
        assert ids_of(await hybrid.ainvoke(QUERY)) == ["d3"]


def test_hybrid_needs_text_search_and_known_options(store: PGVSVectorStore) -> None:
    with pytest.raises(ConfigurationError, match="text_search"):
        store.similarity_search(QUERY, hybrid=True)
    with pytest.raises(ValidationError, match="'fusoin'"):
        store.similarity_search(QUERY, hybrid={"fusoin": "rrf"})
    with pytest.raises(ValidationError, match=r"unknown search option.*'filtr'"):
        store.similarity_search(QUERY, filtr={"n": 1})
    with pytest.raises(ValidationError, match="needs text="):
        store.similarity_search_by_vector(VECTORS[QUERY], hybrid=True)


# -- ids, gets and deletes -----------------------------------------------------------------------


def test_get_by_ids_keeps_order_and_skips_missing(store: PGVSVectorStore) -> None:
    docs = store.get_by_ids(["d3", "nope", "d0", ""])
    assert docs == [
        Document(id="d3", page_content=DOCS[3].page_content, metadata=DOCS[3].metadata),
        Document(id="d0", page_content=DOCS[0].page_content, metadata=DOCS[0].metadata),
    ]


def test_delete_by_ids_filter_and_nothing(store: PGVSVectorStore) -> None:
    assert store.delete() is False
    assert store.delete(filter={"topic": "food"}) is True
    assert store.delete(["d0", "missing"]) is True
    assert sorted(d.id or "" for d in store.similarity_search(QUERY, k=10)) == ["d1", "d2", "d4"]
    assert store.sync_store().count() == 3


def test_uuid_ids(pg_dsn: str, table_name: str) -> None:
    cfg = StoreConfig(dimensions=3, connection_string=pg_dsn, table_name=table_name)
    assert cfg.id_type == "uuid"
    with PGVSVectorStore(TableEmbeddings(), cfg) as s:
        given = str(uuid.uuid4()).upper()
        ids = s.add_texts(list(VECTORS)[:2], ids=[given, None])  # type: ignore[list-item]
        assert ids[0] == given.lower()
        assert uuid.UUID(ids[1])
        assert ids_of(s.get_by_ids([given, "not-a-uuid", ids[1]])) == ids
        with pytest.raises(ValidationError, match=r"row 1: id 'x' is not a valid uuid"):
            s.add_texts(list(VECTORS)[:2], ids=[str(uuid.uuid4()), "x"])
        assert s.delete(["not-a-uuid"]) is True
        assert s.sync_store().count() == 2


def test_bigint_ids(pg_dsn: str, table_name: str) -> None:
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name, id_type="bigint")) as s:
        assert s.add_texts(list(VECTORS)[:2], ids=["12", "7"]) == ["12", "7"]
        generated = s.add_texts(list(VECTORS)[2:4])
        assert all(i.isdigit() for i in generated)
        assert ids_of(s.get_by_ids(["7", "x", "99999999999999999999"])) == ["7"]
        with pytest.raises(ValidationError, match="row 0: id 'x' is not a valid bigint"):
            s.add_texts(list(VECTORS)[:1], ids=["x"])
        with pytest.raises(ValidationError, match="row 1: id is None"):
            s.add_texts(list(VECTORS)[:2], ids=["1", None])  # type: ignore[list-item]


# -- bad input: typed errors naming the row, nothing written ---------------------------------------


@pytest.mark.parametrize("as_lists", [False, True])
@pytest.mark.parametrize("bulk", [False, True])
def test_a_bad_row_leaves_nothing_written(
    pg_dsn: str, table_name: str, bulk: bool, as_lists: bool
) -> None:
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name), bulk_threshold=10) as s:
        n = 40 if bulk else 5
        matrix = np.ones((n, 3), dtype=np.float32)
        matrix[n - 2, 1] = np.nan
        vectors: Any = matrix.tolist() if as_lists else matrix
        texts = [f"t{i}" for i in range(n)]
        error_type = IngestError if bulk else ValidationError
        with pytest.raises(error_type, match=rf"row {n - 2}: vector element 1 is nan") as info:
            s.add_embeddings(texts, vectors)
        if bulk:
            assert "nothing was written" in str(info.value)
        good: Any = np.ones((n, 3)).tolist() if as_lists else np.ones((n, 3))
        metadatas: list[dict[str, Any]] = [{"i": i} for i in range(n)]
        metadatas[1] = {"bad": float("nan")}
        with pytest.raises(error_type, match="row 1: metadata"):
            s.add_embeddings(texts, good, metadatas)
        with pytest.raises(error_type, match="row 3: content"):
            s.add_embeddings([*texts[:3], "nul\x00", *texts[4:]], good)
        ragged = [*good[: n - 1], [1.0, 2.0]] if as_lists else good
        if as_lists:
            with pytest.raises(error_type, match=rf"row {n - 1}: vector has 2 dimensions"):
                s.add_embeddings(texts, ragged)
        assert s.sync_store().count() == 0


def test_non_atomic_bulk_writes_commit_batch_by_batch(pg_dsn: str, table_name: str) -> None:
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name), bulk_threshold=10) as s:
        # One row first: the table keeps its HNSW index, so ingest's batches are the indexed
        # table's (an empty table's ingest loads in one big batch and builds the index after).
        s.add_embeddings(["seed"], np.ones((1, 3), dtype=np.float32), ids=["seed"])
        matrix = np.ones((200, 3), dtype=np.float32)
        matrix[150, 0] = np.inf
        ids = [f"r{i}" for i in range(200)]
        with pytest.raises(IngestError, match="row 150: vector element 0 is inf") as info:
            s.add_embeddings(
                [f"t{i}" for i in range(200)], matrix, ids=ids, atomic=False, bulk=True
            )
        written = s.sync_store().count() - 1
        assert written == info.value.rows_written > 0
        assert info.value.committed_batches
        assert ids_of(s.get_by_ids(ids[:1])) == ["r0"]


def test_bad_shapes_are_refused_before_anything_runs(store: PGVSVectorStore) -> None:
    with pytest.raises(ValidationError, match="embeddings has 1 vectors for 2 texts"):
        store.add_embeddings(["a", "b"], [[1.0, 0.0, 0.0]])
    with pytest.raises(ValidationError, match="metadatas has 1 entries for 2 texts"):
        store.add_embeddings(["a", "b"], [[1.0, 0, 0]] * 2, [{}])
    with pytest.raises(ValidationError, match="ids has 3 entries for 2 texts"):
        store.add_embeddings(["a", "b"], [[1.0, 0, 0]] * 2, ids=["1", "2", "3"])
    with pytest.raises(ValidationError, match="row 1: text must be a string"):
        store.add_embeddings(["a", 5], [[1.0, 0, 0]] * 2)  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="row 1: vector has 2 dimensions, expected 3"):
        store.add_embeddings(["a", "b"], [[1.0, 0, 0], [1.0, 0]])
    with pytest.raises(ValidationError, match="unknown add option"):
        store.add_texts([QUERY], colour="red")
    assert store.sync_store().count() == len(DOCS)


def test_bulk_path_round_trips(pg_dsn: str, table_name: str) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(300, 3)).astype(np.float32)
    texts = [f"t{i}" for i in range(300)]
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name), bulk_threshold=100) as s:
        ids = s.add_embeddings(texts, vectors, [{"i": i} for i in range(300)])
        assert len(set(ids)) == 300
        assert s.sync_store().count() == 300
        [doc] = s.similarity_search_by_vector(vectors[123].tolist(), k=1)
        assert (doc.id, doc.page_content, doc.metadata) == (ids[123], "t123", {"i": 123})
        # an upsert: the same ids again replace, never duplicate
        s.add_embeddings(texts, vectors, ids=ids, bulk=True)
        assert s.sync_store().count() == 300


# -- construction ----------------------------------------------------------------------------------


def test_from_texts_and_documents_infer_dimensions(pg_dsn: str, table_name: str) -> None:
    texts = list(VECTORS)[:3]
    with PGVSVectorStore.from_texts(
        texts,
        TableEmbeddings(),
        metadatas=[{"i": i} for i in range(3)],
        ids=["a", "b", "c"],
        connection_string=pg_dsn,
        table_name=table_name,
    ) as s:
        assert s.config.dimensions == 3
        assert ids_of(s.similarity_search(QUERY, k=1)) == ["a"]
    with PGVSVectorStore.from_documents(
        [Document(page_content=texts[0], id="z")],
        TableEmbeddings(),
        config={"connection_string": pg_dsn, "table_name": table_name},
        bulk_threshold=5,
    ) as s:
        assert s.bulk_threshold == 5
        assert ids_of(s.get_by_ids(["z", "a"])) == ["z", "a"]
    with pytest.raises(ValidationError, match=r"unknown from_texts option.*'tabel_name'"):
        PGVSVectorStore.from_texts(texts, TableEmbeddings(), tabel_name=table_name)
    with pytest.raises(ConfigurationError, match="dimensions is required"):
        PGVSVectorStore.from_texts([], TableEmbeddings(), table_name=table_name)


async def test_afrom_texts_and_afrom_documents(pg_dsn: str, table_name: str) -> None:
    s = await PGVSVectorStore.afrom_documents(
        DOCS[:2], TableEmbeddings(), connection_string=pg_dsn, table_name=table_name
    )
    try:
        assert [d.page_content for d in await s.asimilarity_search(QUERY, k=2)] == [
            DOCS[0].page_content,
            DOCS[1].page_content,
        ]
    finally:
        await s.aclose()


def test_config_forms(pg_dsn: str) -> None:
    store = PGVSVectorStore(TableEmbeddings(), {"dimensions": 3}, table_name="lc_docs")
    assert (store.config.table_name, store.config.id_type) == ("lc_docs", "text")
    assert "lc_docs" in repr(store)
    keep = StoreConfig(dimensions=3, id_type="bigint")
    assert PGVSVectorStore(TableEmbeddings(), keep).config is keep
    with pytest.raises(ConfigurationError, match="unknown configuration key"):
        PGVSVectorStore(TableEmbeddings(), {"dimensions": 3, "dimension": 3})
    with pytest.raises(ConfigurationError, match="config must be"):
        PGVSVectorStore(TableEmbeddings(), 3)  # type: ignore[arg-type]
    store.close()  # never opened: nothing to do
    with pytest.raises(StoreClosedError):
        store.similarity_search(QUERY)


# -- the routes: facade for sync, the caller's loop for async --------------------------------------


def facade_threads(table: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == f"pgvs-{table}"]


async def test_async_calls_stay_on_the_callers_loop(pg_dsn: str, table_name: str) -> None:
    s = PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name))
    try:
        # concurrent first calls open one pool on this loop, and no facade thread
        results = await asyncio.gather(*(s.asimilarity_search(QUERY, k=1) for _ in range(5)))
        assert results == [[]] * 5
        core = await s.async_store()
        assert core is await s.async_store()
        assert core.pool._loop is asyncio.get_running_loop()  # type: ignore[attr-defined]
        await s.aadd_texts(list(VECTORS)[:2], ids=["a", "b"])
        assert facade_threads(table_name) == []
        # a sync call inside the running loop goes through the facade's own thread
        assert ids_of(s.similarity_search(QUERY, k=1)) == ["a"]
        assert facade_threads(table_name) == [f"pgvs-{table_name}"]
    finally:
        await s.aclose()
    assert facade_threads(table_name) == []
    with pytest.raises(StoreClosedError):
        await s.asimilarity_search(QUERY)


async def test_sync_close_inside_the_loop_closes_its_pool_in_a_task(
    pg_dsn: str, table_name: str
) -> None:
    with PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name)) as s:
        core = await s.async_store()
        await s.aadd_texts(["the kitten sleeps"])
    # the `with` block's close() could not wait on this loop: the pool closes in a task
    for _ in range(100):
        await asyncio.sleep(0.01)
        try:
            core.pool  # noqa: B018
        except StoreClosedError:
            break
    else:
        pytest.fail("the core's pool was not closed")


def test_one_store_across_event_loops(pg_dsn: str, table_name: str) -> None:
    s = PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name))
    try:
        asyncio.run(s.aadd_texts(list(VECTORS)[:2], ids=["a", "b"]))
        # the first loop is closed now: the second gets a pool of its own
        assert ids_of(asyncio.run(s.asimilarity_search(QUERY, k=1))) == ["a"]
        assert ids_of(s.similarity_search(QUERY, k=1)) == ["a"]

        def in_a_thread(out: list[Any]) -> None:
            out.append(asyncio.run(s.aget_by_ids(["b"])))

        out: list[Any] = []
        worker = threading.Thread(target=in_a_thread, args=(out,))
        worker.start()
        worker.join()
        assert ids_of(out[0]) == ["b"]
        assert len(s._routes._cores) >= 1
    finally:
        s.close()
    assert s._routes._cores == {}
    with pytest.raises(StoreClosedError):
        s.similarity_search(QUERY)


def test_close_reaches_a_pool_on_a_live_loop_of_another_thread(
    pg_dsn: str, table_name: str
) -> None:
    s = PGVSVectorStore(TableEmbeddings(), config(pg_dsn, table_name))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(s.aadd_texts(["the kitten sleeps"]), loop).result(60)
        core = s._routes._cores[loop].store
        s.close()
        assert s._routes._cores == {}
        with pytest.raises(StoreClosedError):
            core.pool  # noqa: B018  (closed by close(), on its own loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


# -- an existing langchain-postgres table ----------------------------------------------------------


def test_the_langchain_postgres_mapping() -> None:
    cfg = langchain_postgres_config("lc", 3, pool_min_size=1)
    assert cfg.id_type == "uuid"
    assert cfg.auto_create_table is False
    assert {k: cfg.column(k) for k in ("id", "content", "embedding", "metadata")} == {
        "id": "langchain_id",
        "content": "content",
        "embedding": "embedding",
        "metadata": "langchain_metadata",
    }
    assert all(cfg.column(k) is None for k, v in LANGCHAIN_POSTGRES_COLUMNS.items() if v is None)
    renamed = langchain_postgres_config("lc", 3, columns={"content": "page_content"})
    assert renamed.column("content") == "page_content"
    assert renamed.column("id") == "langchain_id"


# langchain-postgres 0.0.19's DDL (PGEngine.init_vectorstore_table defaults), as it writes it.
LANGCHAIN_POSTGRES_DDL = (
    'CREATE TABLE "{table}"("langchain_id" UUID PRIMARY KEY, "content" TEXT NOT NULL, '
    '"embedding" vector(3) NOT NULL, "langchain_metadata" JSON)'
)


async def test_a_table_in_the_langchain_postgres_layout(pg_dsn: str, table_name: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(LANGCHAIN_POSTGRES_DDL.format(table=table_name))
        theirs = [str(uuid.uuid4()) for _ in range(3)]
        for i, doc in zip(theirs, DOCS[:3], strict=True):
            # as their add_embeddings binds them: vector text, metadata json.dumps'd
            await conn.execute(
                f"INSERT INTO {quote_ident(table_name)} VALUES ($1, $2, $3::vector, $4::json)",
                uuid.UUID(i),
                doc.page_content,
                str(VECTORS[doc.page_content]),
                json.dumps(doc.metadata),
            )
        await conn.execute(
            f"ALTER TABLE {quote_ident(table_name)} ALTER COLUMN langchain_metadata "
            "TYPE jsonb USING langchain_metadata::jsonb"
        )
        cfg = langchain_postgres_config(table_name, 3, connection_string=pg_dsn, pool_min_size=1)
        async with PGVSVectorStore(TableEmbeddings(), cfg) as ours:
            got = await ours.aget_by_ids(theirs)
            assert [(d.id, d.page_content, d.metadata) for d in got] == [
                (i, d.page_content, d.metadata) for i, d in zip(theirs, DOCS[:3], strict=True)
            ]
            near = await ours.asimilarity_search(QUERY, k=2, filter={"n": {"$gte": 1}})
            assert ids_of(near) == [theirs[1], theirs[2]]
            mine = await ours.aadd_documents(DOCS[3:])
            await ours.adelete(theirs[:1])
        rows = await conn.fetch(
            f"SELECT langchain_id::text AS id, content, langchain_metadata AS m "
            f"FROM {quote_ident(table_name)} ORDER BY content"
        )
        assert sorted((r["id"], r["content"], json.loads(r["m"])) for r in rows) == sorted(
            [(i, d.page_content, d.metadata) for i, d in zip(theirs[1:], DOCS[1:3], strict=True)]
            + [(i, d.page_content, d.metadata) for i, d in zip(mine, DOCS[3:], strict=True)]
        )
    finally:
        await conn.close()


async def test_a_table_made_by_langchain_postgres(pg_dsn: str, table_name: str) -> None:
    """The round trip with langchain-postgres itself (pip install -e '.[bench-langchain]')."""
    lp = pytest.importorskip("langchain_postgres")
    from sqlalchemy.engine import make_url

    url = make_url(pg_dsn).set(drivername="postgresql+psycopg").render_as_string(False)
    engine = lp.PGEngine.from_connection_string(url)
    try:
        await engine.ainit_vectorstore_table(table_name, 3)
        theirs = await lp.PGVectorStore.create(engine, TableEmbeddings(), table_name)
        their_ids = await theirs.aadd_documents(DOCS[:3])
        # the one migration the mapping needs: their metadata column is json, pgvs' is jsonb
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                f"ALTER TABLE {quote_ident(table_name)} ALTER COLUMN langchain_metadata "
                "TYPE jsonb USING langchain_metadata::jsonb"
            )
        finally:
            await conn.close()
        async with PGVSVectorStore(
            TableEmbeddings(),
            langchain_postgres_config(table_name, 3, connection_string=pg_dsn, pool_min_size=1),
        ) as ours:
            got = await ours.aget_by_ids(their_ids)
            assert [(d.id, d.page_content, d.metadata) for d in got] == [
                (i, d.page_content, d.metadata) for i, d in zip(their_ids, DOCS[:3], strict=True)
            ]
            assert ids_of(await ours.asimilarity_search(QUERY, k=1, filter={"topic": "db"})) == [
                their_ids[0]
            ]
            our_ids = await ours.aadd_documents(DOCS[3:], ids=[str(uuid.uuid4()) for _ in DOCS[3:]])
            # and theirs reads what pgvs wrote
            back = await theirs.aget_by_ids(our_ids)
            assert sorted((d.page_content, d.id) for d in back) == sorted(
                (d.page_content, i) for d, i in zip(DOCS[3:], our_ids, strict=True)
            )
            assert [d.metadata for d in sorted(back, key=lambda d: d.metadata["n"])] == [
                d.metadata for d in DOCS[3:]
            ]
            await ours.adelete(their_ids[:1])
            assert await theirs.aget_by_ids(their_ids[:1]) == []
            assert (await ours.async_store()).config.columns["metadata"] == "langchain_metadata"
    finally:
        await engine.close()


def test_a_json_metadata_column_is_reported(pg_dsn: str, table_name: str) -> None:
    async def make_table() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                f"CREATE TABLE {quote_ident(table_name)} (langchain_id uuid PRIMARY KEY, "
                "content text NOT NULL, embedding vector(3) NOT NULL, langchain_metadata json)"
            )
        finally:
            await conn.close()

    asyncio.run(make_table())
    store = PGVSVectorStore(
        TableEmbeddings(), langchain_postgres_config(table_name, 3, connection_string=pg_dsn)
    )
    try:
        with pytest.raises(SchemaMismatchError, match=r"'langchain_metadata'.* json"):
            store.similarity_search(QUERY)
    finally:
        store.close()
