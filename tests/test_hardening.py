"""Fixes forced by probing the public API as a hostile user would (issue #16, first part)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    ConnectionLostError,
    PoolTimeoutError,
    StoreClosedError,
    ValidationError,
)


async def test_cancelling_a_filtered_search_cancels_it_on_the_server(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    """The SET LOCAL path (filter, tenant) must not leave its statement running on the server
    after the caller's task is cancelled."""
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, domain_id="tenant"
    ) as store:
        await store.add_vectors([[1, 0, 0]], metadata=[{"a": 1}])
        lock = raw_conn.transaction()
        await lock.start()
        # The search will wait on this lock inside the server: the event we wait for.
        await raw_conn.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
        task = asyncio.create_task(store.search([1, 0, 0], k=1, filter={"a": 1}))
        pid = None
        watcher = await asyncpg.connect(pg_dsn)
        try:
            deadline = time.monotonic() + 30
            while pid is None and time.monotonic() < deadline:
                pid = await watcher.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%' || $1 || '%'",
                    table_name,
                )
            assert pid is not None, "the search never reached the server"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Still holding the lock: only a cancel (not the lock) can end that statement.
            gone = False
            while not gone and time.monotonic() < deadline:
                state = await watcher.fetchval(
                    "SELECT state FROM pg_stat_activity WHERE pid = $1", pid
                )
                gone = state != "active"
            assert gone, "the cancelled search still runs on the server"
        finally:
            await watcher.close()
        await lock.rollback()
        assert len(await store.search([1, 0, 0], k=1, filter={"a": 1})) == 1  # pool healthy


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://user:s3cret@localhost:notaport/db", "not usable"),
        ("mysql://user:s3cret@localhost/db", "not usable"),
        ("postgresql://user:s3cret@localhost/db?sslmode=bogus", "sslmode"),
        ("host=localhost user=user password=s3cret dbname=db", "not usable"),
        ("postgresql://user:s3cret@[::1/db", "not usable"),
    ],
)
async def test_connection_string_mistakes_are_configuration_errors(dsn: str, message: str) -> None:
    store = AsyncPGVectorStore(connection_string=dsn, dimensions=3)
    with pytest.raises(ConfigurationError, match=message) as caught:
        await store.initialize()
    assert "s3cret" not in str(caught.value)
    assert caught.value.hint is not None
    assert "postgresql://user:password@host:port/database" in caught.value.hint
    await store.close()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"contents": ["fine", "bad \ud800"]}, "row 1: content is not valid Unicode"),
        ({"document_ids": ["ok", "\udfff"]}, "row 1: document_id is not valid Unicode"),
        ({"metadata": [{}, {"k": "v\udc80"}]}, "row 1: metadata at k is not valid Unicode"),
        ({"metadata": [{}, {"k\ud83d": 1}]}, "row 1: metadata key .* is not valid Unicode"),
    ],
)
@pytest.mark.parametrize("rows", [2, 600])  # the one-statement path and the COPY path
async def test_lone_surrogates_name_their_row(
    pg_dsn: str, table_name: str, row: dict[str, Any], message: str, rows: int
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, id_type="bigint"
    ) as store:
        columns = {name: list(values) + [None] * (rows - 2) for name, values in row.items()}
        with pytest.raises(ValidationError, match=message):
            await store.add_vectors(np.ones((rows, 3)), ids=list(range(rows)), **columns)
        assert await store.count() == 0


async def test_numpy_scalars_in_metadata_are_stored_as_numbers(
    pg_dsn: str, table_name: str
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, id_type="bigint"
    ) as store:
        metadata = {"f": np.float32(0.5), "i": np.int64(7), "b": np.True_, "l": [np.int8(1)]}
        for rows in (1, 600):
            await store.add_vectors(
                np.ones((rows, 3)), ids=list(range(rows)), metadata=[metadata] * rows
            )
            ((_, stored),) = await store.get_vectors([0])
            assert stored == {"f": 0.5, "i": 7, "b": True, "l": [1]}
            assert await store.count({"i": 7}) == rows
        with pytest.raises(ValidationError, match=r"row 0: metadata at f is np.float32\(nan\)"):
            await store.add_vectors([[1, 2, 3]], ids=[1], metadata=[{"f": np.float32("nan")}])


async def test_a_zero_query_vector_under_cosine_is_refused(pg_dsn: str, table_name: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name
    ) as store:
        await store.add_vectors([[1, 0, 0]])
        for query in (np.zeros(3, dtype=np.float32), [0, 0, 0]):
            with pytest.raises(ValidationError, match="query vector is all zeros"):
                await store.search(query)
        with pytest.raises(ValidationError, match="query vector is all zeros"):
            await store.search_batch([[1, 0, 0], [0, 0, 0]])
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name + "_l2", metric="l2"
    ) as euclidean:
        await euclidean.add_vectors([[1, 0, 0]])
        assert len(await euclidean.search([0, 0, 0])) == 1  # well defined for L2


async def test_a_large_ingest_leaves_the_table_analyzed(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    analyzed = "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = $1"
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, index_type="none"
    ) as store:
        small = await store.ingest(np.ones((999, 3)))
        assert "analyze" not in small.details
        assert not await raw_conn.fetchval(analyzed, table_name)
        large = await store.ingest(np.ones((1000, 3)))
        assert large.details["analyze"] > 0
        assert await raw_conn.fetchval(analyzed, table_name)
        assert (
            await raw_conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = $1", table_name)
            == 1999
        )


