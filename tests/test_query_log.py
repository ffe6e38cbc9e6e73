"""The query log (``query_log=N``) and ``tune(queries="recent")``, against a real server.

* The log keeps exactly the newest N query vectors the searches were given (search,
  search_batch, hybrid and MMR), as they were sent, across stores (processes) writing it, per
  domain; ``close()`` writes what is buffered.
* ``tune(queries="recent")`` measures on those queries: its curve's recalls are the ones
  ``tune(queries=<the same vectors>)`` measures, and the report says where they came from.
* A log that cannot be written never fails a search or ``close()``; bad settings, a missing or
  mismatched log table, and ``"recent"`` without a log are typed errors with a hint.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    FilterError,
    PGVectorStore,
    SchemaMismatchError,
    StoreConfig,
    ValidationError,
)
from pgvs import query_log as ql
from pgvs._sql import MAX_IDENTIFIER_BYTES

DIM = 16


def _rows(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


def _config(dsn: str, table: str, **options: Any) -> dict[str, Any]:
    return {
        "connection_string": dsn,
        "table_name": table,
        "dimensions": DIM,
        "metric": "l2",
        "id_type": "bigint",
        "auto_create_index": False,
        "query_log": 40,
        **options,
    }


async def _logged(dsn: str, table: str, domain: str = "") -> np.ndarray:
    """The log's entries of ``domain``, oldest first, read as the server holds them (text)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            f'SELECT embedding::text AS v FROM "{ql.log_table_name(table)}" '
            "WHERE domain_id = $1 ORDER BY seq",
            domain,
        )
    finally:
        await connection.close()
    return np.array([[float(x) for x in r["v"].strip("[]").split(",")] for r in rows], np.float32)


# -- pure --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("docs", "docs_pgvs_queries"),
        ("x" * 50, "x" * 50 + "_pgvs_queries"),
    ],
)
def test_the_log_table_sits_beside_the_store_table(table: str, expected: str) -> None:
    assert ql.log_table_name(table) == expected


def test_long_table_names_get_distinct_log_names_within_the_limit() -> None:
    first, second = "é" * 31 + "a", "é" * 31 + "b"  # 63 bytes each, differing at the end
    names = {ql.log_table_name(first), ql.log_table_name(second)}
    assert len(names) == 2
    assert all(len(name.encode()) <= MAX_IDENTIFIER_BYTES for name in names)
    assert all(name.endswith("_pgvs_queries") for name in names)
    # Every statement's identifiers fit too (quote_ident refuses longer ones), the index's
    # included: cut by bytes, whatever the characters.
    for table in (first, "векторы_документов_поиска", "x" * 63):
        assert len(ql.create_statements("public", table, "vector(3)")) == 2


@pytest.mark.parametrize("value", [-1, ql.MAX_QUERY_LOG + 1, True, 2.0, "100", None])
def test_bad_query_log_settings_are_named(value: object) -> None:
    with pytest.raises(ConfigurationError, match="query_log must be an integer") as caught:
        StoreConfig.from_mapping({"dimensions": 3, "query_log": value})
    assert caught.value.hint is not None
    assert "recent" in caught.value.hint


@pytest.mark.parametrize("value", [0, 1, ql.MAX_QUERY_LOG])
def test_good_query_log_settings(value: int) -> None:
    assert StoreConfig(dimensions=3, query_log=value).query_log == value


# -- against the server ------------------------------------------------------------------------


@pytest.fixture
async def indexed(pg_dsn: str, table_name: str) -> dict[str, Any]:
    config = _config(pg_dsn, table_name)
    async with AsyncPGVectorStore(config) as store:
        await store.add_vectors(_rows(1, 2000), ids=list(range(2000)))
        await store.create_index("hnsw", {"m": 4, "ef_construction": 8})
    return config


async def test_the_log_keeps_the_newest_queries_of_every_search_kind(
    indexed: dict[str, Any],
) -> None:
    queries = _rows(2, 70)
    async with AsyncPGVectorStore(indexed) as store:
        for query in queries[:30]:
            await store.search(query, k=3)
        await store.search_batch(queries[30:60], k=3)
        for query in queries[60:65]:
            await store.mmr_search(query, k=2, fetch_k=5)
        reused = queries[65].copy()
        await store.search(reused, k=3)
        reused[:] = 0  # the caller reuses its array: the log holds what was searched
        for query in queries[66:]:
            await store.search(query.tolist(), k=3)
    logged = _logged(indexed["connection_string"], indexed["table_name"])
    np.testing.assert_array_equal(await logged, queries[-40:])


