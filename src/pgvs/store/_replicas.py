"""Replicas: reads routed to streaming replicas, writes and DDL kept on the primary.

With ``read_replicas`` set, every read (counts, gets, searches, explain) runs on the next healthy
replica in turn, on a :class:`~pgvs.store._reads.Reader` and
:class:`~pgvs.store._strategies.Strategies` of that replica's own pool; everything else stays
on the primary. A replica takes reads only once a health probe has seen it answer as a standby
(``SELECT pg_is_in_recovery()`` on a pooled connection, bounded by :data:`PROBE_BOUND` or
command_timeout if shorter). Probes are background tasks, at most one per replica, started by
reads (a replica never verified, or down and due again) and cancelled by :meth:`Replicas.close`;
reads never wait for one: until it answers they go to the other replicas or the primary. A
replica whose connection fails on a read (refused, lost, still starting) is down and that read
runs on the primary; its next probe is ``replica_retry_interval`` seconds later. A read that
times out on a replica raises as it would on the primary (it cost its command_timeout: the
bound for a replica that hangs mid-read), and the replica is down until a probe, started at
once, answers. A read the standby cancels (a conflict with recovery) runs again on the primary.

Read-your-writes (``consistency="read_your_writes"``): after each write of this store commits,
the primary's WAL insert position is read (one extra round trip on the primary; the commit
record only exists once the commit has happened, so it cannot share the write's own round trip).
A replica read first makes sure that replica has replayed that far
(``pg_last_wal_replay_lsn()``; the replayed position seen last is remembered, so a replica known
to be past it costs nothing), polling up to ``replica_wait_timeout`` seconds, after which the
read runs on the primary. ``"eventual"`` reads whatever the replica has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from ..errors import PoolTimeoutError, StoreClosedError, connection_lost, redact_dsn
from ..scale import ReplicaRotation
from ._context import StoreContext
from ._index_manager import IndexManager
from ._query_log import QueryLog
from ._reads import Reader
from ._session import Session, logger
from ._strategies import Strategies

__all__ = ["ReadParts", "ReadRouting", "Replicas", "noted_write"]

R = TypeVar("R")
P = ParamSpec("P")

# pg_current_wal_insert_lsn, not pg_current_wal_lsn: the insert position is past the commit
# record even when synchronous_commit=off has not written it out yet (the write position would
# then be short of it, and a replica could "catch up" without the row).
_PRIMARY_LSN = "SELECT pg_current_wal_insert_lsn()"
_REPLAYED_LSN = "SELECT pg_last_wal_replay_lsn()"
# Polling a lagging replica: the next look after 0.2 ms, doubling to at most 5 ms (loopback
# replay of one commit takes about a millisecond; a poll is one short round trip).
_FIRST_POLL, _MAX_POLL = 0.0002, 0.005
_RECOVERY_CONFLICT = "40001"  # a standby cancelling a query whose rows replay must remove
_WAITS_KEPT = 1000
_PROBE = "SELECT pg_is_in_recovery()"
#: Seconds a health probe (a connection, opened if none is idle, and one trivial query) may take
#: at most; command_timeout bounds it too when shorter. No user read waits for a probe: the
#: bound only decides how soon a hung replica is reported down and its connection dropped.
PROBE_BOUND = 5.0


@dataclasses.dataclass(frozen=True)
class ReadRouting:
    """Where this store's reads went (``store.read_routing``): counts since it was opened.

    ``waits``: reads that had to wait for a replica to replay this store's last write, and
    ``wait_p50`` the median of the most recent of those waits in seconds (None: no wait yet).
    ``failures``: replica reads whose connection failed or timed out. ``replicas_down``: the
    replicas now skipped (DSNs without passwords), ``replicas_up``: the ones taking reads (a
    replica is in neither until its first health probe ends); ``probes`` / ``probe_failures``:
    health probes ended, and how many of them found the replica unusable."""

    replica_reads: int
    primary_reads: int
    lagging: int
    failures: int
    waits: int
    wait_p50: float | None
    replicas_down: tuple[str, ...]
    replicas_up: tuple[str, ...] = ()
    probes: int = 0
    probe_failures: int = 0


class ReadParts:
    """What a read runs on: one server's session, and a reader and strategies bound to it."""

    __slots__ = ("reader", "session", "strategies")

    def __init__(self, session: Session, reader: Reader, strategies: Strategies) -> None:
        self.session = session
        self.reader = reader
        self.strategies = strategies


