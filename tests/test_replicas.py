"""Read replicas on a real streaming replica: ``pg_basebackup -R`` of a private embedded server.

Lag is made deterministically with ``pg_wal_replay_pause()`` on the replica; every wait below is
for an event (a replay state, a statement seen in ``pg_stat_activity``), bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, ConfigurationError, StoreConfig, ValidationError
from pgvs.server import EmbeddedServer, _free_port

DIM = 4
SECRET = "s3cret-pw"
_DEADLINE = 60.0  # seconds an awaited event may take on a loaded box before the test fails


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, Any]]:
    """A primary and its streaming replica (kept data directory, fixed port: restartable)."""
    primary = EmbeddedServer()
    primary.start()
    replica_dir = tmp_path_factory.mktemp("replica") / "data"
    port = _free_port()
    replica = primary.create_replica(replica_dir, port=port)
    replica.settings["port"] = str(port)  # for replica_dsn(); the start passes the same
    try:
        replica.start()
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + _DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def replica_conn(servers: tuple[EmbeddedServer, EmbeddedServer]) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(servers[1].dsn())
    try:
        yield conn
    finally:
        # Never leave replay paused for the next test.
        if await conn.fetchval("SELECT pg_is_wal_replay_paused()"):
            await conn.execute("SELECT pg_wal_replay_resume()")
        await conn.close()


async def pause_replay(conn: Any) -> None:
    await conn.execute("SELECT pg_wal_replay_pause()")

    async def paused() -> bool:
        return bool(await conn.fetchval("SELECT pg_get_wal_replay_pause_state() = 'paused'"))

    await until(paused, "replay to pause")


def make_store(servers: tuple[EmbeddedServer, EmbeddedServer], table: str, **options: Any) -> Any:
    primary, replica = servers
    return AsyncPGVectorStore(
        connection_string=primary.dsn(),
        dimensions=DIM,
        table_name=table,
        read_replicas=[replica_dsn(replica)],
        **options,
    )


def replica_dsn(replica: EmbeddedServer) -> str:
    """Its DSN whether it runs or not (its port is fixed; ``dsn()`` asks the running server).
    With a password (trust authentication ignores it) that must never be shown."""
    return f"postgresql://postgres:{SECRET}@127.0.0.1:{replica.settings['port']}/postgres"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


async def test_write_then_read_sees_the_row_on_the_replica(
    servers: tuple[EmbeddedServer, EmbeddedServer], table_name: str
) -> None:
    async with make_store(servers, table_name, replica_wait_timeout=_DEADLINE) as store:
        for round_ in range(10):
            rows = vectors(3, seed=round_)
            ids = await store.add_vectors(rows, metadata=[{"round": round_}] * 3)
            assert all(record.found for record in await store.get_vectors(ids))
            hits = await store.search(rows[0], 1, exact=True)
            assert hits[0].id == ids[0]
            assert await store.count() == 3 * (round_ + 1)
        routing = store.read_routing
        # Every read ran on the replica, after it had replayed the write (none fell back).
        assert routing.replica_reads == 30
        assert routing.primary_reads == 0
        assert routing.lagging == 0
        assert routing.failures == 0
        assert routing.waits >= 1
        assert routing.wait_p50 is not None
        # A write that raised may have committed: the next read asks the primary how far to
        # wait, and still reads the replica.
        with pytest.raises(ValidationError):
            await store.add_vectors([[1.0, 2.0]])
        assert await store.count() == 30
        assert store.read_routing.replica_reads == 31
        assert SECRET not in repr(store.config)


async def test_every_read_goes_to_the_replica_and_eventual_skips_the_wait(
    servers: tuple[EmbeddedServer, EmbeddedServer], table_name: str, replica_conn: Any
) -> None:
    options = {"text_search": "simple", "replica_wait_timeout": _DEADLINE}
    async with make_store(servers, table_name, **options) as writer:
        old = await writer.add_vectors(vectors(4), contents=["alpha one"] * 4)
        assert len(await writer.search(vectors(1)[0], 10)) == 4  # the replica has them
        await pause_replay(replica_conn)
        new = await writer.add_vectors(vectors(1, seed=9), contents=["bravo two"])
        async with make_store(servers, table_name, consistency="eventual", **options) as reader:
            # The replica stopped before the new row: an eventual reader does not see it, so
            # each of these reads ran there (on the primary the row is visible).
            assert await reader.count() == 4
            assert not (await reader.get_vectors(new))[0].found
            query = vectors(1, seed=9)[0]
            assert new[0] not in [hit.id for hit in await reader.search(query, 10)]
            batch = await reader.search_batch([query], 10)
            assert new[0] not in [hit.id for hit in batch[0]]
            assert await reader.text_search("bravo") == []
            assert len(await reader.text_search("alpha")) == 4
            hybrid = await reader.hybrid_search(query, "bravo", 10)
            assert new[0] not in [hit.id for hit in hybrid]
            assert len(await reader.mmr_search(query, 2)) == 2
            assert (await reader.explain_search(query)).plan
            centroid = await reader.centroid(ids=new)
            assert centroid is None
            routing = reader.read_routing
            assert routing.replica_reads == 10
            assert routing.primary_reads == 0
        assert len(old) == 4


async def test_a_lagging_replica_is_waited_for_then_the_primary_answers(
    servers: tuple[EmbeddedServer, EmbeddedServer], table_name: str, replica_conn: Any
) -> None:
    async with make_store(servers, table_name, replica_wait_timeout=0.2) as store:
        await store.add_vectors(vectors(2))
        assert await store.count() == 2
        await pause_replay(replica_conn)
        ids = await store.add_vectors(vectors(1, seed=5))
        # Replay is paused: the bounded wait runs out and the primary answers, with the row.
        assert (await store.get_vectors(ids))[0].found
        routing = store.read_routing
        assert routing.lagging == 1
        assert routing.primary_reads == 1
    async with make_store(servers, table_name, replica_wait_timeout=_DEADLINE) as store:
        ids = await store.add_vectors(vectors(1, seed=6))  # replay is still paused
        # Backends the closed store left may linger a moment: the one to wait for is new.
        seen = "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_last_wal_replay_lsn()'"
        before = {row["pid"] for row in await replica_conn.fetch(seen)}
        read = asyncio.create_task(store.get_vectors(ids))

        async def polling() -> bool:  # the store is waiting: its replay-position query ran
            return bool({row["pid"] for row in await replica_conn.fetch(seen)} - before)

        await until(polling, "the read to poll the replica")
        assert not read.done()
        await replica_conn.execute("SELECT pg_wal_replay_resume()")
        assert (await asyncio.wait_for(read, _DEADLINE))[0].found
        routing = store.read_routing
        assert routing.replica_reads == 1
        assert routing.primary_reads == 0
        assert routing.waits == 1
        assert routing.lagging == 0


async def test_a_replica_that_goes_down_is_skipped_and_retried_later(
    servers: tuple[EmbeddedServer, EmbeddedServer],
    table_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _primary, replica = servers
    async with (
        make_store(servers, table_name, replica_retry_interval=3600) as patient,
        make_store(servers, table_name, replica_retry_interval=0) as eager,
    ):
        ids = await patient.add_vectors(vectors(3))
        assert await patient.count() == 3
        assert await eager.count() == 3
        replica.stop()
        try:
            # Replica down: reads still succeed (on the primary); it is then skipped.
            assert await patient.count() == 3
            assert all(r.found for r in await patient.get_vectors(ids))
            routing = patient.read_routing
            assert routing.failures == 1
            assert len(routing.replicas_down) == 1
            assert "postgres:***@127.0.0.1" in routing.replicas_down[0]
            assert "read replica" in caplog.text
            assert SECRET not in caplog.text
            # A store opened while the replica is down opens fine and reads the primary.
            async with make_store(servers, table_name) as late:
                assert await late.count() == 3
                assert late.read_routing.failures == 1
            assert await eager.count() == 3  # tries the replica (refused), then the primary
            assert eager.read_routing.failures == 1
        finally:
            replica.start()
        # Back up on the same port: the eager store's next read goes to it again.
        before = eager.read_routing.replica_reads
        assert await eager.count() == 3
        assert eager.read_routing.replica_reads == before + 1
        # The patient one still skips it (retry interval not over), its reads still succeed.
        assert await patient.count() == 3
        assert patient.read_routing.failures == 1
        assert patient.read_routing.replica_reads == 1


async def test_writes_and_ddl_go_to_the_primary(
    servers: tuple[EmbeddedServer, EmbeddedServer], table_name: str
) -> None:
    # The replica is read-only: any write or DDL that reached it would fail.
    async with make_store(servers, table_name, min_rows_for_index=0) as store:
        ids = await store.add_vectors(vectors(3))
        await store.update_metadata(ids, [{"k": 1}] * 3)
        assert await store.delete_vectors(ids[:1]) == 1
        await store.create_index()
        assert await store.count() == 2
        assert (await store.index_status()).valid


def test_replicas_need_postgres_urls_and_never_show_passwords() -> None:

    config = StoreConfig(dimensions=3, read_replicas=["postgresql://u:s3cret@h/db"])
    assert "s3cret" not in repr(config)
    with pytest.raises(ConfigurationError) as caught:
        StoreConfig(dimensions=3, read_replicas=["host=h password=s3cret"])
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ConfigurationError):
        StoreConfig.from_mapping(dimensions=3, read_replicas="postgresql://h/db")
    with pytest.raises(ConfigurationError):
        StoreConfig.from_mapping(dimensions=3, consistency="strong")
    with pytest.raises(ConfigurationError):
        StoreConfig(dimensions=3, replica_wait_timeout=-1)
