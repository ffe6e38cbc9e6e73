"""Scenarios 3 and 4: a dead network (blackhole), connections reset mid-query, and every pooled
connection terminated by the server: deadlines hold, reads retry once, the pool heals."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, QueryTimeoutError

from .conftest import GRACE, Deadline, until
from .proxy import FaultProxy

Call = Callable[[AsyncPGVectorStore], Awaitable[Any]]

# Every public call that runs statements under command_timeout (index builds run on dedicated
# connections without one, by design: see README "Reliability").
CALLS: list[tuple[str, Call]] = [
    ("count", lambda s: s.count()),
    ("count(filter)", lambda s: s.count({"a": 1})),
    ("get_vectors", lambda s: s.get_vectors(["x0"])),
    ("search", lambda s: s.search([1, 0, 0], k=2)),
    ("search(filter)", lambda s: s.search([1, 0, 0], k=2, filter={"a": 1})),
    ("search(ef_search)", lambda s: s.search([1, 0, 0], k=2, ef_search=64)),
    ("search_batch", lambda s: s.search_batch([[1, 0, 0], [0, 1, 0]], k=2)),
    ("explain_search", lambda s: s.explain_search([1, 0, 0], k=2)),
    ("mmr_search", lambda s: s.mmr_search([1, 0, 0], k=2)),
    ("text_search", lambda s: s.text_search("alpha", k=2)),
    ("hybrid_search", lambda s: s.hybrid_search([1, 0, 0], "alpha", k=2)),
    ("centroid", lambda s: s.centroid()),
    ("add_vectors", lambda s: s.add_vectors([[0, 0, 1]], ids=["new"])),
    ("add_vectors(600 rows, COPY)", lambda s: s.add_vectors(np.ones((600, 3)))),
    ("ingest", lambda s: s.ingest(np.ones((50, 3)), ids=[f"i{n}" for n in range(50)])),
    ("ingest(atomic)", lambda s: s.ingest(np.ones((50, 3)), atomic=True)),
    ("update_metadata", lambda s: s.update_metadata(["x0"], [{"a": 9}])),
    ("delete_vectors", lambda s: s.delete_vectors(["x0"])),
    ("delete", lambda s: s.delete({"a": 1})),
    ("clear", lambda s: s.clear()),
    ("index_status", lambda s: s.index_status()),
    ("list_indexes", lambda s: s.list_indexes()),
    ("stats", lambda s: s.stats()),
]


async def _lock_waiter(dsn: str, table_name: str) -> None:
    """Until a backend waits on a lock of ``table_name`` (seen on a connection of its own:
    pg_stat_activity is a snapshot per transaction)."""
    watcher = await asyncpg.connect(dsn)
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%' || $1 || '%'"
    )
    try:
        await until(lambda: watcher.fetchval(waiting, table_name))
    finally:
        await watcher.close()


def _dropped(proxy: FaultProxy) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return proxy.dropped > 0

    return check


def _store(dsn: str, table_name: str, **options: Any) -> AsyncPGVectorStore:
    return AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=3,
        table_name=table_name,
        text_search="simple",
        id_type="text",
        **{"pool_min_size": 2, "pool_max_size": 4, **options},
    )


async def _seed(store: AsyncPGVectorStore) -> None:
    await store.add_vectors(
        [[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0]],
        ids=["x0", "x1", "x2"],
        metadata=[{"a": 1}, {"a": 2}, {"a": 1}],
        contents=["alpha one", "beta two", "alpha three"],
    )


async def _busy_backends(raw: asyncpg.Connection, table_name: str) -> int:
    """Backends (other than ``raw``'s) still running or in a transaction on this table."""
    return int(
        await raw.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND state IS DISTINCT FROM 'idle' AND query LIKE '%' || $1 || '%'",
            table_name,
        )
    )


async def _assert_healed(
    store: AsyncPGVectorStore, raw: asyncpg.Connection, table_name: str, rows: int
) -> None:
    assert await store.count() == rows
    assert [hit.id for hit in await store.search([1, 0, 0], k=1)] == ["x0"]
    assert len(await store.search([1, 0, 0], k=3, filter={"a": 1})) == 2
    assert await _busy_backends(raw, table_name) == 0
    stored = await raw.fetchval(f'SELECT count(*) FROM "{table_name}"')
    assert stored == rows


