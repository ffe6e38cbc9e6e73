"""Scenarios 1 and 2: ``kill -9`` of the server during writes, and a restart under a warm pool.

Each crash test counts what survived against what was written: rows lost (acknowledged but
gone, or missing after the re-run) and rows duplicated must both be zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, ConnectionLostError, IngestError
from pgvs.results import IngestProgress

from .conftest import CrashServer, until

pytestmark = pytest.mark.slow

ROWS = 2000


def _data(rows: int = ROWS, seed: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "vectors": rng.normal(size=(rows, 8)).astype(np.float32),
        "ids": [f"r{n:05d}" for n in range(rows)],
        "metadata": [{"n": n} for n in range(rows)],
    }


def _store(dsn: str, table_name: str, **options: Any) -> AsyncPGVectorStore:
    return AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=8,
        table_name=table_name,
        id_type="text",
        index_type="hnsw",
        min_rows_for_index=0,
        **options,
    )


async def _stored(dsn: str, table_name: str) -> dict[str, int]:
    """Rows, distinct ids, and invalid indexes of the table, read on a direct connection."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f'SELECT count(*) AS rows, count(DISTINCT id) AS ids FROM "{table_name}"'
        )
        invalid = await conn.fetchval(
            "SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass AND NOT indisvalid",
            f'"{table_name}"',
        )
        indexes = await conn.fetchval(
            "SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass", f'"{table_name}"'
        )
    finally:
        await conn.close()
    assert row is not None
    return {"rows": row["rows"], "ids": row["ids"], "invalid": invalid, "indexes": indexes}


def _account(
    report: Callable[..., None], scenario: str, expected: int, seen: dict[str, int]
) -> None:
    lost = max(expected - seen["ids"], 0)
    duplicated = seen["rows"] - seen["ids"]
    report("rows", scenario=scenario, expected=expected, lost=lost, duplicated=duplicated)
    assert (lost, duplicated) == (0, 0), seen


async def _lock_wait(dsn: str, table_name: str) -> int:
    """The pid of the backend waiting on a lock of ``table_name`` (the write in flight)."""
    conn = await asyncpg.connect(dsn)
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%' || $1 || '%'"
    )
    try:
        return int(await until(lambda: conn.fetchval(sql, table_name)))
    finally:
        await conn.close()


async def test_kill_during_ingest_then_rerun_is_exact(
    crash_server: CrashServer, table_name: str, report: Callable[..., None]
) -> None:
    data = _data()

    def kill_after_two(state: IngestProgress) -> None:
        if state.batches_done == 2:
            crash_server.kill()

    async with _store(crash_server.dsn, table_name) as store:
        with pytest.raises(IngestError) as caught:
            await store.ingest(
                data["vectors"],
                ids=data["ids"],
                metadata=data["metadata"],
                batch_size=250,
                connections=2,
                progress=kill_after_two,
            )
        error = caught.value
        assert isinstance(error.__cause__, ConnectionLostError)
        assert "asyncpg" not in type(error.__cause__).__module__
        assert error.committed_batches == list(range(len(error.committed_batches)))
        crash_server.restart()
        seen = await _stored(crash_server.direct_dsn, table_name)
        # Every committed batch survived the crash, and nothing else did.
        assert seen["rows"] == seen["ids"] == error.rows_written >= 500
        result = await store.ingest(  # the same call, on the same (warm) store
            data["vectors"], ids=data["ids"], metadata=data["metadata"], batch_size=250
        )
        assert result.rows_written == ROWS
        assert await store.count() == ROWS
    seen = await _stored(crash_server.direct_dsn, table_name)
    assert seen["invalid"] == 0
    _account(report, "kill -9 during ingest", ROWS, seen)


@pytest.mark.parametrize("rows", [40, 600])  # one INSERT statement; the COPY path
async def test_kill_during_add_vectors_then_rerun_is_exact(
    crash_server: CrashServer, table_name: str, report: Callable[..., None], rows: int
) -> None:
    data = _data(rows)
    async with _store(crash_server.dsn, table_name) as store:
        await store.add_vectors([[1] * 8], ids=["first"])
        blocker = await asyncpg.connect(crash_server.direct_dsn)
        await blocker.execute("BEGIN")
        await blocker.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
        # No ids: not idempotent, so never retried; the write waits on the lock in the server.
        write = asyncio.ensure_future(store.add_vectors(data["vectors"]))
        await _lock_wait(crash_server.direct_dsn, table_name)
        await asyncio.to_thread(crash_server.kill)
        with pytest.raises(ConnectionLostError) as caught:
            await write
        assert "retried" in (caught.value.hint or "")
        blocker.terminate()
        crash_server.restart()
        assert (await _stored(crash_server.direct_dsn, table_name))["rows"] == 1  # no partial
        written = await store.add_vectors(
            data["vectors"], ids=data["ids"], metadata=data["metadata"]
        )
        assert written == data["ids"]
        assert await store.count() == rows + 1
    seen = await _stored(crash_server.direct_dsn, table_name)
    assert seen["invalid"] == 0
    _account(report, f"kill -9 during add_vectors ({rows} rows)", rows + 1, seen)


async def test_restart_under_a_warm_pool(
    crash_server: CrashServer, table_name: str, report: Callable[..., None]
) -> None:
    """Every pooled connection dies with the server; after the restart the next reads and
    idempotent writes succeed (retried once at most), and nothing was lost or doubled."""
    data = _data(300)
    async with _store(crash_server.dsn, table_name, pool_min_size=4, pool_max_size=4) as store:
        await store.add_vectors(data["vectors"], ids=data["ids"])
        held = [await store.pool.acquire() for _ in range(4)]  # all four connections warm
        pids = {connection.get_server_pid() for connection in held}
        for connection in held:
            await store.pool.release(connection)
        await asyncio.to_thread(crash_server.kill)
        await asyncio.to_thread(crash_server.restart)
        assert await store.count() == 300
        assert (await store.search(data["vectors"][5], k=1))[0].id == data["ids"][5]
        assert len(await store.get_vectors(data["ids"][:3])) == 3
        await store.add_vectors(data["vectors"][:10], ids=data["ids"][:10])  # an upsert
        held = [await store.pool.acquire() for _ in range(4)]
        assert not pids & {connection.get_server_pid() for connection in held}
        for connection in held:
            await store.pool.release(connection)
    seen = await _stored(crash_server.direct_dsn, table_name)
    _account(report, "restart under a warm pool", 300, seen)


async def test_idempotent_writes_retry_and_others_do_not(
    crash_server: CrashServer, table_name: str
) -> None:
    """Every connection reset while a write waits in the server: an upsert of given ids is
    retried once and succeeds; a write with generated ids is not (ConnectionLostError)."""
    assert crash_server.proxy is not None
    async with _store(crash_server.dsn, table_name) as store:
        direct = await asyncpg.connect(crash_server.direct_dsn)
        try:
            for ids in (["a", "b"], None):
                async with direct.transaction():
                    await direct.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
                    write = asyncio.ensure_future(store.add_vectors([[1] * 8, [3] * 8], ids=ids))
                    await _lock_wait(crash_server.direct_dsn, table_name)
                    crash_server.proxy.reset()
                if ids is None:
                    with pytest.raises(ConnectionLostError):
                        await write
                    # The backend finished the INSERT once the lock was free, its client gone:
                    # an acknowledgement lost, the rows written once (a retry would double them).
                    assert await store.count() == 4
                else:
                    assert await write == ids  # retried: the first run landed too, same rows
                    assert await store.count() == 2
        finally:
            await direct.close()
