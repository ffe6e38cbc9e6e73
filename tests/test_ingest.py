"""Bulk ingest against a real server: equivalence with add_vectors, upserts, batches, failures,
tenancy, progress, streaming and crash safety (SIGKILL of the postmaster mid-ingest)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvs import (
    AsyncPGVectorStore,
    Bit,
    ConfigurationError,
    ConnectionLostError,
    IngestError,
    PGVectorStore,
    Record,
    SchemaMismatchError,
    SparseVector,
    StoreClosedError,
    ValidationError,
    _batches,
    _copy_sql,
    _rows,
)
from pgvs.ingest import (
    INGEST_THRESHOLD,
    IngestProgress,
    IngestResult,
    default_batch_size,
    ingest,
    read_on_loop,
)
from pgvs.server import EmbeddedServer

DIM = 8
ROW_COLUMNS = "id::text AS id, embedding::text AS e, metadata, content, document_id, chunk_index"


def ids_for(count: int, prefix: int = 0) -> list[str]:
    return [str(uuid.UUID(int=(prefix << 64) | i)) for i in range(count)]


def dataset(count: int, dim: int = DIM, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "vectors": rng.standard_normal((count, dim)).astype(np.float32),
        "ids": ids_for(count, seed),
        "metadata": [{"n": i, "tags": ["x", str(i % 3)], "nested": {"k": i}} for i in range(count)],
        "contents": [f"text {i} ünïcode" if i % 5 else None for i in range(count)],
        "document_ids": [f"doc-{i // 4}" for i in range(count)],
        "chunk_indexes": [i % 4 if i % 7 else None for i in range(count)],
    }


def columns(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != "vectors"}


async def table_rows(store: AsyncPGVectorStore) -> list[Any]:
    """Every row of the store's domain, as text where it matters."""
    rows = await store.pool.fetch(
        f'SELECT domain_id, {ROW_COLUMNS} FROM "{store.config.table_name}" '
        "WHERE domain_id = $1 ORDER BY id",
        store.config.domain_id or "",
    )
    return [tuple(row) for row in rows]


@pytest.fixture
async def store(pg_dsn: str, table_name: str) -> AsyncIterator[AsyncPGVectorStore]:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name
    ) as opened:
        yield opened


@pytest.fixture
async def twin(pg_dsn: str, table_name: str) -> AsyncIterator[AsyncPGVectorStore]:
    """A second store of the same configuration on another table (written by add_vectors)."""
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name + "_twin"
    ) as opened:
        yield opened


# -- pure parts ----------------------------------------------------------------------------------


def _outcome(function: Any, value: Any) -> tuple[str, str]:
    try:
        return ("ok", function(value, 3))
    except ValidationError as exc:
        return ("error", str(exc))


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(
        alphabet=st.sampled_from(["a", "é", "\x00", "{", "[", "\\", "u", "0", '"', "\U0001f600"])
    ),
)
json_keys = st.one_of(st.text(max_size=3), st.integers(-3, 3), st.booleans(), st.none())
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(json_keys, children, max_size=3),
        st.frozensets(st.integers(0, 3), max_size=2),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.dictionaries(json_keys, json_values, max_size=5), json_values))
def test_json_fast_path_is_exactly_encode_json(document: Any) -> None:
    assert _outcome(_batches.json_text, document) == _outcome(_rows.encode_json, document)


@pytest.mark.parametrize(
    "document",
    [
        {"deep": json.loads("[" * 62 + "]" * 62)},
        {"deep": json.loads("[" * 70 + "]" * 70)},
        {"text": "literal \\u0000 is fine"},
        {"a": float("nan")},
        {1: "int key"},
        {"a": {2: "nested int key"}},
        {"a\x00": 1},
        {"s": "{not a dict}"},
        {"t": (1, 2)},
        {},
        None,
    ],
)
def test_json_fast_path_edge_cases(document: Any) -> None:
    assert _outcome(_batches.json_text, document) == _outcome(_rows.encode_json, document)