@pytest.mark.slow
async def test_blackhole_every_call_fails_within_command_timeout(
    proxy: FaultProxy,
    pg_dsn: str,
    table_name: str,
    raw_conn: asyncpg.Connection,
    deadline: Deadline,
) -> None:
    """A dead network: each public call raises QueryTimeoutError within command_timeout plus a
    small grace (asyncpg alone would wait another command_timeout for its cancel to be
    acknowledged); nothing is written; the pool heals once the network does."""
    command_timeout = 1.0
    async with _store(proxy.dsn(pg_dsn), table_name, command_timeout=command_timeout) as store:
        await _seed(store)
        proxy.blackhole = True
        for name, call in CALLS:
            bound = command_timeout + GRACE
            with deadline(name, bound) as timed, pytest.raises(QueryTimeoutError):
                await call(store)
            assert timed.seconds < timed.bound, f"{name} took {timed.seconds:.2f} s"
        assert proxy.dropped > 0  # the calls did reach the network, and it dropped them
        proxy.blackhole = False
        await _assert_healed(store, raw_conn, table_name, rows=3)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["asyncio.timeout", "wait_for", "task.cancel"])
@pytest.mark.parametrize("path", ["search", "search(filter)", "add_vectors", "ingest"])
async def test_blackhole_honours_the_callers_own_deadline(
    proxy: FaultProxy,
    pg_dsn: str,
    table_name: str,
    raw_conn: asyncpg.Connection,
    deadline: Deadline,
    how: str,
    path: str,
) -> None:
    """The caller's deadline, far shorter than command_timeout, ends the call on time: the dead
    connection is terminated, not waited on for a cancel acknowledgement."""
    calls = dict(CALLS)
    limit = 0.3
    async with _store(proxy.dsn(pg_dsn), table_name, command_timeout=30) as store:
        await _seed(store)
        proxy.blackhole = True
        with deadline(f"{path} under {how}", limit + GRACE) as timed:
            if how == "asyncio.timeout":
                if sys.version_info < (3, 11):
                    pytest.skip("asyncio.timeout is Python 3.11+")
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(limit):
                        await calls[path](store)
            elif how == "wait_for":
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(calls[path](store), limit)
            else:
                task = asyncio.ensure_future(calls[path](store))
                await until(_dropped(proxy))  # the statement is on the (dead) wire
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert timed.seconds < timed.bound, f"took {timed.seconds:.2f} s"
        proxy.blackhole = False
        await _assert_healed(store, raw_conn, table_name, rows=3)


async def test_reset_mid_query_reads_retry_once_and_succeed(
    proxy: FaultProxy, pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    """Every connection reset (RST) while a read waits on the server: the read is retried once
    on a fresh connection and returns; the reset connections are gone from the pool."""
    async with _store(proxy.dsn(pg_dsn), table_name) as store:
        await _seed(store)
        for name, filter_ in (("plain", None), ("filtered", {"a": 1})):
            # A lock holds the read inside the server: the reset lands mid-query, for sure.
            async with raw_conn.transaction():
                await raw_conn.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
                task = asyncio.ensure_future(store.search([1, 0, 0], k=3, filter=filter_))
                await _lock_waiter(pg_dsn, table_name)
                proxy.reset()
            hits = await task
            assert len(hits) == (3 if filter_ is None else 2), name
        assert proxy.connections <= 4  # the pool's size: no leaked sockets
        await _assert_healed(store, raw_conn, table_name, rows=3)


async def test_every_pooled_connection_terminated(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    """pg_terminate_backend of every pooled connection (a failover, an administrator): reads
    retry once and succeed, an upsert of given ids too; no dead connection stays pooled."""
    async with _store(pg_dsn, table_name, pool_min_size=4, pool_max_size=4) as store:
        await _seed(store)
        held = [await store.pool.acquire() for _ in range(4)]
        pids = [connection.get_server_pid() for connection in held]
        for connection in held:
            await store.pool.release(connection)
        await raw_conn.execute("SELECT pg_terminate_backend(p) FROM unnest($1::int[]) p", pids)
        gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = ANY($1::int[])"
        await until(lambda: raw_conn.fetchval(gone, pids))
        assert [hit.id for hit in await store.search([1, 0, 0], k=1)] == ["x0"]
        assert len(await store.search([1, 0, 0], k=3, filter={"a": 1})) == 2
        assert await store.add_vectors([[0, 0, 1]], ids=["x3"]) == ["x3"]
        held = [await store.pool.acquire() for _ in range(4)]
        assert not set(pids) & {connection.get_server_pid() for connection in held}
        for connection in held:
            await store.pool.release(connection)
        await _assert_healed(store, raw_conn, table_name, rows=4)
