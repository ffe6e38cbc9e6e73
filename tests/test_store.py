"""AsyncPGVectorStore against a real server: every operation, tenancy, validation, schema checks."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    ConnectionLostError,
    SchemaMismatchError,
    ValidationError,
    VectorStoreFactory,
)

DIM = 4


@pytest.fixture
async def store(pg_dsn: str, table_name: str) -> AsyncIterator[AsyncPGVectorStore]:
    async with AsyncPGVectorStore(
        {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    ) as opened:
        yield opened


def unit(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


async def test_add_get_search_round_trip(store: AsyncPGVectorStore) -> None:
    vectors = np.eye(DIM, dtype=np.float32)
    ids = await store.add_vectors(
        vectors,
        metadata=[{"n": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(DIM)],
        contents=[f"text {i}" for i in range(DIM)],
        document_ids=["doc-a", "doc-a", "doc-b", "doc-b"],
        chunk_indexes=[0, 1, 0, 1],
    )
    assert len(ids) == DIM
    assert all(str(uuid.UUID(i)) == i for i in ids)

    records = await store.get_vectors([ids[2], str(uuid.uuid4()), ids[0]])
    (vec2, meta2), (missing_vec, missing_meta), (vec0, _) = records
    assert isinstance(vec2, np.ndarray)
    np.testing.assert_array_equal(vec2, vectors[2])
    np.testing.assert_array_equal(vec0, vectors[0])
    assert meta2 == {"n": 2, "tag": "even"}
    assert missing_vec is None
    assert missing_meta is None
    assert not records[1].found
    assert records[0].content == "text 2"
    assert records[0].document_id == "doc-b"

    results = await store.search(unit(0.9, 0.1, 0, 0), k=2)
    assert [r.id for r in results] == [ids[0], ids[1]]
    for result_id, score, metadata in results:
        assert result_id in ids
        assert metadata is not None
        assert 0 < score <= 1
    top = results[0]
    assert top.content == "text 0"
    assert top.chunk_index == 0
    assert top.document_id == "doc-a"
    assert top.vector is None
    assert top.score == pytest.approx(1 - top.distance)

    with_vectors = await store.search([0.9, 0.1, 0.0, 0.0], k=1, include_vectors=True)
    np.testing.assert_array_equal(with_vectors[0].vector, vectors[0])
    bare = await store.search([0.9, 0.1, 0.0, 0.0], k=1, include_metadata=False)
    assert bare[0].metadata is None
    assert bare[0].content is None


async def test_upsert_replaces_by_id_and_last_duplicate_wins(store: AsyncPGVectorStore) -> None:
    ids = ["5f0cdd2e-3a56-4a1e-8a34-0b6f2e2c0001", "5f0cdd2e-3a56-4a1e-8a34-0b6f2e2c0002"]
    await store.add_vectors([[1, 0, 0, 0], [0, 1, 0, 0]], ids=ids, metadata=[{"v": 1}, {"v": 1}])
    returned = await store.add_vectors(
        [[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 1]],
        ids=[ids[0], ids[1], ids[0]],
        metadata=[{"v": 2}, {"v": 2}, {"v": 3}],
    )
    assert returned == [ids[0], ids[1], ids[0]]
    assert await store.count() == 2
    (vec0, meta0), (vec1, meta1) = await store.get_vectors(ids)
    np.testing.assert_array_equal(vec0, [0, 0, 1, 1])
    assert meta0 == {"v": 3}
    assert meta1 == {"v": 2}
    np.testing.assert_array_equal(vec1, [0, 0, 0, 1])


async def test_update_delete_count_clear(store: AsyncPGVectorStore) -> None:
    ids = await store.add_vectors(
        np.random.default_rng(1).random((6, DIM)),
        metadata=[{"group": "a" if i < 4 else "b", "i": i} for i in range(6)],
    )
    assert await store.count() == 6
    assert await store.count({"group": "a"}) == 4
    assert await store.update_metadata(ids[:2], [{"group": "c"}, {"group": "c"}]) == 2
    assert await store.count({"group": "c"}) == 2
    assert await store.update_metadata([ids[2]], [{"extra": True}], merge=True) == 1
    ((_, merged),) = await store.get_vectors([ids[2]])
    assert merged == {"group": "a", "i": 2, "extra": True}
    assert await store.update_metadata([str(uuid.uuid4())], [{"x": 1}]) == 0

    assert await store.delete({"group": "c"}) == 2
    assert await store.delete_vectors([ids[2], ids[3], str(uuid.uuid4())]) == 2
    assert await store.count() == 2
    with pytest.raises(ValidationError, match="non-empty filter"):
        await store.delete({})
    assert await store.clear() == 2
    assert await store.count() == 0


async def test_search_filter_min_score_and_batch(store: AsyncPGVectorStore) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, DIM)).astype(np.float32)
    ids = await store.add_vectors(vectors, metadata=[{"bucket": i % 4} for i in range(40)])
    query = vectors[5]
    filtered = await store.search(query, k=5, filter={"bucket": 1})
    assert filtered[0].id == ids[5]
    assert all(hit.metadata == {"bucket": 1} for hit in filtered)
    assert len(filtered) == 5

    strict = await store.search(query, k=10, min_score=0.999)
    assert [hit.id for hit in strict] == [ids[5]]

    batches = await store.search_batch(vectors[:3], k=3)
    assert [batch[0].id for batch in batches] == ids[:3]
    assert all(len(batch) == 3 for batch in batches)
    single = [await store.search(v, k=3) for v in vectors[:3]]
    assert [[h.id for h in b] for b in batches] == [[h.id for h in s] for s in single]
    filtered_batches = await store.search_batch(vectors[:2], k=2, filter={"bucket": 2})
    assert all(h.metadata == {"bucket": 2} for batch in filtered_batches for h in batch)


@pytest.mark.parametrize(
    ("metric", "score_of"),
    [
        ("cosine", lambda d: 1 - d),
        ("euclidean", lambda d: 1 / (1 + d)),
        ("inner_product", lambda d: -d),
        ("l1", lambda d: 1 / (1 + d)),
    ],
)
async def test_scores_per_metric(pg_dsn: str, table_name: str, metric: str, score_of: Any) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=2, table_name=table_name, metric=metric
    ) as store:
        await store.add_vectors([[1, 2], [3, -1]])
        for hit in await store.search([2, 1], k=2):
            assert hit.score == pytest.approx(score_of(hit.distance))
        raw = await store.pool.fetch(
            f'SELECT embedding {store._ctx.sql.operator} $1::vector AS d FROM "{table_name}" ORDER BY d',
            [2.0, 1.0],
        )
        hits = await store.search([2, 1], k=2)
        assert [h.distance for h in hits] == pytest.approx([r["d"] for r in raw])


@pytest.mark.parametrize("id_type", ["text", "bigint"])
async def test_id_types(pg_dsn: str, table_name: str, id_type: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=2, table_name=table_name, id_type=id_type
    ) as store:
        generated = await store.add_vectors([[1, 0], [0, 1]])
        assert len(set(generated)) == 2
        expected_type = int if id_type == "bigint" else str
        assert all(isinstance(i, expected_type) for i in generated)
        explicit = [10, 11] if id_type == "bigint" else ["a'; DROP TABLE x; --", "b"]
        assert await store.add_vectors([[1, 1], [2, 2]], ids=explicit) == explicit
        hits = await store.search([1, 1], k=4)
        assert {h.id for h in hits} == {*generated, *explicit}
        assert (await store.get_vectors([explicit[0]]))[0].found


async def test_tenancy_isolation(pg_dsn: str, table_name: str) -> None:
    base = {"connection_string": pg_dsn, "dimensions": 2, "table_name": table_name}
    shared_ids = ["6a1f0000-0000-4000-8000-000000000001", "6a1f0000-0000-4000-8000-000000000002"]
    async with (
        AsyncPGVectorStore(base, domain_id="tenant-a") as a,
        AsyncPGVectorStore(base, domain_id="tenant-b") as b,
    ):
        await a.add_vectors([[1, 0], [0, 1]], ids=shared_ids, metadata=[{"o": "a"}] * 2)
        # The same ids in another domain are other rows: no takeover, no overwrite.
        await b.add_vectors([[1, 1], [1, -1]], ids=shared_ids, metadata=[{"o": "b"}] * 2)
        assert await a.count() == 2
        assert await b.count() == 2
        for vec, meta in await a.get_vectors(shared_ids):
            assert meta == {"o": "a"}
            assert vec is not None
        assert {h.metadata["o"] for h in await a.search([1, 1], k=10) if h.metadata} == {"a"}
        assert {h.metadata["o"] for h in await b.search([1, 1], k=10) if h.metadata} == {"b"}
        batch = await b.search_batch([[1, 0], [0, 1]], k=10)
        assert all(h.metadata == {"o": "b"} for hits in batch for h in hits)
        assert await a.count({"o": "b"}) == 0
        assert await a.update_metadata(shared_ids, [{"o": "a2"}] * 2) == 2
        assert await b.count({"o": "b"}) == 2
        assert await a.delete({"o": "b"}) == 0
        assert await a.delete_vectors(shared_ids[:1]) == 1
        assert await b.count() == 2
        assert await a.clear() == 1
        assert await b.count() == 2
        assert await b.clear() == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add_vectors([[1, 2, 3]]), "3 dimensions, the store expects 4"),
        (lambda s: s.add_vectors([[1, 2, 3, 4], [1, 2, 3]]), "row 1: vector has 3 dimensions"),
        (lambda s: s.add_vectors([[1, 2, 3, float("nan")]]), "row 0: vector element 3 is nan"),
        (
            lambda s: s.add_vectors(np.array([[0, 0, 0, 0], [1, 2, 1e39, 4]])),
            "row 1: vector element 2 (1e+39) overflows float32",
        ),
        (lambda s: s.add_vectors([[1, 2, "x", 4]]), "row 0: vector element 2 is str"),
        (
            lambda s: s.add_vectors([[1, 2, 3, 4]], metadata=[{"a": float("inf")}]),
            "row 0: metadata at a is inf",
        ),
        (lambda s: s.add_vectors([[1, 2, 3, 4]], metadata=[{"a": {1: 2}}]), "non-string key 1"),
        (lambda s: s.add_vectors([[1, 2, 3, 4]], metadata=[{"a": {1, 2}}]), "at a is a set"),
        (lambda s: s.add_vectors([[1, 2, 3, 4]], metadata=[{"a": "x\x00y"}]), "NUL"),
        (
            lambda s: s.add_vectors([[1, 2, 3, 4]], contents=["x\x00"]),
            "row 0: content contains a NUL",
        ),
        (
            lambda s: s.add_vectors([[1, 2, 3, 4]], ids=["not-a-uuid"]),
            "row 0: id 'not-a-uuid' is not a valid UUID",
        ),
        (
            lambda s: s.add_vectors([[1, 2, 3, 4]], ids=["a", "b"]),
            "ids has 2 entries but there are 1",
        ),
        (lambda s: s.add_vectors([[1, 2, 3, 4]], chunk_indexes=[2**40]), "does not fit in integer"),
        (lambda s: s.add_vectors([[1, 2, 3, 4]], metadata=["x"]), "row 0: metadata must be a dict"),
        (lambda s: s.search([1, 2, 3]), "query has 3 dimensions"),
        (lambda s: s.search([1, 2, 3, float("inf")]), "query vector element 3 is inf"),
        (lambda s: s.search([1, 2, 3, 4], k=0), "k must be a positive integer"),
        (lambda s: s.get_vectors(["nope"]), "row 0: id 'nope' is not a valid UUID"),
    ],
)
async def test_validation_errors_write_nothing(
    store: AsyncPGVectorStore, call: Any, message: str
) -> None:
    await store.add_vectors([[0, 0, 0, 1]])
    with pytest.raises(ValidationError) as caught:
        await call(store)
    assert message in str(caught.value)
    assert await store.count() == 1


async def test_bad_row_in_middle_is_atomic(store: AsyncPGVectorStore) -> None:
    vectors = np.ones((100, DIM), dtype=np.float64)
    vectors[57, 1] = np.nan
    with pytest.raises(ValidationError, match="row 57: vector element 1 is nan"):
        await store.add_vectors(vectors)
    assert await store.count() == 0


async def test_existing_table_checks(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    await raw_conn.execute(
        f'CREATE TABLE "{table_name}" (id text PRIMARY KEY, emb vector(3), meta jsonb, body text)'
    )
    config: dict[str, Any] = {
        "connection_string": pg_dsn,
        "table_name": table_name,
        "id_type": "text",
        "auto_create_table": False,
        "columns": {
            "embedding": "emb",
            "metadata": "meta",
            "content": "body",
            "domain_id": None,
            "document_id": None,
            "chunk_index": None,
            "created_at": None,
            "updated_at": None,
        },
    }
    async with AsyncPGVectorStore(config, dimensions=3) as store:
        await store.add_vectors([[1, 2, 3]], ids=["x"], contents=["hello"])
        assert (await store.search([1, 2, 3], k=1))[0].content == "hello"

    with pytest.raises(SchemaMismatchError, match=r"'emb' is vector\(3\) but dimensions=4"):
        await AsyncPGVectorStore(config, dimensions=4).initialize()
    with pytest.raises(SchemaMismatchError, match="'id' is text, not usable as id_type='uuid'"):
        await AsyncPGVectorStore(config, dimensions=3, id_type="uuid").initialize()
    with pytest.raises(SchemaMismatchError, match=r"column 'chunk' .* is missing"):
        await AsyncPGVectorStore(
            config, dimensions=3, columns={**config["columns"], "chunk_index": "chunk"}
        ).initialize()
    with pytest.raises(
        SchemaMismatchError, match=r"is vector\(3\), the store expects halfvec\(3\)"
    ):
        await AsyncPGVectorStore(config, dimensions=3, vector_type="halfvec").initialize()
    with pytest.raises(SchemaMismatchError, match="does not exist"):
        await AsyncPGVectorStore(config, dimensions=3, table_name=table_name + "_no").initialize()


async def test_factory_and_context_manager(pg_dsn: str, table_name: str) -> None:
    store = VectorStoreFactory().create(
        backend="pgvector", connection_string=pg_dsn, dimensions=2, table_name=table_name
    )
    await store.initialize()
    await store.add_vectors([[1, 2]])
    assert await store.count() == 1
    await store.close()
    await store.close()
    with pytest.raises(ConfigurationError, match="unknown backend"):
        VectorStoreFactory().create(backend="faiss", dimensions=2)


async def test_tables_are_created_with_storage_and_gin_index(
    store: AsyncPGVectorStore, raw_conn: asyncpg.Connection, table_name: str
) -> None:
    storage = await raw_conn.fetchval(
        "SELECT attstorage::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'embedding'",
        table_name,
    )
    assert storage == "m"
    options = await raw_conn.fetchval(
        "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", table_name
    )
    assert options == ["toast_tuple_target=8160"]
    indexes = await raw_conn.fetch(
        "SELECT indexdef FROM pg_indexes WHERE tablename = $1", table_name
    )
    assert any("gin (metadata jsonb_path_ops)" in row["indexdef"] for row in indexes)


INIT_RACE = textwrap.dedent(
    """
    import asyncio, sys
    from pgvs import AsyncPGVectorStore

    async def main() -> None:
        store = AsyncPGVectorStore(connection_string=sys.argv[1], dimensions=8,
                                   table_name=sys.argv[2], schema=sys.argv[3],
                                   pool_min_size=1, pool_max_size=2)
        await store.initialize()
        await store.add_vectors([[float(sys.argv[4]) + 1] * 8])
        await store.close()

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_eight_processes_initialize_the_same_new_table(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    schema = f"s_{table_name}"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            INIT_RACE,
            pg_dsn,
            table_name,
            schema,
            str(i),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    outcomes = [await p.communicate() for p in processes]
    failures = [
        err.decode() for p, (_, err) in zip(processes, outcomes, strict=True) if p.returncode
    ]
    assert failures == []
    assert await raw_conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table_name}"') == 8