def test_records_accept_dicts_tuples_and_records() -> None:
    vector = [0.0] * 3
    batch = _batches.records_to_batch(
        [
            {"id": "a", "vector": vector, "metadata": {"m": 1}, "content": "c"},
            {"embedding": vector, "chunk_index": 2},
            ("b", vector),
            ("c", vector, None, "text", "doc", 5),
            Record("d", vector, {"r": 1}, "rc", "rd", 7),
        ],
        index=3,
        first_row=100,
    )
    assert batch.ids == ["a", None, "b", "c", "d"]
    assert batch.contents == ["c", None, None, "text", "rc"]
    assert batch.chunk_indexes == [None, 2, None, 5, 7]
    assert batch.row_range == (100, 105)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "a", "vectr": [1.0]}, "row 7: unknown record key(s) 'vectr'"),
        ({"id": "a"}, "row 7: record has no 'vector'"),
        ({"vector": [1.0], "embedding": [1.0]}, "both 'vector' and 'embedding'"),
        (("a",), "a record tuple has 2 to 6 items"),
        ([1.0, 2.0], "a record must be a dict, a tuple"),
        (Record("x", None, None), "was not found"),
    ],
)
def test_bad_records_name_their_row(record: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _batches.records_to_batch([record], index=0, first_row=7)
    assert message in str(caught.value)


def test_default_batch_size() -> None:
    assert default_batch_size("vector", 768) == 2042
    assert default_batch_size("halfvec", 768) == 4074
    assert default_batch_size("vector", 4) == 10_000
    assert default_batch_size("vector", 16000) == 98
    assert default_batch_size("sparsevec", 10**6) == 1000
    assert default_batch_size("vector", 768, vector_index=True) == 500
    assert default_batch_size("vector", 16000, vector_index=True) == 98


async def test_tables_with_a_vector_index_get_smaller_batches(
    store: AsyncPGVectorStore, pg_dsn: str, table_name: str
) -> None:
    # The store fixture's table has the default HNSW index; one without an index does not. One
    # row first: into an empty table, ingest loads without the index and builds it after.
    await store.add_vectors(np.ones((1, DIM)))
    indexed = await ingest(store, np.ones((1200, DIM)))
    # The first batch of a default-sized ingest is a quarter (the pipeline starts sooner).
    assert (indexed.batch_size, indexed.batches) == (500, 4)
    seen: list[int] = []
    await ingest(store, np.ones((1200, DIM)), progress=lambda p: seen.append(p.rows_done))
    assert seen == [125, 625, 1125, 1200]
    explicit = await ingest(store, np.ones((1200, DIM)), batch_size=500)
    assert explicit.batches == 3
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name + "_plain",
        index_type="none",
    ) as plain:
        assert (await ingest(plain, np.ones((1200, DIM)))).batches == 1


def test_direct_copy_only_where_it_equals_an_upsert() -> None:
    names, types = ["id"], ["uuid"]
    assert _copy_sql.target_info("r", False, False, names, types).direct_copy
    assert _copy_sql.target_info("p", False, False, names, types).direct_copy
    assert not _copy_sql.target_info("r", True, False, names, types).direct_copy
    assert not _copy_sql.target_info("r", False, True, names, types).direct_copy
    assert not _copy_sql.target_info("v", False, False, names, types).direct_copy
    assert _copy_sql.target_info("r", False, False, names, types).parallel_writes
    for extra in ({"unique_indexes": 2}, {"has_triggers": True}, {"has_references": True}):
        target = _copy_sql.target_info("r", False, False, names, types, **extra)
        assert target.direct_copy
        assert not target.parallel_writes, extra
    assert not _copy_sql.target_info("p", False, False, names, types).parallel_writes


# -- against the server ----------------------------------------------------------------------------


async def test_ingest_writes_exactly_what_add_vectors_writes(
    store: AsyncPGVectorStore, twin: AsyncPGVectorStore
) -> None:
    data = dataset(1000)
    result = await ingest(store, data["vectors"], batch_size=300, **columns(data))
    await twin.add_vectors(
        data["vectors"],
        data["ids"],
        data["metadata"],
        data["contents"],
        data["document_ids"],
        data["chunk_indexes"],
    )
    assert await table_rows(store) == await table_rows(twin)
    assert isinstance(result, IngestResult)
    assert (result.rows_read, result.rows_written, result.rows_copied) == (1000, 1000, 1000)
    assert result.batches == 4
    assert result.committed_batches == [0, 1, 2, 3]
    assert result.rows_per_second > 0
    hits = await store.search(data["vectors"][10], k=1)
    assert hits[0].id == data["ids"][10]


