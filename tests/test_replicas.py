"""Read replicas on a real streaming replica: ``pg_basebackup -R`` of a private embedded server.

Lag is made deterministically with ``pg_wal_replay_pause()`` on the replica, a hung replica with
the fault suite's blackhole proxy (it accepts TCP and swallows every byte); every wait below is
for an event (a replay state, a statement seen in ``pg_stat_activity``, a routing count, bytes
reaching the proxy), bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import numpy as np
import pytest

from faults.proxy import FaultProxy
from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    QueryTimeoutError,
    StoreConfig,
    ValidationError,
)
from pgvs.scale import ReplicaRotation
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


async def admitted(store: Any) -> None:
    """A new store's first read goes to the primary and starts the replica's health probe; wait
    until the probe has let the replica into the rotation."""
    await store.count()

    async def up() -> bool:
        return bool(store.read_routing.replicas_up)

    await until(up, "the health probe to admit the replica")


async def reads_reach_the_replica(store: Any) -> None:
    """Read until a read runs on the replica (each read may start the probe that admits it)."""
    before = store.read_routing.replica_reads

    async def on_replica() -> bool:
        await asyncio.wait_for(store.count(), _DEADLINE)
        return bool(store.read_routing.replica_reads > before)

    await until(on_replica, "a read to run on the replica")


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
        # Never verified: the first read goes to the primary and starts a health probe.
        assert await store.count() == 0
        assert store.read_routing.primary_reads == 1
        assert store.read_routing.replica_reads == 0
        await admitted(store)
        primary_reads = store.read_routing.primary_reads
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
        assert routing.primary_reads == primary_reads
        assert routing.lagging == 0
        assert routing.failures == 0
        assert routing.probes == 1
        assert routing.probe_failures == 0
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
        await admitted(writer)
        old = await writer.add_vectors(vectors(4), contents=["alpha one"] * 4)
        assert len(await writer.search(vectors(1)[0], 10)) == 4  # the replica has them
        assert writer.read_routing.replica_reads == 1
        await pause_replay(replica_conn)
        new = await writer.add_vectors(vectors(1, seed=9), contents=["bravo two"])
        async with make_store(servers, table_name, consistency="eventual", **options) as reader:
            await admitted(reader)  # (its first read, on the primary, sees 5 rows)
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
            assert routing.primary_reads == 1
        assert len(old) == 4


async def test_a_lagging_replica_is_waited_for_then_the_primary_answers(
    servers: tuple[EmbeddedServer, EmbeddedServer], table_name: str, replica_conn: Any
) -> None:
    async with make_store(servers, table_name, replica_wait_timeout=0.2) as store:
        await admitted(store)
        await store.add_vectors(vectors(2))
        assert await store.count() == 2
        await pause_replay(replica_conn)
        ids = await store.add_vectors(vectors(1, seed=5))
        # Replay is paused: the bounded wait runs out and the primary answers, with the row.
        assert (await store.get_vectors(ids))[0].found
        routing = store.read_routing
        assert routing.lagging == 1
        assert routing.primary_reads == 2  # and the read that started the probe
    async with make_store(servers, table_name, replica_wait_timeout=_DEADLINE) as store:
        await admitted(store)  # (a probe does not depend on replay)
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
        assert routing.primary_reads == 1
        assert routing.waits == 1
        assert routing.lagging == 0


async def test_a_replica_that_goes_down_is_skipped_until_a_probe_sees_it_back(
    servers: tuple[EmbeddedServer, EmbeddedServer],
    table_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _primary, replica = servers
    async with (
        make_store(servers, table_name, replica_retry_interval=3600) as patient,
        make_store(servers, table_name, replica_retry_interval=0) as eager,
    ):
        await admitted(patient)
        await admitted(eager)
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
            assert routing.replicas_up == ()
            assert "postgres:***@127.0.0.1" in routing.replicas_down[0]
            assert "read replica" in caplog.text
            # A store opened while the replica is down opens fine and reads the primary; its
            # probe (in the background) finds the replica refusing.
            async with make_store(servers, table_name) as late:
                assert await late.count() == 3
                assert late.read_routing.primary_reads == 1
                assert late.read_routing.failures == 0  # no read went to it

                async def probed_down() -> bool:
                    return bool(late.read_routing.replicas_down)

                await until(probed_down, "the probe to find the replica down")
                assert late.read_routing.probe_failures == 1
                assert "failed a health probe" in caplog.text
            assert await eager.count() == 3  # tries the replica (refused), then the primary
            assert eager.read_routing.failures == 1
            assert SECRET not in caplog.text
        finally:
            replica.start()
        # Back up on the same port: a probe of the eager store (started by its reads) admits
        # it again and reads go to it.
        await reads_reach_the_replica(eager)
        assert eager.read_routing.failures == 1
        assert eager.read_routing.probes >= 1
        # The patient one still skips it (retry interval not over), its reads still succeed.
        assert await patient.count() == 3
        assert patient.read_routing.failures == 1
        assert patient.read_routing.replica_reads == 1
        assert patient.read_routing.probes == 1  # only the first one: none is due


async def test_a_hung_replica_costs_no_read_a_wait_and_a_probe_readmits_it(
    servers: tuple[EmbeddedServer, EmbeddedServer],
    table_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replica that accepts TCP but never answers (the proxy's blackhole): reads go to the
    primary at once, a probe marks it down, and once it answers again a probe re-admits it."""
    primary, replica = servers
    proxy = await FaultProxy(int(replica.settings["port"])).start()
    proxy.blackhole = True
    store = AsyncPGVectorStore(
        connection_string=primary.dsn(),
        dimensions=DIM,
        table_name=table_name,
        read_replicas=[proxy.dsn(replica_dsn(replica))],
        replica_retry_interval=0,  # every read may start the next probe
        command_timeout=2,  # the probe's bound and a hung read's (a test waits for both)
    )
    try:
        await store.initialize()
        ids = await store.add_vectors(vectors(3))
        # The read returns from the primary; its probe is stuck on the hung replica (the
        # proxy swallows its startup packet). The wait_for is only a safety net: a read that
        # waited for the replica would take a whole command_timeout and then fail.
        assert await asyncio.wait_for(store.count(), _DEADLINE) == 3

        async def swallowed() -> bool:
            return proxy.dropped > 0

        await until(swallowed, "the probe to reach the hung replica")
        assert all(r.found for r in await asyncio.wait_for(store.get_vectors(ids), _DEADLINE))
        routing = store.read_routing
        assert (routing.primary_reads, routing.replica_reads) == (2, 0)
        assert routing.replicas_up == ()

        async def down() -> bool:
            return bool(store.read_routing.replicas_down)

        await until(down, "the probe to mark the hung replica down")
        assert store.read_routing.probe_failures >= 1
        assert store.read_routing.failures == 0  # no read went to it
        assert "no answer within 2 s" in caplog.text
        # Healed: the next probe admits it and reads go to it.
        proxy.blackhole = False
        await reads_reach_the_replica(store)
        assert store.read_routing.replicas_down == ()
        # Hung while healthy: the read in flight on it costs its command_timeout (the bound)
        # and raises as on the primary; the replica is out of the rotation at once.
        proxy.blackhole = True
        replica_reads = store.read_routing.replica_reads
        with pytest.raises(QueryTimeoutError):
            await store.count()
        assert store.read_routing.failures == 1
        assert store.read_routing.replicas_up == ()
        primary_reads = store.read_routing.primary_reads
        assert await asyncio.wait_for(store.count(), _DEADLINE) == 3
        assert store.read_routing.primary_reads == primary_reads + 1
        assert store.read_routing.replica_reads == replica_reads
        await until(down, "the probe to mark the hung replica down")
        proxy.blackhole = False
        await reads_reach_the_replica(store)
        assert SECRET not in caplog.text
    finally:
        await store.close()
        await proxy.close()