async def test_stores_writing_one_log_keep_the_newest_across_them(
    indexed: dict[str, Any],
) -> None:
    queries = _rows(3, 60)
    async with AsyncPGVectorStore(indexed) as first, AsyncPGVectorStore(indexed) as second:
        for query in queries[:30]:
            await first.search(query, k=1)
        await first._query_log.flush()
        for query in queries[30:]:
            await second.search(query, k=1)
    np.testing.assert_array_equal(
        await _logged(indexed["connection_string"], indexed["table_name"]), queries[-40:]
    )


async def test_tune_on_recent_queries_measures_those_queries(indexed: dict[str, Any]) -> None:
    queries = _rows(4, 40)
    async with AsyncPGVectorStore(indexed) as store:
        for query in queries:
            await store.search(query, k=10)
    # Another store (as another process would) tunes on what the first one served.
    async with AsyncPGVectorStore(indexed) as tuner:
        recent = await tuner.tune(queries="recent", target_recall=0.9)
        given = await tuner.tune(queries=queries[::-1], target_recall=0.9)  # newest first
    assert recent.logged
    assert not recent.sampled
    assert recent.queries == 40
    assert "40 logged queries" in recent.to_table()
    assert [(p.setting, p.recall, p.p05_recall) for p in recent.points] == [
        (p.setting, p.recall, p.p05_recall) for p in given.points
    ]
    assert recent.setting == given.setting


async def test_tenants_log_and_tune_on_their_own_queries(pg_dsn: str, table_name: str) -> None:
    options = _config(pg_dsn, table_name, id_type="text")
    async with (
        AsyncPGVectorStore(options, domain_id="a") as a,
        AsyncPGVectorStore(options, domain_id="b") as b,
    ):
        await a.add_vectors(_rows(5, 300), ids=[f"a{n}" for n in range(300)])
        await b.add_vectors(_rows(6, 300), ids=[f"b{n}" for n in range(300)])
        await a.create_index("hnsw")
        for query in _rows(7, 5):
            await a.search(query, k=2)
        for query in _rows(8, 3):
            await b.search(query, k=2)
        assert (await a.tune(queries="recent")).queries == 5
        assert (await b.tune(queries="recent")).queries == 3
        np.testing.assert_array_equal(await _logged(pg_dsn, table_name, "a"), _rows(7, 5))
        # Dropping a tenant drops its queries too, from any store (this one keeps no log).
        async with AsyncPGVectorStore(options, query_log=0) as admin:
            await admin.drop_domain("b")
        assert len(await _logged(pg_dsn, table_name, "b")) == 0
        assert len(await _logged(pg_dsn, table_name, "a")) == 5


async def test_recent_without_a_log_or_with_an_empty_one_says_what_to_do(
    indexed: dict[str, Any],
) -> None:
    async with AsyncPGVectorStore(indexed, query_log=0) as store:
        with pytest.raises(ValidationError, match="needs the query log") as caught:
            await store.tune(queries="recent")
        assert "query_log=N" in str(caught.value.hint)
        with pytest.raises(ValidationError, match=r'None \(sample stored rows\) or "recent"'):
            await store.tune(queries="latest")
    async with AsyncPGVectorStore(indexed) as store:
        with pytest.raises(ValidationError, match="holds no queries") as caught:
            await store.tune(queries="recent")
        assert "Serve some searches first" in str(caught.value.hint)


async def test_failed_searches_are_not_logged(indexed: dict[str, Any]) -> None:
    queries = _rows(16, 2)
    async with AsyncPGVectorStore(indexed) as store:
        await store.search(queries[0], k=1)
        with pytest.raises(FilterError):
            await store.search(queries[1], k=1, filter={"$bogus": 1})
        with pytest.raises(ValidationError):
            await store.search(queries[1], k=0)
    np.testing.assert_array_equal(
        await _logged(indexed["connection_string"], indexed["table_name"]), queries[:1]
    )