@pytest.mark.parametrize(
    ("vector_type", "metric", "make", "stored"),
    [
        (
            "halfvec",
            "cosine",
            lambda rng: rng.standard_normal(DIM).astype(np.float32),
            lambda v: np.asarray(v, dtype=np.float16).astype(np.float32),
        ),
        ("bit", "hamming", lambda rng: rng.random(DIM) > 0.5, Bit),
        (
            "sparsevec",
            "cosine",
            lambda rng: np.where(rng.random(DIM) > 0.6, 1.5, 0.0),
            lambda v: SparseVector(v),
        ),
    ],
)
async def test_other_vector_types(
    pg_dsn: str, table_name: str, vector_type: str, metric: str, make: Any, stored: Any
) -> None:
    rng = np.random.default_rng(3)
    vectors = [make(rng) for _ in range(120)]
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        vector_type=vector_type,
        metric=metric,
        table_name=table_name,
    ) as s:
        ids = ids_for(120)
        result = await ingest(s, vectors, ids=ids, batch_size=50)
        assert result.rows_written == 120
        records = await s.get_vectors(ids)
        for record, vector in zip(records, vectors, strict=True):
            expected = stored(vector)
            if isinstance(expected, np.ndarray):
                assert np.array_equal(record.vector, expected)
            else:
                assert record.vector == expected
        if vector_type == "halfvec":
            with pytest.raises(IngestError, match=r"row 1: vector element 0 .* outside halfvec"):
                await ingest(s, np.array([[1.0] * DIM, [1e6] + [0.0] * (DIM - 1)]))


@pytest.mark.parametrize("id_type", ["uuid", "text", "bigint"])
async def test_id_types_and_generated_ids(pg_dsn: str, table_name: str, id_type: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=2, table_name=table_name, id_type=id_type
    ) as s:
        generated = await ingest(s, np.ones((30, 2)), batch_size=7)
        assert generated.rows_written == 30
        choices: dict[str, list[Any]] = {
            "bigint": [10**12, 10**12 + 1],
            "text": ["A'; DROP x --", "é 🙂"],
            "uuid": ["6A1F0000-0000-4000-8000-000000000001", uuid.UUID(int=7)],
        }
        explicit = choices[id_type]
        await ingest(s, [{"id": explicit[0], "vector": [1, 2]}, (explicit[1], [3, 4])])
        assert await s.count() == 32
        found = await s.get_vectors(explicit)
        assert [r.found for r in found] == [True, True]
        if id_type == "uuid":
            assert found[0].id == "6a1f0000-0000-4000-8000-000000000001"
        # Records without ids get generated ones too.
        await ingest(s, [{"vector": [5, 6]}, {"vector": [7, 8], "id": None}])
        assert await s.count() == 34


async def test_running_the_same_ingest_twice_leaves_the_same_rows(
    store: AsyncPGVectorStore,
) -> None:
    data = dataset(500)
    await ingest(store, data["vectors"], batch_size=128, **columns(data))
    first = await table_rows(store)
    again = await ingest(store, data["vectors"], batch_size=128, **columns(data))
    assert await table_rows(store) == first
    assert (again.rows_copied, again.rows_upserted) == (0, 500)


async def test_partly_stored_batches_are_split_and_updated(store: AsyncPGVectorStore) -> None:
    data = dataset(400)
    await ingest(store, data["vectors"][::2], ids=data["ids"][::2], metadata=[{"old": 1}] * 200)
    result = await ingest(store, data["vectors"], batch_size=150, **columns(data))
    assert (result.rows_copied, result.rows_upserted) == (200, 200)
    records = await store.get_vectors(data["ids"])
    assert [r.metadata for r in records] == data["metadata"]
    assert await store.count() == 400


async def test_duplicate_ids_last_wins_within_and_across_batches(
    store: AsyncPGVectorStore,
) -> None:
    ids = ["6a1f0000-0000-4000-8000-00000000000" + c for c in "0123456789"]
    # Batch 0 = rows 0-3, batch 1 = rows 4-7, batch 2 = rows 8-9.
    order = [0, 1, 0, 2, 1, 3, 4, 1, 0, 5]
    records = [
        {"id": ids[k], "vector": [float(row + 1)] * DIM, "metadata": {"row": row}}
        for row, k in enumerate(order)
    ]
    result = await ingest(store, iter(records), batch_size=4)
    assert result.rows_read == 10
    assert result.rows_written == 8  # rows 0 and 4 are replaced by rows 2 and 7 in their batches
    got = {r.id: r.metadata["row"] for r in await store.get_vectors(ids[:6]) if r.metadata}
    assert got == {ids[0]: 8, ids[1]: 7, ids[2]: 3, ids[3]: 5, ids[4]: 6, ids[5]: 9}
    assert await store.count() == 6


