"""BuildRunner: how one index build runs, whatever it builds.

The table's build lock (an advisory lock, polled), the statement with its per-build settings
(``SET LOCAL``, or session-level on the dedicated connection for ``CONCURRENTLY``), progress
sampled from ``pg_stat_progress_create_index`` on the pool, and the clean-up of an interrupted
build; and the catalog rows of the table's vector indexes that every decision starts from.
:mod:`._index_ops` decides *what* to build; this part only reads and runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import asyncpg

from .. import indexes as ix
from .. import partial
from ..progress import IndexProgressBar, ProgressCallback
from ..results import IndexProgress, IndexStatus
from ._context import StoreContext
from ._session import Session, logger

__all__ = ["BuildRunner", "read_catalog"]

# Seconds between samples of pg_stat_progress_create_index while a build reports progress.
_PROGRESS_INTERVAL = 0.5
# Seconds between attempts to take the index-build lock when waiting for another builder.
_LOCK_POLL = 0.2
# The table's rows now, as the planner estimates them (reltuples scaled to the current size;
# None before the first ANALYZE or VACUUM), and the session's maintenance_work_mem in bytes.
_SIZING_QUERY = """
    SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
                THEN c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::int)
           END AS rows,
           pg_size_bytes(current_setting('maintenance_work_mem')) AS current
    FROM pg_class c WHERE c.oid = to_regclass($1)
"""


async def read_catalog(
    ctx: StoreContext, connection: Any
) -> list[tuple[IndexStatus, dict[str, Any] | None]]:
    """Every vector index of the table, full ones first, each with what pgvs recorded in
    its comment (None: not a partial index pgvs built)."""
    found = []
    for row in await connection.fetch(ctx.sql.VECTOR_INDEX_LIST_QUERY, ctx.sql.table_text):
        recorded = partial.parse_comment(row["comment"]) if row["predicate"] else None
        status = status_of_row(
            row,
            predicate=row["predicate"],
            where=(recorded.get("where") or {}) if recorded else None,
            domain=recorded.get("domain") if recorded else None,
        )
        found.append((status, recorded))
    return found


def status_of_row(row: Any, **partial_fields: Any) -> IndexStatus:
    """An existing index's status from a row of the catalog queries (``_statements``' index
    queries share these columns); ``partial_fields``: a partial index's predicate and record."""
    return IndexStatus(
        name=row["name"],
        exists=True,
        valid=bool(row["valid"]),
        index_type=row["method"],
        params=ix.parse_reloptions(row["reloptions"]),
        size_bytes=int(row["size_bytes"]),
        opclass=row["opclass"],
        definition=row["definition"],
        building=bool(row["building"]),
        **partial_fields,
    )


