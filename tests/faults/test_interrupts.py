"""Scenarios 5, 6 and 7: cancellation mid-statement, an exhausted pool, and fork()."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, PoolTimeoutError, StoreClosedError, StoreConfig

from .conftest import GRACE, Deadline, until

Call = Callable[[AsyncPGVectorStore], Awaitable[Any]]

WRITES: list[tuple[str, Call]] = [
    ("search", lambda s: s.search([1, 0, 0], k=2)),
    ("search(filter)", lambda s: s.search([1, 0, 0], k=2, filter={"a": 1})),
    ("upsert", lambda s: s.add_vectors([[0, 0, 1], [0, 1, 1]], ids=["n1", "n2"])),
    ("upsert(600 rows, COPY)", lambda s: s.add_vectors(np.ones((600, 3)))),
    ("ingest batch", lambda s: s.ingest(np.ones((1200, 3)), batch_size=400, connections=2)),
]


async def _waiting_pid(watcher: asyncpg.Connection, table_name: str) -> int:
    """The backend of the call under test: the one waiting on our lock on its table. (On a
    connection outside any transaction: pg_stat_activity is a snapshot per transaction.)"""
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()"
    )
    return int(await until(lambda: watcher.fetchval(sql, table_name)))


@contextlib.asynccontextmanager
async def _connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("how", ["task.cancel", "asyncio.timeout"])
@pytest.mark.parametrize(("name", "call"), WRITES, ids=[name for name, _ in WRITES])
async def test_cancellation_mid_statement(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection, how: str, name: str, call: Call
) -> None:
    """CancelledError (or the caller's TimeoutError) propagates, the statement stops on the
    server, no backend of the store is left in a transaction, nothing partial is visible, and
    the store keeps working."""
    if how == "asyncio.timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is Python 3.11+")
    async with (
        AsyncPGVectorStore(
            connection_string=pg_dsn,
            dimensions=3,
            table_name=table_name,
            id_type="text",
            domain_id="tenant",  # every search filtered by tenant: the SET LOCAL path too
        ) as store,
        _connected(pg_dsn) as watcher,
    ):
        await store.add_vectors([[1, 0, 0], [0, 1, 0]], ids=["x0", "x1"], metadata=[{"a": 1}] * 2)
        async with raw_conn.transaction():
            await raw_conn.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
            if how == "task.cancel":
                task = asyncio.ensure_future(call(store))
                pid = await _waiting_pid(watcher, table_name)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:

                async def bounded() -> None:
                    if sys.version_info < (3, 11):
                        raise AssertionError("skipped above")
                    async with asyncio.timeout(30):
                        await call(store)

                task = asyncio.ensure_future(bounded())
                pid = await _waiting_pid(watcher, table_name)
                # The caller's own deadline falls now, while its statement waits.
                _expire_timeouts(task)
                with pytest.raises(TimeoutError):
                    await task
            # The statement is cancelled while our lock still holds it: only a cancel ends it.
            active = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
            await until(lambda: _none(watcher.fetchval(active, pid)))
        # No backend of this table is left in a transaction (idle ones have no xid).
        busy = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND (state LIKE 'idle in transaction%' OR backend_xid IS NOT NULL) "
            "AND query LIKE '%' || $1 || '%'",
            table_name,
        )
        assert busy == 0
        assert await raw_conn.fetchval(f'SELECT count(*) FROM "{table_name}"') == 2  # no partial
        assert sorted(r.id for r in await store.search([1, 0, 0], k=5)) == ["x0", "x1"]
        await store.add_vectors([[1, 1, 0]], ids=["x2"])
        assert await store.count() == 3


async def _none(count: Awaitable[int]) -> bool:
    return await count == 0


def _expire_timeouts(task: asyncio.Task[None]) -> None:
    """Make the asyncio.timeout inside ``task`` expire now (a caller's deadline that falls
    while its statement waits in the server), without sleeping on the clock."""
    loop = asyncio.get_running_loop()
    for handle in list(loop._scheduled):  # type: ignore[attr-defined]
        callback = getattr(handle, "_callback", None)
        owner: Any = getattr(callback, "__self__", None)
        if type(owner).__name__ == "Timeout" and owner._task is task:
            owner.reschedule(loop.time())
            return
    raise AssertionError("no asyncio.timeout found for the task")


async def test_pool_exhaustion_is_a_typed_bounded_wait(
    pg_dsn: str, table_name: str, deadline: Deadline
) -> None:
    assert StoreConfig(dimensions=3).acquire_timeout is not None  # finite by default
    acquire_timeout = 0.3
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=3,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=2,
        acquire_timeout=acquire_timeout,
    ) as store:
        await store.add_vectors([[1, 0, 0]], metadata=[{"a": 1}])
        held = [await store.pool.acquire() for _ in range(2)]
        try:
            calls: list[tuple[str, Call]] = [
                ("count", lambda s: s.count()),
                ("search", lambda s: s.search([1, 0, 0])),
                ("search(filter)", lambda s: s.search([1, 0, 0], filter={"a": 1})),
                ("add_vectors", lambda s: s.add_vectors([[0, 1, 0]])),
                ("ingest", lambda s: s.ingest(np.ones((10, 3)))),
            ]
            for name, call in calls:
                bound = acquire_timeout + GRACE
                with (
                    deadline(f"{name} on an exhausted pool", bound) as timed,
                    pytest.raises(PoolTimeoutError),
                ):
                    await call(store)
                assert timed.seconds < timed.bound, name
            # Many waiters at once: each gets its typed error, none waits unbounded.
            results = await asyncio.gather(
                *(store.count() for _ in range(8)), return_exceptions=True
            )
            assert all(isinstance(result, PoolTimeoutError) for result in results)
        finally:
            for connection in held:
                await store.pool.release(connection)
        assert await store.count() == 1  # nothing written by the refused calls
        assert store.pool.get_size() <= 2
        assert store.pool.get_idle_size() == store.pool.get_size()  # no connection leaked


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
async def test_fork_child_refuses_and_never_touches_the_parents_connections(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, pool_min_size=2
    ) as store:
        await store.add_vectors([[1, 0, 0]])
        held = [await store.pool.acquire() for _ in range(2)]
        pids = sorted(connection.get_server_pid() for connection in held)
        for connection in held:
            await store.pool.release(connection)
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - reports through the pipe, then always exits
            code = b"?"
            try:
                asyncio.new_event_loop().run_until_complete(store.count())
                code = b"no error"
            except StoreClosedError as exc:
                code = b"ok" if b"fork" in str(exc).encode() else b"wrong message"
            except BaseException as exc:
                code = type(exc).__name__.encode()
            try:
                asyncio.new_event_loop().run_until_complete(store.close())
            except BaseException as exc:
                code = b"close: " + type(exc).__name__.encode()
            os.write(write_end, code)
            os._exit(0)
        os.close(write_end)
        _, status = await asyncio.to_thread(os.waitpid, child, 0)
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.read() == b"ok"
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's backends are the same, alive and idle: the child sent nothing on them.
        states = await raw_conn.fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE pid = ANY($1::int[]) ORDER BY pid",
            pids,
        )
        assert [(row["pid"], row["state"]) for row in states] == [(pid, "idle") for pid in pids]
        assert await store.count() == 1
        held = [await store.pool.acquire() for _ in range(2)]
        assert sorted(connection.get_server_pid() for connection in held) == pids
        for connection in held:
            await store.pool.release(connection)