async def test_sources_generators_async_generators_and_records(
    store: AsyncPGVectorStore, twin: AsyncPGVectorStore
) -> None:
    data = dataset(90)

    def generated() -> Iterator[dict[str, Any]]:
        for i in range(90):
            yield {
                "id": data["ids"][i],
                "vector": data["vectors"][i],
                "metadata": data["metadata"][i],
                "content": data["contents"][i],
                "document_id": data["document_ids"][i],
                "chunk_index": data["chunk_indexes"][i],
            }

    async def agenerated() -> AsyncIterator[tuple[Any, ...]]:
        for record in generated():
            await asyncio.sleep(0)
            yield tuple(record.values())

    result = await ingest(store, generated(), batch_size=40)
    assert result.batches == 3
    expected = await table_rows(store)
    await store.clear()
    await ingest(store, agenerated(), batch_size=40)
    assert await table_rows(store) == expected
    # Rows read back from one store copy into another as they are.
    await ingest(twin, await store.get_vectors(data["ids"]))
    assert [row[1:] for row in await table_rows(twin)] == [row[1:] for row in expected]


async def test_bad_row_mid_stream_fails_its_batch_and_keeps_earlier_ones(
    store: AsyncPGVectorStore,
) -> None:
    data = dataset(1000)
    data["vectors"][650, 3] = np.nan
    with pytest.raises(IngestError) as caught:
        await ingest(store, data["vectors"], batch_size=200, **columns(data))
    error = caught.value
    assert (error.batch, error.row_range) == (3, (600, 800))
    assert error.committed_batches == [0, 1, 2]
    assert error.rows_written == 600
    assert isinstance(error.__cause__, ValidationError)
    assert "row 650: vector element 3 is nan" in str(error)
    assert "rejected before it was sent" in str(error)
    assert await store.count() == 600
    assert (await store.get_vectors([data["ids"][599], data["ids"][600]]))[1].found is False

    # A wrong dimension in a record stream, the same way.
    await store.clear()
    records: list[Any] = [(i, [1.0] * DIM) for i in ids_for(50)]
    records[33] = (records[33][0], [1.0] * (DIM - 1))
    with pytest.raises(IngestError, match="row 33: vector has 7 dimensions, expected 8") as bad:
        await ingest(store, records, batch_size=10)
    assert bad.value.committed_batches == [0, 1, 2]
    assert await store.count() == 30


async def test_a_failing_source_is_reported_with_its_row(store: AsyncPGVectorStore) -> None:
    def source() -> Iterator[Any]:
        for i, key in enumerate(ids_for(25)):
            if i == 17:
                raise RuntimeError("embedding API down")
            yield (key, [1.0] * DIM)

    with pytest.raises(IngestError, match="while reading: embedding API down") as caught:
        await ingest(store, source(), batch_size=5)
    assert caught.value.row_range == (15, 18)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.committed_batches == [0, 1, 2]
    assert await store.count() == 15


async def test_atomic_ingest_is_all_or_nothing(store: AsyncPGVectorStore) -> None:
    data = dataset(500)
    await ingest(store, data["vectors"][:100], ids=data["ids"][:100])
    data["vectors"][420] = np.inf
    with pytest.raises(IngestError, match="nothing was written") as caught:
        await ingest(store, data["vectors"], batch_size=100, atomic=True, **columns(data))
    assert caught.value.committed_batches == []
    assert caught.value.rows_written == 0
    assert await store.count() == 100
    data["vectors"][420] = 1.0
    seen: list[IngestProgress] = []
    result = await ingest(
        store, data["vectors"], batch_size=100, atomic=True, progress=seen.append, **columns(data)
    )
    # Progress of an atomic ingest counts written (not yet committed) batches, once each.
    assert [(p.rows_done, p.batches_done) for p in seen] == [(n * 100, n) for n in range(1, 6)]
    assert result.committed_batches == [0, 1, 2, 3, 4]
    assert (result.rows_copied, result.rows_upserted) == (400, 100)
    assert await store.count() == 500
    assert [r.metadata for r in await store.get_vectors(data["ids"])] == data["metadata"]