async def test_close_cancels_a_probe_in_flight(
    servers: tuple[EmbeddedServer, EmbeddedServer], table_name: str
) -> None:
    primary, replica = servers
    proxy = await FaultProxy(int(replica.settings["port"])).start()
    proxy.blackhole = True

    def probes() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("pgvs-replica-probe")]

    try:
        store = AsyncPGVectorStore(
            connection_string=primary.dsn(),
            dimensions=DIM,
            table_name=table_name,
            read_replicas=[proxy.dsn(replica_dsn(replica))],
        )
        await store.initialize()
        assert await store.count() == 0

        async def swallowed() -> bool:
            return proxy.dropped > 0

        await until(swallowed, "the probe to reach the hung replica")
        [probe] = probes()
        # close() cancels it (rather than waiting out its 5 s bound) and awaits its end.
        await asyncio.wait_for(store.close(), _DEADLINE)
        assert probe.cancelled()
        assert probes() == []
        assert store.read_routing.probes == 0  # it never ended on its own
    finally:
        await proxy.close()


# The rotation's rules, one case a row: what happens ("due": probes_due, which starts the due
# probes; "ok"/"fail": a probe's end; "failed": a read's connection failed; "suspect": a read timed
# out), on which replica, at which clock; then what the next picks return, and each replica's
# state. Three replicas, retry_after=10.
Event = tuple[str, int, float]
ALL_UP: list[Event] = [("due", 0, 0), ("ok", 0, 0), ("ok", 1, 0), ("ok", 2, 0)]
ROTATION_CASES: list[tuple[str, list[Event], list[int | None], list[str]]] = [
    ("new: nothing is routed before a probe", [], [None, None], ["unverified"] * 3),
    (
        "probes admit them",
        [("due", 0, 0), ("ok", 0, 0), ("ok", 2, 0)],
        [0, 2, 0],
        ["up", "unverified", "up"],
    ),
    (
        "a failed probe: down",
        [("due", 0, 0), ("ok", 0, 0), ("fail", 1, 0)],
        [0, 0],
        ["up", "down", "unverified"],
    ),
    ("a read's failure: down", [*ALL_UP, ("failed", 0, 5)], [1, 2, 1], ["down", "up", "up"]),
    (
        "a read's failure: only a probe brings it back",
        [*ALL_UP, ("failed", 0, 5), ("due", 0, 15), ("ok", 0, 15)],
        [0, 1, 2, 0],
        ["up"] * 3,
    ),
    ("a timed-out read: down", [*ALL_UP, ("suspect", 1, 3)], [0, 2, 0], ["up", "down", "up"]),
    (
        "all down: the primary",
        [*ALL_UP, ("failed", 0, 1), ("failed", 1, 1), ("suspect", 2, 1)],
        [None],
        ["down"] * 3,
    ),
]