async def test_a_small_addition_to_a_large_analyzed_table_keeps_its_statistics(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    rng = np.random.default_rng(5)
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, index_type="none"
    ) as store:
        first = await store.ingest(rng.normal(size=(12_000, 3)))
        assert first.details["analyze"] > 0  # no statistics yet
        small = await store.ingest(rng.normal(size=(1_000, 3)))  # < 10 % of 12,000
        assert "analyze" not in small.details
        large = await store.ingest(rng.normal(size=(2_000, 3)))  # > 10 % of 12,000
        assert large.details["analyze"] > 0
        reltuples = "SELECT reltuples FROM pg_class WHERE relname = $1"
        assert await raw_conn.fetchval(reltuples, table_name) == 15_000


async def test_reads_survive_terminated_pool_connections(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    """pg_terminate_backend of every pooled connection (as a failover or restart does): the next
    reads succeed, each retried once on a fresh connection; no dead connection stays pooled."""
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=3,
        table_name=table_name,
        pool_min_size=3,
        pool_max_size=3,
        domain_id="tenant",  # searches take the SET LOCAL path too
    ) as store:
        await store.add_vectors([[1, 0, 0], [0, 1, 0]], metadata=[{"a": 1}, {"a": 2}])
        held = [await store.pool.acquire() for _ in range(3)]
        pids = [connection.get_server_pid() for connection in held]
        for connection in held:
            await store.pool.release(connection)
        terminated = await raw_conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(p) FROM unnest($1::int[]) p) t",
            pids,
        )
        assert terminated == 3
        assert [hit.id for hit in await store.search([1, 0, 0], k=1)]
        assert await store.count() == 2
        assert len(await store.search([0, 1, 0], k=2, filter={"a": 2})) == 1
        assert len(await store.get_vectors([])) == 0
        live = await raw_conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        )
        assert live == 0


async def test_writes_are_not_retried(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=3,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        connection = await store.pool.acquire()
        pid = connection.get_server_pid()
        await store.pool.release(connection)
        # The write's backend dies while the write waits on our lock (terminating an idle one
        # races asyncpg noticing the closed socket and reconnecting before the write).
        async with raw_conn.transaction():
            await raw_conn.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
            write = asyncio.ensure_future(store.add_vectors([[1, 0, 0]]))
            # (pg_stat_activity is a snapshot per transaction: cleared before each look.)
            waiting = (
                "SELECT count(*) FROM pg_stat_activity, pg_stat_clear_snapshot() "
                "WHERE pid = $1 AND wait_event_type = 'Lock'"
            )
            while not await raw_conn.fetchval(waiting, pid):  # noqa: ASYNC110 - a server event
                await asyncio.sleep(0.01)
            await raw_conn.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(ConnectionLostError):
            await write
        assert await store.count() == 0  # the read after it: a fresh connection


async def test_an_exhausted_pool_times_out_with_a_typed_error(pg_dsn: str, table_name: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=3,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=1,
        acquire_timeout=0.2,
    ) as store:
        await store.add_vectors([[1, 0, 0]], metadata=[{"a": 1}])
        held = await store.pool.acquire()  # the only connection, held elsewhere
        try:
            with pytest.raises(PoolTimeoutError, match="no pooled connection came free") as caught:
                await store.count()
            assert isinstance(caught.value, TimeoutError)
            with pytest.raises(PoolTimeoutError):
                await store.search([1, 0, 0], filter={"a": 1})  # the SET LOCAL path
            with pytest.raises(PoolTimeoutError):
                await store.add_vectors([[0, 1, 0]])
        finally:
            await store.pool.release(held)
        assert await store.count() == 1  # nothing leaked: the one connection serves again
        assert store.pool.get_size() == 1
    with pytest.raises(ConfigurationError, match="acquire_timeout must be a positive number"):
        AsyncPGVectorStore(dimensions=3, acquire_timeout=0)


def test_a_store_refuses_use_after_fork_and_the_parent_keeps_working(
    pg_dsn: str, table_name: str
) -> None:
    """A forked child shares the parent's sockets: every use there is a StoreClosedError (never
    a protocol error that reaches the parent's connections), and closing touches nothing."""
    loop = asyncio.new_event_loop()
    store = AsyncPGVectorStore(connection_string=pg_dsn, dimensions=3, table_name=table_name)
    try:
        loop.run_until_complete(store.initialize())
        loop.run_until_complete(store.add_vectors([[1, 0, 0]]))
        child = os.fork()
        if child == 0:  # the child: report through the exit code only
            code = 1
            try:
                asyncio.run(store.count())
            except StoreClosedError as exc:
                code = 0 if "after fork()" in str(exc) else 2
            except BaseException:
                code = 3
            try:
                asyncio.run(store.close())
            except BaseException:
                code = code or 4
            os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert loop.run_until_complete(store.count()) == 1  # the parent's pool is intact
        hits = loop.run_until_complete(store.search([1, 0, 0], k=1))
        assert len(hits) == 1
    finally:
        loop.run_until_complete(store.close())
        loop.close()
