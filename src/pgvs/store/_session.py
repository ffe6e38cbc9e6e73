"""Session: the store's connections. The only part that opens, configures or closes them.

One asyncpg pool (pgvs's codecs registered on every connection; the store-level query settings
sent as startup parameters), dedicated connections for work that outlives a statement timeout
(index builds), and the one way a search runs with extra ``SET LOCAL`` settings.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from ..codecs import register_vector
from ..config import StoreConfig
from ..errors import (
    DSN_HINT,
    ConfigurationError,
    PoolTimeoutError,
    StoreClosedError,
    connection_lost,
    redact_dsn,
)
from ..indexes import DEFAULT_EF_SEARCH
from ..planning import set_local_sql

__all__ = ["Session", "TimedPool", "logger", "retried_read"]

logger = logging.getLogger("pgvs")


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo.

    The store never leaves session state behind on a pooled connection (per-call settings are
    ``SET LOCAL`` inside transactions, advisory locks taken on the pool are transaction-scoped;
    index builds hold theirs on a dedicated connection), so the default ``RESET ALL``-style reset
    would only add a round trip to every checkout. It would also undo the store-level query
    settings, which are startup parameters of these connections (see planning.session_settings).
    """


def _encode_jsonb(value: Any) -> str:
    # Values pgvs sends are JSON text already (validated by _rows / compiled by filters);
    # other objects (from users' own queries on store.pool) are serialised strictly.
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=False)


def _log_server_message(connection: Any, message: Any) -> None:
    severity = getattr(message, "severity", "NOTICE")
    text = str(getattr(message, "message", message))
    hint = getattr(message, "hint", None)
    level = logging.WARNING if severity == "WARNING" else logging.INFO
    logger.log(level, "server %s: %s%s", severity, text, f" ({hint})" if hint else "")


class _HasSession(Protocol):
    _session: Session


S = TypeVar("S", bound=_HasSession)
P = ParamSpec("P")
R = TypeVar("R")