async def test_a_log_that_cannot_be_written_fails_no_search_and_no_close(
    indexed: dict[str, Any], raw_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pgvs")
    store = AsyncPGVectorStore(indexed)
    await store.initialize()
    await raw_conn.execute(f'DROP TABLE "{ql.log_table_name(indexed["table_name"])}"')
    for query in _rows(9, 40):  # the 40th (query_log) starts a background write
        assert len(await store.search(query, k=1)) == 1
    writing = store._query_log._writing
    if writing is not None:  # (it may have failed already, while the search ran)
        await writing
    assert "query log: could not write" in caplog.text
    for query in _rows(10, 3):
        await store.search(query, k=1)
    await store.close()  # these three are lost too, with a warning; close still succeeds
    assert "3 entries not written at close" in caplog.text


async def test_a_missing_or_mismatched_log_table_is_a_schema_error(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    async with AsyncPGVectorStore(_config(pg_dsn, table_name, query_log=0)):
        pass
    with pytest.raises(SchemaMismatchError, match=r"query log table .* does not exist") as caught:
        await AsyncPGVectorStore(_config(pg_dsn, table_name, auto_create_table=False)).initialize()
    assert "auto_create_table=True" in str(caught.value.hint)
    async with AsyncPGVectorStore(_config(pg_dsn, table_name)):
        pass  # creates the log
    await raw_conn.execute(f'DROP TABLE "{table_name}"')
    other = AsyncPGVectorStore(_config(pg_dsn, table_name, dimensions=DIM + 1))
    with pytest.raises(SchemaMismatchError, match=rf"holds vector\({DIM}\) vectors") as caught:
        await other.initialize()
    assert "DROP TABLE" in str(caught.value.hint)


def test_the_sync_store_logs_and_tunes(indexed: dict[str, Any]) -> None:
    queries = _rows(11, 12)
    with PGVectorStore(indexed) as store:
        for query in queries:
            store.search(query, k=5)
        report = store.tune(queries="recent", target_recall=0.8)
    assert report.logged
    assert report.queries == 12


async def test_row_level_security_holds_the_log_to_the_same_policy(
    raw_conn: asyncpg.Connection, pg_dsn: str, table_name: str
) -> None:
    role = f"r_{uuid.uuid4().hex[:10]}"
    await raw_conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
    await raw_conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    _user, rest = pg_dsn.split("://", 1)[1].split("@", 1)
    dsn = f"postgresql://{role}@{rest}"
    try:
        options = _config(dsn, table_name, id_type="text", row_level_security=True)
        async with (
            AsyncPGVectorStore(options, domain_id="a") as a,
            AsyncPGVectorStore(options, domain_id="b") as b,
        ):
            await a.add_vectors(_rows(12, 50), ids=[f"a{n}" for n in range(50)])
            await b.add_vectors(_rows(13, 50), ids=[f"b{n}" for n in range(50)])
            await a.create_index("hnsw")
            for query in _rows(14, 4):
                await a.search(query, k=2)
            await b.search(_rows(15, 1)[0], k=2)
            assert (await a.tune(queries="recent", target_recall=0.5)).queries == 4
            # Raw SQL on the pool sets no tenant: the policy shows it no entry.
            log = ql.log_table_name(table_name)
            assert await a.pool.fetchval(f'SELECT count(*) FROM "{log}"') == 0
        forced = await raw_conn.fetchrow(
            "SELECT relrowsecurity AND relforcerowsecurity AS forced FROM pg_class "
            "WHERE oid = to_regclass($1)",
            log,
        )
        assert forced is not None
        assert forced["forced"]
        assert await raw_conn.fetchval(f'SELECT count(*) FROM "{log}"') == 5
    finally:
        await raw_conn.execute(f"DROP OWNED BY {role} CASCADE")
        await raw_conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize(
    ("vector_type", "metric", "queries", "as_text"),
    [
        ("halfvec", "l2", [[0.5, -1.25, 2.0, 0.0]], ["[0.5,-1.25,2,0]"]),
        ("sparsevec", "l2", [{0: 1.5, 3: -2.0}], ["{1:1.5,4:-2}/4"]),
        ("bit", "hamming", ["1011"], ["1011"]),
    ],
)
async def test_every_vector_type_is_logged_as_searched(
    pg_dsn: str,
    table_name: str,
    raw_conn: asyncpg.Connection,
    vector_type: str,
    metric: str,
    queries: list[Any],
    as_text: list[str],
) -> None:
    options = _config(pg_dsn, table_name, dimensions=4, vector_type=vector_type, metric=metric)
    async with AsyncPGVectorStore(options) as store:
        for query in queries:
            await store.search(query, k=1)
        await store.search_batch(queries, k=1)
    rows = await raw_conn.fetch(
        f'SELECT embedding::text AS v FROM "{ql.log_table_name(table_name)}" ORDER BY seq'
    )
    assert [r["v"] for r in rows] == as_text * 2
