"""Session: the store's connections. The only part that opens, configures or closes them.

One asyncpg pool (pgvs's codecs registered on every connection; the store-level query settings
sent as startup parameters), dedicated connections for work that outlives a statement timeout
(index builds), and the one way a search runs with extra ``SET LOCAL`` settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

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

__all__ = [
    "PoolConnection",
    "Session",
    "SqlBegun",
    "TimedPool",
    "end_failed",
    "logger",
    "retried_read",
    "retry_once",
    "scope",
    "transaction",
]

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
    """A read that fails because its connection is gone runs once more (see retry_once).
    Reads are idempotent; writes are retried only where idempotent (see Writer.add_vectors)."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await retry_once(
            self._session, method.__name__, lambda: method(self, *args, **kwargs)
        )

    return wrapper


async def retry_once(session: Session, name: str, call: Callable[[], Awaitable[R]]) -> R:
    """``await call()``, run once more when it failed because its connection is gone, after
    the pool has dropped every idle connection (a server restart or ``pg_terminate_backend``
    kills them all, and asyncpg only finds out on use). Only for idempotent work: a lost
    COMMIT acknowledgement means the first run may have been applied."""
    try:
        return await call()
    except Exception as exc:
        if not connection_lost(exc) or not session.is_open:
            raise
        logger.info("%s: connection lost (%s); retrying once", name, exc)
        await session.expire()
    return await call()


# What interrupts a statement mid-flight: the caller's cancellation (task.cancel(), asyncio.timeout,
# Ctrl-C through the sync facade) or asyncpg's command_timeout. (asyncio.TimeoutError is not the
# builtin on Python 3.10.)
INTERRUPTS = (asyncio.CancelledError, asyncio.TimeoutError, TimeoutError)

# Cancel requests on their way to the server, each bounded (see PoolConnection).
_cancel_requests: set[asyncio.Task[None]] = set()
_CANCEL_BUDGET = 5.0  # seconds a cancel request may take (its own connection) at most


class PoolConnection(asyncpg.Connection):
    """The pool's connections: an interrupted statement is cancelled on the server by a request
    that nothing waits for, so the store can terminate the connection at once.

    asyncpg answers a timeout or a cancelled task by asking the server to cancel the statement
    and keeping the connection until the server acknowledges: the next use of it (a ROLLBACK,
    the pool's release) waits up to another command_timeout for that, and on a dead network
    the caller's deadline doubles (or its own ``asyncio.timeout`` waits a whole command_timeout
    more). The store's parts instead :func:`abandon` a connection whose statement was
    interrupted (the server rolls its transaction back on the disconnect); the cancel request
    goes out in the background, bounded, and outlives that termination (asyncpg's own request
    would be cancelled with the connection, leaving the statement running on the server).
    """

    def _cancel_current_command(self, waiter: Any, cancel_waiter: Any = None) -> None:
        # Called by asyncpg's protocol on a timeout or a cancelled wait (asyncpg >= 0.29).
        cancel = getattr(asyncpg.connect_utils, "_cancel", None)
        protocol = getattr(self, "_protocol", None)
        try:
            request = {
                "loop": self._loop,  # type: ignore[attr-defined]
                "addr": self._addr,  # type: ignore[attr-defined]
                "params": self._params,  # type: ignore[attr-defined]
                "backend_pid": protocol.backend_pid,  # type: ignore[union-attr]
                "backend_secret": protocol.backend_secret,  # type: ignore[union-attr]
            }
        except AttributeError:
            cancel = None
        if cancel is None:  # not the asyncpg internals this relies on: asyncpg's own way
            super()._cancel_current_command(waiter, cancel_waiter)  # type: ignore[misc]
            return
        task = asyncio.get_running_loop().create_task(_send_cancel(cancel, request, waiter))
        _cancel_requests.add(task)
        task.add_done_callback(_cancel_requests.discard)