def retried_read(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """A read that fails because its connection is gone runs once more, after the pool has
    dropped every idle connection (a server restart or ``pg_terminate_backend`` kills them all,
    and asyncpg only finds out on use). Reads are idempotent; writes are never retried here."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            if not connection_lost(exc) or not self._session.is_open:
                raise
            logger.info("%s: connection lost (%s); retrying once", method.__name__, exc)
            await self._session.expire()
        return await method(self, *args, **kwargs)

    return wrapper


async def resolve_dsn(config: StoreConfig) -> str:
    """The config's DSN, else ``DATABASE_URL``, else the embedded server's (started if needed)."""
    dsn = config.resolved_connection_string()
    if dsn:
        return dsn
    from ..server import ensure_default_server

    try:
        return await asyncio.to_thread(ensure_default_server)
    except RuntimeError as exc:
        raise ConfigurationError(
            "no connection_string or DATABASE_URL is set and the embedded server could not "
            f"start: {exc}",
            hint="Set DATABASE_URL, pass connection_string, or pip install 'pgvs[embedded]'.",
        ) from exc


class _Acquire:
    """``pool.acquire()`` with the store's ``acquire_timeout``; running out of it is a
    PoolTimeoutError (never an unbounded wait on an exhausted pool)."""

    __slots__ = ("_context", "_timeout")

    def __init__(self, raw: asyncpg.Pool, timeout: float | None) -> None:
        self._context = raw.acquire(timeout=timeout)
        self._timeout = timeout

    async def __aenter__(self) -> PoolConnectionProxy:
        try:
            connection: PoolConnectionProxy = await self._context.__aenter__()
        except asyncio.TimeoutError as exc:
            raise PoolTimeoutError(
                f"no pooled connection came free within {self._timeout:g} s",
                hint="Raise pool_max_size or acquire_timeout, or look for connections held "
                "elsewhere (store.stats() shows the pool).",
            ) from exc
        return connection

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._context.__aexit__(*exc_info)


# Forks seen by this process: a store whose pool was opened before a fork() holds sockets the
# parent shares, so in the child it must refuse every use and close nothing (see Session.pool).
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


class _AlwaysEmpty:
    def empty(self) -> bool:
        return True


class TimedPool:
    """The store's view of its asyncpg pool: the same calls, each acquiring within
    ``acquire_timeout``. (asyncpg's own ``Pool.fetch`` and friends acquire without a timeout.)"""

    __slots__ = ("_queue", "raw", "timeout")

    def __init__(self, raw: asyncpg.Pool, timeout: float | None) -> None:
        self.raw = raw
        self.timeout = timeout
        # asyncpg's queue of free connection slots (private: without it, always timed). An
        # O(1) look, where the pool's public counters walk every connection.
        self._queue: Any = getattr(raw, "_queue", None) or _AlwaysEmpty()

    def acquire(self) -> _Acquire | PoolAcquireContext:
        raw = self.raw
        if self.free():
            # A free connection slot (an idle connection, or room for a new one, whose connect
            # has its own timeout): nothing to wait for, so no timer. asyncpg runs a timed
            # acquire as a task of its own, which would cost every search ~20 µs for nothing.
            return raw.acquire()
        return _Acquire(raw, self.timeout)

    def free(self) -> bool:
        """Whether an acquire would not wait (or waits without limit): asyncpg's own calls then."""
        return self.timeout is None or not self._queue.empty()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        if self.free():  # the hot path: asyncpg's own call, nothing added
            return await self.raw.fetch(query, *args)
        async with _Acquire(self.raw, self.timeout) as connection:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as connection:
            row: asyncpg.Record | None = await connection.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as connection:
            status: str = await connection.execute(query, *args)
            return status


class Session:
    """The pool and dedicated connections of one store."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.dsn: str | None = None
        self.extension_schema: str | None = None
        self.settings: dict[str, str] = {}  # startup parameters of the pool's connections
        # hnsw.ef_search in those settings (a search yielding no more rows needs no SET LOCAL).
        self.base_ef = DEFAULT_EF_SEARCH
        self._pool: asyncpg.Pool | None = None
        self._timed: TimedPool | None = None
        self._generation, self._opened_in = _forks[0], os.getpid()
        self._cancellations: set[asyncio.Task[None]] = set()  # see abandon()

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> TimedPool:
        """The pool as the store's parts use it (acquire_timeout on every call)."""
        if self._timed is None or self._generation != _forks[0]:
            if self._timed is not None:
                raise StoreClosedError(
                    f"this store was opened in process {self._opened_in} and cannot be used "
                    "after fork(): its connections belong to that process",
                    hint="Open a new store in the child process.",
                )
            raise StoreClosedError(
                "the store is not initialized", hint="Call `await store.initialize()` first."
            )
        return self._timed

    @property
    def raw_pool(self) -> asyncpg.Pool:
        """The asyncpg pool itself (``store.pool``: for the user's own queries)."""
        return self.pool.raw

    async def bootstrap_connection(self) -> asyncpg.Connection:
        """A plain connection for the schema set-up, before the pool exists."""
        self.dsn = await resolve_dsn(self.config)
        logger.debug("connecting to %s", redact_dsn(self.dsn))
        try:
            return await asyncpg.connect(self.dsn, timeout=self.config.command_timeout or 60)
        except ValueError as exc:  # the DSN's URL syntax (port, brackets), before any I/O
            raise ConfigurationError(
                f"the connection string is not usable: {redact_dsn(str(exc))}", hint=DSN_HINT
            ) from exc

    async def open(self, extension_schema: str, settings: Mapping[str, str]) -> None:
        assert self.dsn is not None, "bootstrap_connection() first"
        self.extension_schema = extension_schema
        self._use_settings(settings)
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.config.pool_min_size,
            max_size=self.config.pool_max_size,
            command_timeout=self.config.command_timeout,
            init=self._init_connection,
            reset=_keep_session,
            server_settings=self.settings or None,
        )
        self._timed = TimedPool(self._pool, self.config.acquire_timeout)
        self._generation, self._opened_in = _forks[0], os.getpid()

    async def _init_connection(self, connection: asyncpg.Connection) -> None:
        # bit=True: the store reads and writes pgvs.Bit (plain register_vector leaves bit alone).
        await register_vector(connection, schema=self.extension_schema, numpy=True, bit=True)
        await connection.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=_encode_jsonb,
            decoder=json.loads,
            format="text",
        )

    async def apply_settings(self, settings: Mapping[str, str]) -> bool:
        """New store-level query settings: new connections get them as startup parameters and
        the open ones are replaced as they come back. False when nothing changed."""
        pool = self._pool
        if dict(settings) == self.settings or pool is None:
            return False
        self._use_settings(settings)
        pool.set_connect_args(
            self.dsn,
            command_timeout=self.config.command_timeout,
            server_settings=self.settings or None,
        )
        await pool.expire_connections()
        return True

    def _use_settings(self, settings: Mapping[str, str]) -> None:
        self.settings = dict(settings)
        self.base_ef = int(self.settings.get("hnsw.ef_search", DEFAULT_EF_SEARCH))

    async def expire(self) -> None:
        """Replace every pooled connection (idle ones now, busy ones when they come back)."""
        if self._pool is not None:
            await self._pool.expire_connections()

    async def close(self) -> None:
        if self._generation != _forks[0]:
            # A child after fork(): the sockets are the parent's. Forget them, touch nothing.
            self._pool = self._timed = None
            self._cancellations.clear()
            return
        if self._cancellations:
            await asyncio.gather(*self._cancellations, return_exceptions=True)
        pool, self._pool, self._timed = self._pool, None, None
        if pool is not None:
            await pool.close()

    async def fetch_with_settings(
        self, settings: Sequence[tuple[str, str]], sql: str, *args: Any
    ) -> list[asyncpg.Record]:
        """``sql`` in a transaction that first applies ``settings`` with SET LOCAL (without
        settings: a plain pool fetch, one round trip).

        Three round trips (BEGIN + SET LOCALs as one message, the query, COMMIT). SET LOCAL
        ends with the transaction, so nothing reaches the next user of the pooled connection;
        a connection whose transaction could not be ended is terminated, never reused.
        """
        if not settings:
            return await self.pool.fetch(sql, *args)
        async with self.pool.acquire() as connection:
            try:
                await connection.execute(set_local_sql(settings))
                rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
            except asyncio.CancelledError:
                self.abandon(connection)
                raise
            except BaseException:
                try:
                    await connection.execute("ROLLBACK")
                except BaseException:
                    self.abandon(connection)
                raise
            await connection.execute("COMMIT")
            return rows

    def abandon(self, connection: asyncpg.Connection | PoolConnectionProxy) -> None:
        """End a pooled connection left mid-transaction (its statement interrupted).

        Closing the socket alone does not stop the server: a backend running (or waiting for a
        lock) only notices a vanished client when it next writes to it. So the statement is
        cancelled from the pool too, in the background: the caller's cancellation is never
        delayed by it.
        """
        pid = connection.get_server_pid()
        connection.terminate()
        pool = self._pool
        if pool is None:
            return
        task = asyncio.get_running_loop().create_task(self._cancel_backend(pool, pid))
        self._cancellations.add(task)
        task.add_done_callback(self._cancellations.discard)

    async def _cancel_backend(self, pool: asyncpg.Pool, pid: int) -> None:
        try:
            await pool.execute("SELECT pg_cancel_backend($1)", pid)
        except Exception as exc:  # the pool closing, the server gone: nothing left to stop
            logger.debug("could not cancel the statement of backend %s: %s", pid, exc)

    async def connect_dedicated(self) -> asyncpg.Connection:
        """A connection outside the pool, for work that outlives a statement timeout or holds a
        session-level lock (index builds). No command timeout: builds may take hours."""
        self.pool  # noqa: B018 - raises StoreClosedError when not initialized
        assert self.dsn is not None
        connection = await asyncpg.connect(self.dsn, timeout=self.config.command_timeout or 60)
        # Builds speak through notices (pgvector's "hnsw graph no longer fits into
        # maintenance_work_mem after N tuples" is advice worth seeing): pass them to the log.
        connection.add_log_listener(_log_server_message)
        return connection