async def test_tenants_never_touch_each_other(pg_dsn: str, table_name: str) -> None:
    base = {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    data = dataset(300)
    async with (
        AsyncPGVectorStore(base, domain_id="tenant-a") as a,
        AsyncPGVectorStore(base, domain_id="tenant-b") as b,
        AsyncPGVectorStore(base) as default,
    ):
        await ingest(b, data["vectors"], ids=data["ids"], metadata=[{"o": "b"}] * 300)
        before_b = await table_rows(b)
        # The same ids in tenant a: new rows of a's own (COPY path), then upserts (stage path).
        for _ in range(2):
            result = await ingest(
                a, data["vectors"] * 2, ids=data["ids"], metadata=[{"o": "a"}] * 300, batch_size=64
            )
            assert result.rows_written == 300
        await ingest(default, data["vectors"][:10], ids=data["ids"][:10])
        assert await table_rows(b) == before_b
        assert (await a.count(), await b.count(), await default.count()) == (300, 300, 10)
        domains = await a.pool.fetch(
            f'SELECT domain_id, count(*) AS n FROM "{table_name}" GROUP BY 1 ORDER BY 1'
        )
        assert [(r["domain_id"], r["n"]) for r in domains] == [
            ("", 10),
            ("tenant-a", 300),
            ("tenant-b", 300),
        ]
        assert all(r.metadata == {"o": "b"} for r in await b.get_vectors(data["ids"]))


async def test_progress_callbacks(store: AsyncPGVectorStore) -> None:
    data = dataset(250)
    seen: list[IngestProgress] = []
    await ingest(store, data["vectors"], ids=data["ids"], batch_size=100, progress=seen.append)
    assert [p.rows_done for p in seen] == [100, 200, 250]
    assert all(p.rows_total == 250 for p in seen)
    assert [p.batches_done for p in seen] == [1, 2, 3]
    assert all(p.rows_per_second > 0 and p.elapsed_seconds > 0 for p in seen)

    totals: list[int | None] = []

    async def async_callback(state: IngestProgress) -> None:
        totals.append(state.rows_total)

    await ingest(
        store,
        iter(zip(data["ids"], data["vectors"], strict=True)),
        progress=async_callback,
        batch_size=1000,
    )
    assert totals == [None]


async def test_progress_bar(store: AsyncPGVectorStore, capsys: pytest.CaptureFixture[str]) -> None:
    await ingest(store, np.ones((30, DIM)), batch_size=10, progress=True)
    shown = capsys.readouterr().err
    assert "100%" in shown
    assert "30.0/30.0" in shown


async def test_progress_bar_without_tqdm(
    store: AsyncPGVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)
    with pytest.raises(ConfigurationError, match="tqdm is not installed") as caught:
        await ingest(store, np.ones((3, DIM)), progress=True)
    assert "pgvs[progress]" in str(caught.value)
    assert await store.count() == 0


async def test_a_failing_progress_callback_stops_after_a_committed_batch(
    store: AsyncPGVectorStore,
) -> None:
    def callback(state: IngestProgress) -> None:
        if state.batches_done == 2:
            raise KeyError("stop")

    with pytest.raises(IngestError, match="reporting progress") as caught:
        await ingest(store, np.ones((50, DIM)), batch_size=10, progress=callback)
    assert caught.value.committed_batches == [0, 1]
    assert await store.count() == 20


async def test_argument_errors(store: AsyncPGVectorStore, pg_dsn: str) -> None:
    with pytest.raises(ValidationError, match="vectors have 3 dimensions"):
        await ingest(store, np.ones((4, 3)))
    with pytest.raises(ValidationError, match="2-D array"):
        await ingest(store, np.ones(DIM))
    with pytest.raises(ValidationError, match="metadata has 1 entries but there are 2"):
        await ingest(store, np.ones((2, DIM)), metadata=[{}])
    with pytest.raises(ConfigurationError, match="batch_size"):
        await ingest(store, np.ones((2, DIM)), batch_size=0)
    with pytest.raises(IngestError, match="record must be a dict") as caught:
        await ingest(store, iter([[1.0] * DIM]))
    assert isinstance(caught.value.__cause__, ValidationError)
    closed = AsyncPGVectorStore(connection_string=pg_dsn, dimensions=DIM)
    with pytest.raises(StoreClosedError):
        await ingest(closed, np.ones((2, DIM)))
    empty = await ingest(store, [])
    assert (empty.rows_written, empty.batches) == (0, 0)
    assert await store.count() == 0


async def test_existing_table_with_other_types_and_no_optional_columns(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    await raw_conn.execute(
        f'CREATE TABLE "{table_name}" (key integer PRIMARY KEY, emb vector(3), meta jsonb, '
        "part smallint)"
    )
    config: dict[str, Any] = {
        "connection_string": pg_dsn,
        "table_name": table_name,
        "dimensions": 3,
        "id_type": "bigint",
        "auto_create_table": False,
        "index_type": "none",
        "columns": {
            "id": "key",
            "embedding": "emb",
            "metadata": "meta",
            "chunk_index": "part",
            "content": None,
            "domain_id": None,
            "document_id": None,
            "created_at": None,
            "updated_at": None,
        },
    }
    async with AsyncPGVectorStore(config) as s:
        result = await ingest(s, [(1, [1, 2, 3], {"a": 1}, None, None, 7), (2, [3, 2, 1])])
        assert result.rows_written == 2
        rows = await raw_conn.fetch(f'SELECT key, emb::text, meta, part FROM "{table_name}"')
        assert sorted(tuple(r) for r in rows) == [
            (1, "[1,2,3]", '{"a": 1}', 7),
            (2, "[3,2,1]", "{}", None),
        ]
        with pytest.raises(IngestError, match="chunk_index 40000 does not fit"):
            await ingest(s, [(3, [1, 1, 1], None, None, None, 40000)])
        with pytest.raises(IngestError, match="id 3000000000 does not fit"):
            await ingest(s, [(3_000_000_000, [1, 1, 1])])
        with pytest.raises(IngestError, match="contents were given but the table has no content"):
            await ingest(s, [(4, [1, 1, 1], None, "text")])
        assert await s.count() == 2

    await raw_conn.execute(f'DROP TABLE "{table_name}"')
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name
    ) as s:
        await raw_conn.execute(f'DROP TABLE "{table_name}"')
        with pytest.raises(SchemaMismatchError, match="does not exist"):
            await ingest(s, np.ones((1, 3)))


async def test_tables_with_rules_or_row_security_take_the_upsert_path(
    store: AsyncPGVectorStore, raw_conn: asyncpg.Connection
) -> None:
    table = store.config.table_name
    await raw_conn.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
    data = dataset(120)
    result = await ingest(store, data["vectors"], batch_size=50, **columns(data))
    assert (result.rows_copied, result.rows_upserted) == (0, 120)
    assert [r.metadata for r in await store.get_vectors(data["ids"])] == data["metadata"]


async def test_tables_with_other_unique_keys_and_triggers(
    store: AsyncPGVectorStore, raw_conn: asyncpg.Connection
) -> None:
    table = store.config.table_name
    await raw_conn.execute(
        f'CREATE UNIQUE INDEX "{table}_doc_chunk" ON "{table}" (document_id, chunk_index)'
    )
    await raw_conn.execute(
        f'CREATE FUNCTION "{table}_tag"() RETURNS trigger LANGUAGE plpgsql AS '
        "$$ BEGIN NEW.metadata := NEW.metadata || '{\"t\": 1}'; RETURN NEW; END $$"
    )
    await raw_conn.execute(
        f'CREATE TRIGGER tag BEFORE INSERT OR UPDATE ON "{table}" '
        f'FOR EACH ROW EXECUTE FUNCTION "{table}_tag"()'
    )
    records = [
        {"id": key, "vector": [1.0] * DIM, "document_id": f"d{i}", "chunk_index": 0}
        for i, key in enumerate(ids_for(300))
    ]
    result = await ingest(store, records, batch_size=50)
    assert result.rows_copied == 300
    again = await ingest(store, records, batch_size=50)
    assert again.rows_upserted == 300
    assert all(r.metadata == {"t": 1} for r in await store.get_vectors(ids_for(300)))
    # The other unique key still refuses a second row for (d0, 0), as an upsert would.
    clash = [{"id": ids_for(1, 5)[0], "vector": [1.0] * DIM, "document_id": "d0", "chunk_index": 0}]
    with pytest.raises(IngestError, match="duplicate key") as caught:
        await ingest(store, clash)
    assert caught.value.sqlstate == "23505"
    assert await store.count() == 300


async def test_crossing_concurrent_ingests_finish(twin: AsyncPGVectorStore) -> None:
    # Two writers storing the same ids in opposite orders, two batches in flight each: the
    # cycles of waits between them go through the server, which breaks them (deadlock
    # detected), and the losing batch is written again. Both finish; nothing hangs.
    data = dataset(2000)
    forward = [(data["ids"][i], data["vectors"][i], {"i": i}) for i in range(2000)]
    async with AsyncPGVectorStore(twin.config) as other:
        for _ in range(3):
            results = await asyncio.wait_for(
                asyncio.gather(
                    ingest(twin, forward, batch_size=100),
                    ingest(other, forward[::-1], batch_size=100),
                ),
                timeout=120,
            )
            assert [r.rows_written for r in results] == [2000, 2000]
            assert await twin.count() == 2000


async def test_an_id_stored_between_lookup_and_copy_falls_back_to_upserts(
    store: AsyncPGVectorStore, twin: AsyncPGVectorStore
) -> None:
    # Empty domain: batches go straight to COPY. Batch 1 repeats an id of batch 0, which is
    # still uncommitted while batch 1 is sent: the unique index catches it, batch 1 is redone.
    ids = ids_for(20)
    records = [(ids[i], [float(i + 1)] * DIM, {"i": i}) for i in range(20)]
    records[15] = (ids[3], [15.0] * DIM, {"i": 15})
    result = await ingest(store, records, batch_size=10)
    assert result.details.get("fallbacks", 0) >= 1 or result.rows_upserted > 0
    assert (await store.get_vectors([ids[3]]))[0].metadata == {"i": 15}
    assert await store.count() == 19

    # Two ingests of the same rows at once (two stores, one table) both succeed.
    data = dataset(600)
    async with AsyncPGVectorStore(twin.config) as other:
        await asyncio.gather(
            ingest(twin, data["vectors"], batch_size=100, **columns(data)),
            ingest(other, data["vectors"], batch_size=100, **columns(data)),
        )
    assert await twin.count() == 600


async def test_input_is_streamed_in_bounded_batches(store: AsyncPGVectorStore) -> None:
    pulled = 0
    lead = 0

    def source() -> Iterator[tuple[str, list[float]]]:
        nonlocal pulled
        for key in ids_for(3000):
            pulled += 1
            yield (key, [1.0] * DIM)

    def watch(state: IngestProgress) -> None:
        nonlocal lead
        lead = max(lead, pulled - state.rows_done)

    result = await ingest(store, source(), batch_size=100, progress=watch)
    assert result.rows_written == 3000
    # Never more than a handful of batches read ahead of what is committed.
    assert lead <= 5 * 100


def test_sync_store_reads_generators_in_a_worker_thread(pg_dsn: str, table_name: str) -> None:
    threads: set[int] = set()

    def source() -> Iterator[tuple[str, list[float]]]:
        for key in ids_for(50):
            threads.add(threading.get_ident())
            yield (key, [1.0] * DIM)

    with PGVectorStore(connection_string=pg_dsn, dimensions=DIM, table_name=table_name) as s:
        loop_thread = s._runner.thread.ident if s._runner else None
        result = s.run(lambda core: ingest(core, source(), batch_size=20))
        assert result.rows_written == 50
        assert s.count() == 50
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    assert loop_thread not in threads


async def test_add_vectors_copy_path_keeps_the_statement_contract(
    store: AsyncPGVectorStore, twin: AsyncPGVectorStore
) -> None:
    # From INGEST_THRESHOLD rows add_vectors takes the COPY path (upsert_all); below it, one
    # statement. Both must give the same ids and rows: the twin writes in statement-sized calls.
    assert INGEST_THRESHOLD == 500
    data = dataset(3000)
    keys: list[Any] = list(data["ids"])
    keys[2999] = keys[5].upper()  # a duplicate (in another spelling): the last row wins
    columns = (data["metadata"], data["contents"], data["document_ids"], data["chunk_indexes"])
    returned = await store.add_vectors(data["vectors"], keys, *columns)
    expected: list[Any] = []
    step = INGEST_THRESHOLD - 1
    for start in range(0, 3000, step):
        part = slice(start, start + step)
        expected += await twin.add_vectors(
            data["vectors"][part], keys[part], *(column[part] for column in columns)
        )
    assert returned == expected
    assert returned[2999] == returned[5] == data["ids"][5]
    assert await table_rows(store) == await table_rows(twin)

    generated = await store.add_vectors(np.ones((700, DIM)))
    assert len(set(generated)) == 700
    assert await store.count() == 2999 + 700

    # A bad row anywhere: its ValidationError (not an IngestError), and nothing written.
    bad = data["vectors"].copy()
    bad[2500, 0] = np.nan
    with pytest.raises(ValidationError, match="row 2500: vector element 0 is nan"):
        await store.add_vectors(bad, ids_for(3000, 77))
    assert await store.count() == 2999 + 700


async def test_sync_store_aingest_reads_async_sources_on_the_callers_loop(
    pg_dsn: str, table_name: str
) -> None:
    caller = asyncio.get_running_loop()
    loops: set[int] = set()

    async def source() -> AsyncIterator[tuple[str, list[float]]]:
        for key in ids_for(600):
            loops.add(id(asyncio.get_running_loop()))
            yield (key, [1.0] * DIM)

    store = PGVectorStore(connection_string=pg_dsn, dimensions=DIM, table_name=table_name)
    try:
        await store.ainitialize()
        relayed = read_on_loop(source(), caller, chunk=100)
        result = await store.arun(lambda core: ingest(core, relayed, batch_size=250))
        assert result.rows_written == 600
        assert await store.acount() == 600
    finally:
        await store.aclose()
    assert loops == {id(caller)}


# -- crash safety ----------------------------------------------------------------------------------


def _crash_data() -> dict[str, Any]:
    return dataset(4000, dim=64, seed=9)


async def _assert_exactly(dsn: str, table: str, data: dict[str, Any]) -> None:
    async with AsyncPGVectorStore(connection_string=dsn, dimensions=64, table_name=table) as s:
        result = await ingest(s, data["vectors"], batch_size=250, **columns(data))
        assert result.rows_written == 4000
        stats = await s.pool.fetchrow(
            f'SELECT count(*) AS n, count(DISTINCT id) AS ids FROM "{table}"'
        )
        assert stats is not None
        assert (stats["n"], stats["ids"]) == (4000, 4000)
        records = await s.get_vectors(data["ids"])
        assert [r.metadata for r in records] == data["metadata"]
        assert all(
            np.array_equal(r.vector, v) for r, v in zip(records, data["vectors"], strict=True)
        )


def _cause_chain(error: BaseException) -> list[type[BaseException]]:
    chain = []
    current: BaseException | None = error
    while current is not None:
        chain.append(type(current))
        current = current.__cause__
    return chain


@pytest.mark.slow
async def test_postmaster_killed_after_a_batch_then_rerun(
    private_server: EmbeddedServer, table_name: str
) -> None:
    dsn = private_server.dsn()
    data = _crash_data()

    def kill_after_three(state: IngestProgress) -> None:
        if state.batches_done == 3:
            private_server.kill()

    async with AsyncPGVectorStore(connection_string=dsn, dimensions=64, table_name=table_name) as s:
        with pytest.raises(IngestError) as caught:
            await ingest(
                s, data["vectors"], batch_size=250, progress=kill_after_three, **columns(data)
            )
    error = caught.value
    assert isinstance(error.__cause__, ConnectionLostError)
    assert error.committed_batches == [0, 1, 2]
    assert error.rows_written == 750
    assert error.batch == 3
    assert "asyncpg" not in type(error.__cause__).__module__

    dsn = private_server.start()  # a new port
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{table_name}"') == 750
    finally:
        await conn.close()
    await _assert_exactly(dsn, table_name, data)


@pytest.mark.slow
async def test_postmaster_killed_mid_copy_then_rerun(
    private_server: EmbeddedServer, table_name: str
) -> None:
    dsn = private_server.dsn()
    data = _crash_data()
    first_commit = asyncio.Event()

    async def killer() -> None:
        await first_commit.wait()
        await asyncio.sleep(0.02)  # batches are on the wire now
        await asyncio.to_thread(private_server.kill)

    async with AsyncPGVectorStore(connection_string=dsn, dimensions=64, table_name=table_name) as s:
        task = asyncio.ensure_future(killer())
        with pytest.raises(IngestError) as caught:
            await ingest(
                s,
                data["vectors"],
                batch_size=250,
                progress=lambda state: first_commit.set(),
                **columns(data),
            )
        await task
    error = caught.value
    chain = _cause_chain(error)
    assert chain[:2] == [IngestError, ConnectionLostError], chain
    committed = len(error.committed_batches)
    assert error.committed_batches == list(range(committed))

    dsn = private_server.start()  # a new port
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(f'SELECT count(*) FROM "{table_name}"')
    finally:
        await conn.close()
    # Whole batches only; at most the one batch whose COMMIT was in flight may have committed.
    assert stored % 250 == 0
    assert committed * 250 <= stored <= (committed + 1) * 250
    await _assert_exactly(dsn, table_name, data)