async def _send_cancel(
    cancel: Callable[..., Awaitable[None]],
    request: dict[str, Any],
    sent: asyncio.Future[Any] | None,
) -> None:
    try:
        await asyncio.wait_for(cancel(**request), _CANCEL_BUDGET)
    except Exception as exc:  # the server gone, the network dead: nothing left to stop
        logger.debug("cancel request for backend %s failed: %s", request["backend_pid"], exc)
    finally:
        if sent is not None and not sent.done():
            sent.set_result(None)


def abandon(connection: Any) -> None:
    """Terminate a pooled connection (or its pool proxy) whose statement was interrupted: its
    cancel request is on its way already (see PoolConnection); nothing when it is closed or
    already back in the pool."""
    if getattr(connection, "_con", connection) is None or connection.is_closed():
        return
    connection.terminate()


async def end_failed(connection: Any, transaction: Any, error: BaseException) -> None:
    """End ``transaction`` after ``error``, never masking it and never waiting on a connection
    that may be dead: an interrupted one (cancelled, timed out) is abandoned (the server rolls
    back on the disconnect), a failed one rolled back, or abandoned when even that fails."""
    if isinstance(error, INTERRUPTS):
        abandon(connection)
        return
    if getattr(connection, "_con", connection) is None or connection.is_closed():
        return
    try:
        await transaction.rollback()
    except BaseException:
        abandon(connection)
        raise


@contextlib.asynccontextmanager
async def transaction(connection: Any) -> AsyncIterator[None]:
    """``connection.transaction()`` (a savepoint when nested) that ends through
    :func:`end_failed`: an interrupted block neither waits nor hides its exception."""
    block = connection.transaction()
    await block.start()
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await end_failed(connection, block, exc)
        raise
    await block.commit()


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


class _Lease:
    """A pooled connection for one ``async with``: acquired within the store's
    ``acquire_timeout`` (running out of it is a PoolTimeoutError, never an unbounded wait on an
    exhausted pool), and abandoned, not released, when the block was interrupted mid-statement
    (the release would otherwise wait on the connection; see PoolConnection)."""

    __slots__ = ("_context", "_timeout")

    def __init__(self, raw: asyncpg.Pool, timeout: float | None) -> None:
        # No free slot: a timed acquire. A free one (an idle connection, or room for a new one,
        # whose connect has its own timeout) needs no timer, which asyncpg would run as a task
        # of its own (~20 µs).
        self._context = raw.acquire(timeout=timeout) if timeout is not None else raw.acquire()
        self._timeout = timeout

    async def __aenter__(self) -> PoolConnectionProxy:
        try:
            connection: PoolConnectionProxy = await self._context.__aenter__()
        except asyncio.TimeoutError as exc:
            if self._timeout is None:
                raise  # the connect's own timeout: a QueryTimeoutError
            raise PoolTimeoutError(
                f"no pooled connection came free within {self._timeout:g} s",
                hint="Raise pool_max_size or acquire_timeout, or look for connections held "
                "elsewhere (store.stats() shows the pool).",
            ) from exc
        return connection

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and isinstance(exc, INTERRUPTS):
            connection = self._context.connection
            if connection is not None:
                abandon(connection)
        await self._context.__aexit__(exc_type, exc, tb)


# Forks seen by this process: a store whose pool was opened before a fork() holds sockets the
# parent shares, so in the child it must refuse every use and close nothing (see Session.pool).
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


class _AlwaysEmpty:
    def empty(self) -> bool:
        return True


# Row-level security mode: the tenant a transaction may see, for the table's policy
# (``current_setting('pgvs.domain', true)``). Transaction-scoped: it ends with the transaction,
# so a pooled connection outside the store's own transactions sees no tenant at all.
SET_DOMAIN_SQL = "SELECT set_config('pgvs.domain', $1, true)"


async def scope(connection: Any, domain: str | None) -> None:
    """Set the tenant of the open transaction on ``connection`` (row-level security mode)."""
    if domain is not None:
        await connection.execute(SET_DOMAIN_SQL, domain)