async def test_connection_errors_never_show_the_password(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    secret = "hunter2-very-secret"
    dsn = f"postgresql://someone:{secret}@127.0.0.1:9/nowhere"
    caplog.set_level(logging.DEBUG)
    store = AsyncPGVectorStore(connection_string=dsn, dimensions=3, command_timeout=5)
    assert secret not in repr(store)
    assert secret not in repr(store.config)
    with pytest.raises(ConnectionLostError) as caught:
        await store.initialize()
    seen = [str(caught.value), repr(caught.value), caplog.text]
    seen += [str(e) for e in (caught.value.__cause__, caught.value.__context__) if e]
    for text in seen:
        assert secret not in text
    assert "hint" in str(caught.value).lower()


async def test_closed_store_says_so(pg_dsn: str) -> None:
    from pgvs import StoreClosedError

    store = AsyncPGVectorStore(connection_string=pg_dsn, dimensions=3)
    with pytest.raises(StoreClosedError, match="initialize"):
        await store.count()


async def test_bit_store_hamming_and_jaccard(pg_dsn: str, table_name: str) -> None:
    from pgvs import Bit

    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=8,
        table_name=table_name,
        vector_type="bit",
        metric="hamming",
        index_type="none",
    ) as store:
        ids = await store.add_vectors(["11110000", Bit("00001111"), [True] * 8])
        hits = await store.search("11100000", k=3)
        assert [h.id for h in hits] == [ids[0], ids[2], ids[1]]
        assert [h.distance for h in hits] == [1.0, 5.0, 7.0]
        assert hits[0].score == pytest.approx(1 - 1 / 8)
        ((vector, _),) = await store.get_vectors([ids[1]])
        assert vector == Bit("00001111")
        with pytest.raises(ValidationError, match="row 0: vector has 4 dimensions, expected 8"):
            await store.add_vectors(["1111"])