class _Replica:
    __slots__ = ("dsn", "lock", "parts", "replayed", "synced")

    def __init__(self, dsn: str, parts: ReadParts) -> None:
        self.dsn = dsn
        self.parts = parts
        self.replayed = 0  # the highest replay LSN seen on it (0: unknown)
        self.synced: object = None  # the primary settings dict this pool was given
        self.lock = asyncio.Lock()  # one pool opening at a time


def _replica_failed(exc: BaseException) -> bool:
    """A replica that cannot serve now: connection refused or lost, or still starting up."""
    return connection_lost(exc)


def _timed_out(exc: BaseException) -> bool:
    """A statement or connect on the replica ran out of command_timeout (a slow query, or a
    server that accepts TCP but never answers). A full pool is not the replica's fault."""
    return isinstance(exc, asyncio.TimeoutError | TimeoutError) and not isinstance(
        exc, PoolTimeoutError
    )


class _NotStandby(Exception):
    """The probe's answer: this server is not in recovery (a primary, or a promoted standby)."""


class Replicas:
    """The store's read routing (a no-op without ``read_replicas``)."""

    def __init__(self, ctx: StoreContext, primary: ReadParts, indexes: IndexManager) -> None:
        config = ctx.config
        self.primary = primary
        self.enabled = bool(config.read_replicas)
        self.wait = config.consistency == "read_your_writes"
        self.timeout = config.replica_wait_timeout
        # Replica pools connect on first use: a replica that is down when the store opens is
        # just skipped, never a reason to fail initialize().
        self._replicas = []
        if self.enabled:
            replica_config = config.replace(pool_min_size=0, read_replicas=())
            self._replicas = [
                _Replica(dsn, _parts(ctx, Session(replica_config), indexes, primary.reader.log))
                for dsn in config.read_replicas
            ]
        self._rotation = ReplicaRotation(len(self._replicas), config.replica_retry_interval)
        self.probe_timeout = min(config.command_timeout or PROBE_BOUND, PROBE_BOUND)
        self._probes: dict[int, asyncio.Task[None]] = {}
        self._closed_on: object = None  # the primary pool close() ran under: start no probes
        self.written_lsn = 0  # this store's last committed write (0: none yet)
        self._lsn_unknown = False  # a write ended in an error: read the primary's LSN first
        self._counts = dict.fromkeys(
            ("replica", "primary", "lagging", "failures", "probes", "probe_failures"), 0
        )
        self._waits: deque[float] = deque(maxlen=_WAITS_KEPT)
        self._wait_count = 0

    # -- writes --------------------------------------------------------------------------------

    async def after_write(self) -> None:
        """A write of this store committed: remember the primary's WAL position past it."""
        if not (self.enabled and self.wait):
            return
        try:
            lsn = await self.primary.session.pool.fetchval(_PRIMARY_LSN)
        except Exception as exc:  # the write is done; the next replica read asks again
            logger.debug("could not read the primary's WAL position: %s", exc)
            self._lsn_unknown = True
            return
        self.written_lsn = max(self.written_lsn, int(lsn))
        self._lsn_unknown = False

    def write_failed(self) -> None:
        """A write raised: it may have committed (in part, for an ingest) all the same."""
        if self.enabled and self.wait:
            self._lsn_unknown = True

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, call: Callable[[ReadParts], Awaitable[R]]) -> R:
        """``call`` on the next healthy replica that has this store's writes, else the primary."""
        if not self.enabled or not self.primary.session.is_open:
            return await call(self.primary)  # (a closed store raises there, as it should)
        self._start_probes()
        index = self._rotation.pick()
        if index is None:
            self._counts["primary"] += 1
            return await call(self.primary)
        replica = self._replicas[index]
        try:
            ready = await self._ready(replica)
        except Exception as exc:
            self._timed_out(index, exc)
            if not _replica_failed(exc):
                raise
            return await self._fail_over(index, exc, call)
        if not ready:
            self._counts["lagging"] += 1
            self._counts["primary"] += 1
            return await call(self.primary)
        try:
            result = await call(replica.parts)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == _RECOVERY_CONFLICT:
                logger.info(
                    "replica %s cancelled a read (recovery conflict): reading the primary",
                    redact_dsn(replica.dsn),
                )
                self._counts["primary"] += 1
                return await call(self.primary)
            self._timed_out(index, exc)
            if not _replica_failed(exc):
                raise
            return await self._fail_over(index, exc, call)
        self._counts["replica"] += 1
        return result

    def _timed_out(self, index: int, exc: Exception) -> None:
        """A read timed out on replica ``index``: it raises (it had its command_timeout, as on
        the primary); no read goes there again until a probe, started now, sees it answer."""
        if not _timed_out(exc):
            return
        self._rotation.suspect(index, time.monotonic())
        self._counts["failures"] += 1
        logger.warning(
            "read replica %s did not answer within command_timeout; probing it, reads skip it "
            "until it answers",
            redact_dsn(self._replicas[index].dsn),
        )
        self._start_probes()

    # -- health probes -------------------------------------------------------------------------

    def _start_probes(self) -> None:
        """Start a background probe of each replica that is due one (not up, none running)."""
        session = self.primary.session
        if not session.is_open or self._closed_on is session.pool:
            return  # close() ran (or runs): a probe started now would outlive it
        for index in self._rotation.probes_due(time.monotonic()):
            task = asyncio.get_running_loop().create_task(
                self._probe(index), name=f"pgvs-replica-probe-{index}"
            )
            self._probes[index] = task
            task.add_done_callback(functools.partial(self._probe_ended, index))

    def _probe_ended(self, index: int, task: asyncio.Task[None]) -> None:
        if self._probes.get(index) is task:
            del self._probes[index]
        if not task.cancelled() and task.exception() is not None:  # (a bug: _probe catches all)
            logger.error(
                "a read replica health probe failed: %s", redact_dsn(repr(task.exception()))
            )

    async def _probe(self, index: int) -> None:
        """One health probe of replica ``index``, bounded; its end goes to the rotation."""
        replica = self._replicas[index]
        shown = redact_dsn(replica.dsn)
        was = self._rotation.state(index)
        try:
            await asyncio.wait_for(self._check(replica), self.probe_timeout)
        except Exception as exc:  # (not close()'s cancellation: that ends the task)
            if isinstance(exc, _NotStandby):
                reason = "it is not a standby (pg_is_in_recovery() is false)"
            elif _timed_out(exc):
                reason = f"no answer within {self.probe_timeout:g} s"
            else:
                reason = redact_dsn(str(exc)) or type(exc).__name__
            self._counts["probes"] += 1
            self._counts["probe_failures"] += 1
            self._rotation.probe_done(index, False, time.monotonic())
            replica.replayed = 0  # a restarted standby may resume from an older position
            # A failure repeated every retry interval is not news: one warning per outage.
            level = logging.DEBUG if was == "down" else logging.WARNING
            logger.log(
                level,
                "read replica %s failed a health probe (%s); reads skip it, next probe in %g s",
                shown,
                reason,
                self._rotation.retry_after,
            )
            # Idle connections to it are as dead (or hung) as the probe's: none is reused.
            await replica.parts.session.expire()
            return
        self._counts["probes"] += 1
        self._rotation.probe_done(index, True, time.monotonic())
        if was == "down":
            logger.info("read replica %s answers again: reads go to it", shown)

    async def _check(self, replica: _Replica) -> None:
        """The health probe: the replica's pool opened (with the primary's query settings), a
        pooled connection answers as a standby. That connection stays pooled for reads; one
        interrupted by the bound is terminated (see Session's _Lease), never reused."""
        await self._open(replica)
        async with replica.parts.session.pool.acquire() as connection:
            in_recovery = await connection.fetchval(_PROBE)
        if not in_recovery:
            raise _NotStandby

    async def _fail_over(
        self, index: int, exc: Exception, call: Callable[[ReadParts], Awaitable[R]]
    ) -> R:
        replica = self._replicas[index]
        self._rotation.failed(index, time.monotonic())
        self._counts["failures"] += 1
        replica.replayed = 0  # a restarted standby may resume from an older position
        logger.warning(
            "read replica %s failed (%s); reads skip it until a health probe in %g s answers",
            redact_dsn(replica.dsn),
            redact_dsn(str(exc)),
            self._rotation.retry_after,
        )
        await replica.parts.session.expire()  # its pooled connections are dead too
        self._counts["primary"] += 1
        return await call(self.primary)

    async def _ready(self, replica: _Replica) -> bool:
        """Open the replica's pool (first use), give it the primary's query settings, and wait
        (bounded) until it has replayed this store's last write. False: read the primary."""
        session = replica.parts.session
        await self._open(replica)
        if not self.wait:
            return True
        if self._lsn_unknown:
            await self.after_write()
            if self._lsn_unknown:
                return False  # the primary cannot say how far to wait
        needed = self.written_lsn
        if needed <= replica.replayed:
            return True
        start = time.monotonic()
        deadline = start + self.timeout
        delay = _FIRST_POLL
        while True:
            replayed = await session.pool.fetchval(_REPLAYED_LSN)
            if replayed is None:  # not a standby: it cannot say what it has
                logger.warning("read_replicas entry %s is not a standby", redact_dsn(replica.dsn))
                return False
            replica.replayed = max(replica.replayed, int(replayed))
            now = time.monotonic()
            if replica.replayed >= needed:
                self._waits.append(now - start)
                self._wait_count += 1
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(2 * delay, _MAX_POLL)

    async def _open(self, replica: _Replica) -> None:
        """The replica's pool, open and with the primary's current query settings."""
        session = replica.parts.session
        primary = self.primary.session
        if not session.is_open or replica.synced is not primary.settings:
            async with replica.lock:
                if not session.is_open:
                    session.dsn = replica.dsn
                    assert primary.extension_schema is not None
                    await session.open(primary.extension_schema, primary.settings)
                else:
                    await session.apply_settings(primary.settings)
                replica.synced = primary.settings

    # -- lifecycle and status ------------------------------------------------------------------

    def routing(self) -> ReadRouting:
        waits = sorted(self._waits)
        states = [(r.dsn, self._rotation.state(i)) for i, r in enumerate(self._replicas)]
        return ReadRouting(
            replica_reads=self._counts["replica"],
            primary_reads=self._counts["primary"],
            lagging=self._counts["lagging"],
            failures=self._counts["failures"],
            waits=self._wait_count,
            wait_p50=waits[len(waits) // 2] if waits else None,
            replicas_down=tuple(redact_dsn(dsn) for dsn, state in states if state == "down"),
            replicas_up=tuple(redact_dsn(dsn) for dsn, state in states if state == "up"),
            probes=self._counts["probes"],
            probe_failures=self._counts["probe_failures"],
        )

    async def close(self) -> None:
        """Cancel the running probes and wait for them to end (none outlives the store), then
        close the replicas' pools. A store opened again verifies every replica afresh."""
        if not self.enabled:
            return
        if self.primary.session.is_open:
            # (After fork() the pool refuses to be looked at; no probe can start there anyway.)
            with contextlib.suppress(StoreClosedError):
                self._closed_on = self.primary.session.pool
        # Probes of another loop (the parent's, in a forked child) are only forgotten.
        loop = asyncio.get_running_loop()
        probes = [task for task in self._probes.values() if task.get_loop() is loop]
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        self._probes.clear()
        self._rotation = ReplicaRotation(len(self._replicas), self._rotation.retry_after)
        for replica in self._replicas:
            replica.synced = None
            replica.replayed = 0
            await replica.parts.session.close()


def _parts(
    ctx: StoreContext, session: Session, indexes: IndexManager, log: QueryLog | None
) -> ReadParts:
    # A replica's searches record into the primary's log: it is written on the primary.
    reader = Reader(ctx, session, indexes, log)
    return ReadParts(session, reader, Strategies(ctx, session, reader))


class _HasReplicas(Protocol):
    _replicas: Replicas


S = TypeVar("S", bound=_HasReplicas)


def noted_write(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """A write of the store: once it has committed, its WAL position is noted for
    read-your-writes; when it raised (it may have committed all the same, or in part), the next
    replica read asks the primary first. Without replicas this adds one attribute check."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = await method(self, *args, **kwargs)
        except BaseException:
            self._replicas.write_failed()
            raise
        await self._replicas.after_write()
        return result

    return wrapper