class TimedPool:
    """The store's view of its asyncpg pool: the same calls, each acquiring within
    ``acquire_timeout``. (asyncpg's own ``Pool.fetch`` and friends acquire without a timeout.)

    With ``domain`` (row-level security mode) every call runs in a transaction that first sets
    that tenant (two round trips more); callers that open transactions of their own call
    :func:`scope` after BEGIN.
    """

    __slots__ = ("_queue", "domain", "raw", "timeout")

    def __init__(self, raw: asyncpg.Pool, timeout: float | None, domain: str | None = None) -> None:
        self.raw = raw
        self.timeout = timeout
        self.domain = domain
        # asyncpg's queue of free connection slots (private: without it, always timed). An
        # O(1) look, where the pool's public counters walk every connection.
        self._queue: Any = getattr(raw, "_queue", None) or _AlwaysEmpty()

    def acquire(self) -> _Lease:
        return _Lease(self.raw, None if self.free() else self.timeout)

    def free(self) -> bool:
        """Whether an acquire would not wait (or waits without limit)."""
        return self.timeout is None or not self._queue.empty()

    async def _scoped(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        async with self.acquire() as connection, transaction(connection):
            await connection.execute(SET_DOMAIN_SQL, self.domain)
            return await getattr(connection, method)(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        # The hot path (the plain search): asyncpg's own acquire when a slot is free, and no
        # frame beyond this one.
        if self.domain is not None:
            found: list[asyncpg.Record] = await self._scoped("fetch", query, args)
            return found
        if self.free():
            async with self.raw.acquire() as connection:
                try:
                    rows: list[asyncpg.Record] = await connection.fetch(query, *args)
                except INTERRUPTS:
                    abandon(connection)
                    raise
                return rows
        async with self.acquire() as connection:
            rows = await connection.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        if self.domain is not None:
            found: asyncpg.Record | None = await self._scoped("fetchrow", query, args)
            return found
        async with self.acquire() as connection:
            row: asyncpg.Record | None = await connection.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        if self.domain is not None:
            return await self._scoped("fetchval", query, args)
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        if self.domain is not None:
            tag: str = await self._scoped("execute", query, args)
            return tag
        async with self.acquire() as connection:
            status: str = await connection.execute(query, *args)
            return status


class SqlBegun:
    """The transaction a ``BEGIN`` in SQL opened, as :func:`end_failed` ends one."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def rollback(self) -> None:
        await self.connection.execute("ROLLBACK")


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
            timeout=self.connect_timeout,
            connection_class=PoolConnection,
            init=self._init_connection,
            reset=_keep_session,
            server_settings=self.settings or None,
        )
        rls = self.config.row_level_security
        self._timed = TimedPool(
            self._pool, self.config.acquire_timeout, self.config.domain_id if rls else None
        )
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
            timeout=self.connect_timeout,
            server_settings=self.settings or None,
        )
        await pool.expire_connections()
        return True

    @property
    def connect_timeout(self) -> float:
        """Seconds a new connection may take: within command_timeout, so a call that needs one
        on a dead network fails as late as a statement would (asyncpg's default is 60)."""
        return min(self.config.command_timeout or 60.0, 60.0)

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
            return
        # The statements this store abandoned are cancelled before it reports closed.
        loop = asyncio.get_running_loop()
        pending = [task for task in _cancel_requests if task.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
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
        a connection whose transaction could not be ended is abandoned, never reused.
        """
        if not settings:
            return await self.pool.fetch(sql, *args)
        async with self.pool.acquire() as connection:
            try:
                await connection.execute(set_local_sql(settings))
                await scope(connection, self.pool.domain)
                rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
            except BaseException as exc:
                await end_failed(connection, SqlBegun(connection), exc)
                raise
            await connection.execute("COMMIT")
            return rows

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