class BuildRunner:
    """Runs the index builds of one store (see the module docstring)."""

    def __init__(self, ctx: StoreContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session

    async def lock(self, connection: asyncpg.Connection, *, wait: bool) -> bool:
        """Take the table's index-build lock (session level) on ``connection``.

        Waiting polls ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a
        session blocked inside a statement holds a snapshot, which a concurrent
        ``CREATE INDEX CONCURRENTLY`` (the lock holder's) waits for: a deadlock.
        """
        key = self.ctx.sql.index_lock_key()
        while True:
            if await connection.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key
            ):
                return True
            if not wait:
                return False
            await asyncio.sleep(_LOCK_POLL)

    async def server_memory(self, connection: asyncpg.Connection) -> tuple[int | None, int | None]:
        """(MemTotal, MemAvailable) of the server's machine, read by the server itself (a
        superuser or pg_read_server_files member on Linux); (None, None) when it cannot."""
        try:
            text = await connection.fetchval("SELECT pg_read_file('/proc/meminfo')")
        except asyncpg.PostgresError as exc:  # no privilege, not Linux: memory unknown
            logger.debug("cannot read the server's /proc/meminfo: %s", exc)
            return None, None
        return ix.parse_meminfo(str(text or ""))

    async def sized(
        self,
        connection: asyncpg.Connection,
        target: ix.IndexSpec | IndexStatus,
        settings: Sequence[tuple[str, str]],
    ) -> list[tuple[str, str]]:
        """``settings`` plus a ``maintenance_work_mem`` that holds the whole graph of this HNSW
        build (``target``: the index to create, or the one to rebuild; see
        :func:`pgvs.indexes.build_memory`), unless the call or the config chose one. Outside
        any transaction."""
        if target.index_type != "hnsw" or any(n == "maintenance_work_mem" for n, _ in settings):
            return list(settings)
        # The indexed type is the operator class's prefix: vector_, halfvec_, bit_, sparsevec_.
        # A sparse graph's size follows its non-zero elements, not its dimensions: not sized.
        indexed_type = (target.opclass or "").partition("_")[0]
        if indexed_type not in ("vector", "halfvec", "bit"):
            return list(settings)
        row = await connection.fetchrow(_SIZING_QUERY, self.ctx.sql.table_text)
        rows = row["rows"] if row is not None else None
        if rows is None:
            rows = await connection.fetchval(self.ctx.sql.count_all())
        m = int(target.params.get("m", 16))
        graph = ix.graph_bytes(int(rows), self.ctx.config.indexed_dimensions, indexed_type, m)
        total, available = await self.server_memory(connection)
        current = int(row["current"]) if row is not None else 0
        memory = ix.build_memory(graph, current=current, total=total, available=available)
        if memory.capped:
            logger.warning("index %s on %s: %s", target.name, self.ctx.sql.table, memory.advice())
        if memory.setting is None:
            return list(settings)
        logger.info(
            "index %s: maintenance_work_mem %s for the graph of %d rows",
            target.name,
            memory.setting,
            int(rows),
        )
        return [*settings, ("maintenance_work_mem", memory.setting)]

    async def execute(
        self,
        connection: asyncpg.Connection,
        statement: str,
        *,
        concurrently: bool,
        settings: Sequence[tuple[str, str]],
        progress: ProgressCallback | bool | None,
        description: str,
        target: ix.IndexSpec | IndexStatus | None = None,
    ) -> None:
        """Run one CREATE INDEX / REINDEX with its settings, reporting progress if asked; the
        build of ``target`` gets a ``maintenance_work_mem`` sized to its graph (:meth:`sized`).

        Without CONCURRENTLY the statement runs in a transaction and the settings are
        ``SET LOCAL``. CONCURRENTLY cannot run in a transaction block, so the settings are
        session-level on this dedicated connection and reset right after.
        """
        if target is not None:
            settings = await self.sized(connection, target, settings)
        bar = IndexProgressBar(description) if progress is True else None
        callback: ProgressCallback | None = bar if bar is not None else progress or None  # type: ignore[assignment]

        async def build() -> None:
            if concurrently:
                for name, value in settings:
                    await connection.execute("SELECT set_config($1, $2, false)", name, value)
                try:
                    await connection.execute(statement)
                finally:
                    for name, _ in settings:
                        await connection.execute(f"RESET {name}")  # a fixed setting name
                return
            async with connection.transaction():
                for name, value in settings:
                    await connection.execute("SELECT set_config($1, $2, true)", name, value)
                await connection.execute(statement)

        try:
            if callback is None:
                await build()
            else:
                await self._watch(connection.get_server_pid(), build(), callback)
        finally:
            if bar is not None:
                bar.close()

    async def _watch(
        self, pid: int, build: Coroutine[Any, Any, None], callback: ProgressCallback
    ) -> None:
        """Run ``build`` while sampling its progress from another connection (the pool)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.ensure_future(build)
        last: IndexProgress | None = None
        report: ProgressCallback | None = callback

        def emit(sample: IndexProgress) -> None:
            nonlocal report
            if report is None:
                return
            try:
                report(sample)
            except Exception:  # a broken callback must not abort (or leak into) the build
                logger.exception("index progress callback failed; no more progress reports")
                report = None

        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_PROGRESS_INTERVAL)
                if task.done():
                    break
                row = await self.session.pool.fetchrow(self.ctx.sql.PROGRESS_QUERY, pid)
                sample = ix.progress_from_row(row, loop.time() - started)
                if sample is not None and sample.percent is not None:
                    # pgvector reports heap blocks before it knows the tuple total, so the
                    # raw ratio can fall when it switches counters: never report going back.
                    floor = last.percent if last is not None and last.percent is not None else 0.0
                    sample = dataclasses.replace(sample, percent=max(sample.percent, floor))
                if sample is not None and sample != last:
                    emit(sample)
                    last = sample
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        emit(IndexProgress("done", 100.0, elapsed=loop.time() - started))

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[asyncpg.Connection]:
        """A dedicated connection for a build (never a pooled one: a build outlives any
        pool timeout): :meth:`abandon`-ed when the block is interrupted, closed in any case."""
        connection = await self.session.connect_dedicated()
        try:
            yield connection
        except BaseException:
            await self.abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

    async def abandon(self, connection: asyncpg.Connection) -> None:
        """End a dedicated connection whose build was interrupted (cancelled, or an error).

        Closing the socket alone does not stop the server: a backend busy building an index
        only notices a vanished client when it next writes to it, after the build. So the build
        is cancelled explicitly, from the pool, and the session ends (its lock with it). A
        concurrent build interrupted so leaves an INVALID index, which the next build repairs.
        """
        pid = connection.get_server_pid()
        connection.terminate()
        pool = self.session._pool
        if pool is None:
            return
        cancel = asyncio.ensure_future(pool.execute("SELECT pg_cancel_backend($1)", pid))
        try:
            await asyncio.shield(cancel)  # a second cancellation must not stop this one
        except Exception as exc:  # the build's own error matters more than this one
            logger.debug("could not cancel the index build of backend %s: %s", pid, exc)