async def test_sparsevec_store(pg_dsn: str, table_name: str) -> None:
    from pgvs import SparseVector

    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=1000,
        table_name=table_name,
        vector_type="sparsevec",
        metric="inner_product",
        index_type="none",
    ) as store:
        ids = await store.add_vectors([{3: 1.0, 999: 2.0}, SparseVector({3: 0.5}, 1000), {10: 4.0}])
        hits = await store.search({3: 1.0, 999: 1.0}, k=2)
        assert [h.id for h in hits] == [ids[0], ids[1]]
        assert hits[0].score == pytest.approx(3.0)
        ((vector, _),) = await store.get_vectors([ids[2]])
        assert vector == SparseVector({10: 4.0}, 1000)
        with pytest.raises(ValidationError, match="row 0: vector"):
            await store.add_vectors([{1000: 1.0}])


@pytest.mark.parametrize(
    ("dimensions", "storage", "options"),
    [
        (1700, "m", ["toast_tuple_target=8160"]),
        (3000, "e", None),
    ],
)
async def test_large_vectors_are_stored_out_of_line_uncompressed(
    pg_dsn: str,
    table_name: str,
    raw_conn: asyncpg.Connection,
    dimensions: int,
    storage: str,
    options: list[str] | None,
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=dimensions, table_name=table_name, index_type="none"
    ) as store:
        await store.add_vectors(np.ones((2, dimensions), dtype=np.float32), contents=["x", "y"])
        assert (await store.search(np.ones(dimensions, dtype=np.float32), k=1))[0].content
    row = await raw_conn.fetchrow(
        "SELECT a.attstorage::text AS storage, c.reloptions FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE a.attrelid = $1::regclass AND a.attname = 'embedding'",
        table_name,
    )
    assert row is not None
    assert row["storage"] == storage
    assert row["reloptions"] == options