def run(rotation: ReplicaRotation, events: list[Event]) -> None:
    for event, index, now in events:
        if event == "due":
            rotation.probes_due(now)
        elif event in ("ok", "fail"):
            assert rotation.probing(index)
            rotation.probe_done(index, event == "ok", now)
        else:
            getattr(rotation, event)(index, now)


@pytest.mark.parametrize(
    ("events", "picks", "states"),
    [case[1:] for case in ROTATION_CASES],
    ids=[case[0] for case in ROTATION_CASES],
)
def test_rotation_routes_only_to_replicas_a_probe_admitted(
    events: list[Event], picks: list[int | None], states: list[str]
) -> None:
    rotation = ReplicaRotation(3, retry_after=10)
    run(rotation, events)
    assert [rotation.pick() for _ in picks] == picks
    assert [rotation.state(i) for i in range(3)] == states


# When probes are due: the events, the clock, what probes_due then starts.
DUE_CASES: list[tuple[str, list[Event], float, list[int]]] = [
    ("new: every replica at once", [], 0, [0, 1, 2]),
    ("up: never probed", ALL_UP, 99, []),
    ("in flight: never twice", [("due", 0, 0)], 50, []),
    ("one ended, two in flight", [("due", 0, 0), ("fail", 0, 0)], 50, [0]),
    ("failed probe: not before retry_after", [*ALL_UP[:3], ("fail", 2, 0)], 9.9, []),
    ("failed probe: at retry_after", [*ALL_UP[:3], ("fail", 2, 0)], 10, [2]),
    ("a read's failure: not before retry_after", [*ALL_UP, ("failed", 0, 5)], 14.9, []),
    ("a read's failure: at retry_after", [*ALL_UP, ("failed", 0, 5)], 15, [0]),
    ("a timed-out read: at once", [*ALL_UP, ("suspect", 2, 5)], 5, [2]),
    ("readmitted: not probed", [*ALL_UP, ("suspect", 2, 5), ("due", 0, 5), ("ok", 2, 6)], 99, []),
]


@pytest.mark.parametrize(
    ("events", "now", "due"),
    [case[1:] for case in DUE_CASES],
    ids=[case[0] for case in DUE_CASES],
)
def test_rotation_probes_each_replica_once_at_a_time_when_due(
    events: list[Event], now: float, due: list[int]
) -> None:
    rotation = ReplicaRotation(3, retry_after=10)
    run(rotation, events)
    assert rotation.probes_due(now) == due
    assert all(rotation.probing(i) for i in due)
    assert rotation.probes_due(now) == []  # started: none twice


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
