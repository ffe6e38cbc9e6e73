"""IndexManager: the lifecycle of a store's vector index.

Builds take turns under a session-level advisory lock on a dedicated connection and the catalog
decides what to do (keep a valid index, repair an INVALID one, build a missing one), so any number
of processes may ask at once. Progress is sampled from ``pg_stat_progress_create_index`` on the
pool. The automatic build runs as one background task per store, started after writes; it never
makes a write wait. What the index is decides the store's query defaults, so this part also keeps
them (``ann``, IVFFlat's ``lists``, the session settings) in step with the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np

from .. import indexes as ix
from .. import planning, tuning
from .._sql import quote_literal
from ..errors import ConfigurationError, DatabaseError, translate_error
from ..progress import IndexProgressBar, ProgressCallback
from ..results import IndexProgress, IndexStatus
from ..search import reduction
from ._context import StoreContext
from ._session import Session, logger

__all__ = ["IndexManager"]

# Seconds between samples of pg_stat_progress_create_index while a build reports progress.
_PROGRESS_INTERVAL = 0.5
# Seconds between attempts to take the index-build lock when waiting for another builder.
_LOCK_POLL = 0.2
# Seconds an automatic build waits after a failure before writes may trigger it again.
_AUTO_RETRY_DELAY = 60.0


class IndexManager:
    """The vector index of one store: status, builds (manual and automatic), query defaults."""

    def __init__(self, ctx: StoreContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        # Whether pgvs manages a vector index here (configured, or one of its indexes exists):
        # ANN-only settings and pgvs's query defaults apply then.
        self.ann = ctx.config.index_type != "none"
        self.lists: int | None = None  # lists of the store's IVFFlat index, if any
        self.tuned: dict[str, str] = {}  # what tune(apply=True) left on the indexes' comments
        self.iterative = True  # the server's pgvector has iterative scans (set at bootstrap)
        # Automatic index creation (one background task at a time per store).
        self._task: asyncio.Task[None] | None = None
        self.wanted = False
        self._recheck = False
        self._retry_at = 0.0
        self._error: BaseException | None = None

    async def cancel_background(self) -> None:
        """Stop the automatic build, if one runs: a concurrent build left half done is an
        INVALID index, which the next start-up (or create_index) repairs."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def initial_index(self, connection: asyncpg.Connection) -> bool:
        """At start-up, inside the schema transaction: is the configured index there and valid?

        An HNSW index on an empty table is built right here (instant). Everything else (a
        populated table, IVFFlat, an INVALID index to repair) is left to the background task:
        returns True when that is due.
        """
        c = self.ctx.config
        statuses = await self.read_statuses(connection)
        self.note_statuses(statuses)
        await self.load_tuned(connection)
        if c.index_type == "none" or not c.auto_create_index:
            return False
        status = statuses[0]  # the configured type's index
        if status.usable:
            return False
        if status.exists:
            logger.warning(
                "vector index %s on %s is INVALID (an interrupted CREATE INDEX CONCURRENTLY?) "
                "and is never used by queries; pgvs will rebuild it in the background",
                status.name,
                self.ctx.sql.table,
            )
            return True
        if c.index_type != "hnsw" or c.pca:  # IVFFlat and PCA learn from rows: later
            return True
        # The build lock, transaction-scoped here: no pgvs builder elsewhere may be creating the
        # same index (two concurrent CREATE INDEX IF NOT EXISTS of one name can fail).
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
            self.ctx.sql.index_lock_key(),
        )
        if not locked or await connection.fetchval(self.ctx.sql.has_rows()):
            return True
        spec = self.index_spec("hnsw", None, rows=0)
        for name, value in self.build_settings(None, None):
            await connection.execute("SELECT set_config($1, $2, true)", name, value)
        await connection.execute(spec.create_sql(self.ctx.sql.table, concurrently=False))
        self.ann = True
        logger.info("created %s index %s on %s", spec.index_type, spec.name, self.ctx.sql.table)
        return False

    async def ensure_projection(self, connection: Any) -> None:
        """A PCA store's projection function exists (the provisional prefix until fitted)."""
        sql, config = self.ctx.sql, self.ctx.config
        signature = f"{sql.projection}({config.vector_type})"
        if await connection.fetchval("SELECT to_regprocedure($1) IS NOT NULL", signature):
            return
        assert config.index_dimensions is not None
        components = reduction.prefix_components(config.dimensions, config.index_dimensions)
        await self._write_projection(connection, components, reduction.PROVISIONAL)

    async def fit_projection(self, connection: Any) -> None:
        """Fit the PCA projection on a random sample of the stored rows and replace the
        function; with too few rows (at most index_dimensions) keep what there is."""
        sql, config = self.ctx.sql, self.ctx.config
        assert config.index_dimensions is not None
        # On the pool: its connections decode vectors (the dedicated one has no pgvs codecs).
        rows = await self.session.pool.fetch(
            f"SELECT {sql.col('embedding')} AS v FROM {sql.table} "  # noqa: S608 - quoted names
            "ORDER BY random() LIMIT $1::integer",
            reduction.SAMPLE_ROWS,
        )
        if len(rows) <= config.index_dimensions:
            logger.warning(
                "PCA index on %s: %d rows are too few to fit %d dimensions; the projection "
                "stays the prefix until the index is rebuilt with more rows",
                sql.table,
                len(rows),
                config.index_dimensions,
            )
            return
        sample = np.stack([np.asarray(row["v"], dtype=np.float32) for row in rows])
        components = reduction.fit_components(sample, config.index_dimensions)
        await self._write_projection(connection, components, reduction.FITTED)
        logger.info("fitted the PCA projection of %s on %d rows", sql.table, len(rows))

    async def _write_projection(self, connection: Any, components: Any, comment: str) -> None:
        sql, config = self.ctx.sql, self.ctx.config
        assert sql.projection is not None
        async with connection.transaction():
            await connection.execute(
                reduction.function_sql(sql.projection, config.vector_type, components)
            )
            await connection.execute(
                f"COMMENT ON FUNCTION {sql.projection}({config.vector_type}) IS "
                f"{quote_literal(comment)}"
            )

    def index_spec(
        self, index_type: str, params: Mapping[str, Any] | None, *, rows: int
    ) -> ix.IndexSpec:
        return planning.index_spec(
            self.ctx.config,
            name=self.ctx.sql.index_name(index_type),
            column_sql=self.ctx.sql.col("embedding"),
            index_type=index_type,
            params=params,
            rows=rows,
            projection=self.ctx.sql.projection,
        )

    def build_settings(
        self, maintenance_work_mem: str | int | None, max_parallel_maintenance_workers: int | None
    ) -> list[tuple[str, str]]:
        """Per-build settings: the call's, else the store's; validated as config keys."""
        checked = self.ctx.config
        if maintenance_work_mem is not None or max_parallel_maintenance_workers is not None:
            overrides: dict[str, Any] = {}
            if maintenance_work_mem is not None:
                overrides["maintenance_work_mem"] = maintenance_work_mem
            if max_parallel_maintenance_workers is not None:
                overrides["max_parallel_maintenance_workers"] = max_parallel_maintenance_workers
            checked = checked.replace(**overrides)
        return ix.build_settings(
            checked.maintenance_work_mem, checked.max_parallel_maintenance_workers
        )

    async def read_statuses(self, connection: Any) -> list[IndexStatus]:
        """The status of every index name this store may own, the configured type's first."""
        names = self.ctx.sql.index_names()
        rows = await connection.fetch(
            self.ctx.sql.INDEX_STATUS_QUERY, self.ctx.sql.table_text, names
        )
        by_name = {row["name"]: row for row in rows}
        statuses = []
        for name in names:
            row = by_name.get(name)
            if row is None:
                statuses.append(IndexStatus(name=name, exists=False))
                continue
            statuses.append(
                IndexStatus(
                    name=name,
                    exists=True,
                    valid=bool(row["valid"]),
                    index_type=row["method"],
                    params=ix.parse_reloptions(row["reloptions"]),
                    size_bytes=int(row["size_bytes"]),
                    opclass=row["opclass"],
                    definition=row["definition"],
                    building=bool(row["building"]),
                )
            )
        return statuses

    def note_statuses(self, statuses: Sequence[IndexStatus]) -> None:
        """Remember what the query defaults depend on: an index exists, IVFFlat's lists."""
        if any(status.exists for status in statuses):
            self.ann = True
        self.lists = next(
            (
                int(status.params.get("lists", 100))  # pgvector's default lists
                for status in statuses
                if status.exists and status.index_type == "ivfflat"
            ),
            None,
        )

    def desired_session(self) -> dict[str, str]:
        return planning.session_settings(
            self.ctx.config, managed=self.ann, lists=self.lists, tuned=self.tuned
        )

    async def load_tuned(self, connection: Any) -> None:
        """Read the settings ``tune(apply=True)`` persisted on this store's indexes' comments."""
        rows = await connection.fetch(
            tuning.TUNED_COMMENTS_QUERY, self.ctx.config.schema, self.ctx.sql.index_names()
        )
        self.tuned = {}
        for row in rows:
            self.tuned.update(tuning.parse_tuned_comment(row["comment"]))

    async def refresh_session(self, connection: Any) -> None:
        """Re-read the store's indexes and bring the pool's query defaults in step with them."""
        self.note_statuses(await self.read_statuses(connection))
        await self.load_tuned(connection)
        await self.session.apply_settings(self.desired_session())

    async def status_named(self, connection: Any, name: str) -> IndexStatus:
        for status in await self.read_statuses(connection):
            if status.name == name:
                return status
        raise AssertionError(name)  # pragma: no cover - index_names() lists every name

    async def _lock_builds(self, connection: asyncpg.Connection, *, wait: bool) -> bool:
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

    async def _execute_build(
        self,
        connection: asyncpg.Connection,
        statement: str,
        *,
        concurrently: bool,
        settings: Sequence[tuple[str, str]],
        progress: ProgressCallback | bool | None,
        description: str,
    ) -> None:
        """Run one CREATE INDEX / REINDEX with its settings, reporting progress if asked.

        Without CONCURRENTLY the statement runs in a transaction and the settings are
        ``SET LOCAL``. CONCURRENTLY cannot run in a transaction block, so the settings are
        session-level on this dedicated connection and reset right after.
        """
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
                await self._watch_build(connection.get_server_pid(), build(), callback)
        finally:
            if bar is not None:
                bar.close()

    async def _watch_build(
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

    async def _build(
        self,
        index_type: str,
        params: Mapping[str, Any] | None,
        *,
        concurrently: bool,
        wait: bool,
        settings: Sequence[tuple[str, str]],
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus | None:
        """Make the index of ``index_type`` exist and be valid; the catalog decides, under the lock.

        ``wait=False`` (automatic builds) gives up when another builder holds the lock (None).
        An existing valid index is kept (with explicit, different ``params`` that is an error);
        an INVALID one is reported, dropped and rebuilt, never kept.
        """
        self.index_spec(index_type, params, rows=0)  # refuse impossible requests before I/O
        name = self.ctx.sql.index_name(index_type)
        connection = await self.session.connect_dedicated()
        try:
            if not await self._lock_builds(connection, wait=wait):
                return None
            status = await self.status_named(connection, name)
            if status.usable:
                self.ann = True
                await self.refresh_session(connection)
                wanted = ix.check_index_params(index_type, params or {})
                different = {k: v for k, v in wanted.items() if status.params.get(k) != v}
                if params is not None and different:
                    raise ConfigurationError(
                        f"index {name} exists with {dict(status.params)}, not {different}",
                        hint="drop_index() first to rebuild it with other parameters.",
                    )
                return status
            if status.exists:
                if status.building:
                    # Not a pgvs builder (they hold the lock we hold): leave its build alone.
                    raise DatabaseError(
                        f"index {name} is being built by another session outside pgvs",
                        hint="Wait for that build to finish, or cancel it, then retry.",
                    )
                logger.warning(
                    "vector index %s on %s is INVALID (an interrupted concurrent build?); "
                    "dropping and rebuilding it",
                    name,
                    self.ctx.sql.table,
                )
                await connection.execute(self.ctx.sql.drop_index(name, concurrently=concurrently))
            rows = 0
            if index_type == "ivfflat" and "lists" not in (
                params if params is not None else self.ctx.config.index_params
            ):
                rows = int(await connection.fetchval(self.ctx.sql.count_all()))
            if self.ctx.config.pca:
                # No index depends on the projection now (this build makes the only one): fit
                # it on the rows as they are.
                await self.fit_projection(connection)
            spec = self.index_spec(index_type, params, rows=rows)
            logger.info("building %s index %s on %s", index_type, name, self.ctx.sql.table)
            await self._execute_build(
                connection,
                spec.create_sql(self.ctx.sql.table, concurrently=concurrently),
                concurrently=concurrently,
                settings=settings,
                progress=progress,
                description=f"{index_type} index",
            )
            status = await self.status_named(connection, name)
            if not status.usable:
                raise DatabaseError(
                    f"index {name} was built but is not valid",
                    hint="Check the server log; reindex() or drop_index() and retry.",
                )
            self.ann = True
            await self.refresh_session(connection)
            return status
        except BaseException:
            await self._abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

    async def _abandon(self, connection: asyncpg.Connection) -> None:
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

    def after_write(self) -> None:
        """Every write path calls this once its rows are committed: while the automatic index is
        still due, it starts a cheap check in the background. It never waits for a build."""
        if self.wanted:
            self.kick()

    def kick(self) -> None:
        """Start (or ask for another pass of) the automatic build; never waits for it."""
        task = self._task
        if task is not None and not task.done():
            self._recheck = True
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return
        self._task = loop.create_task(
            self._auto_index(), name=f"pgvs-index-{self.ctx.config.table_name}"
        )

    async def _auto_index(self) -> None:
        """The background task: check, and build when due, until the index is valid or a check
        finds nothing to do (another pass runs if writes came in meanwhile)."""
        try:
            while True:
                self._recheck = False
                if await self._auto_index_once():
                    self.wanted = False
                    self._error = None
                    return
                if not self._recheck:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate_error(exc, operation="create_index")
            self._error = error
            self._retry_at = asyncio.get_running_loop().time() + _AUTO_RETRY_DELAY
            logger.warning("automatic index build on %s failed: %s", self.ctx.sql.table, error)

    async def _auto_index_once(self) -> bool:
        c = self.ctx.config
        status = await self.status_named(self.session.pool, self.ctx.sql.index_name(c.index_type))
        if status.usable:
            self.ann = True
            await self.refresh_session(self.session.pool)  # built by another process, perhaps
            return True
        if status.building:
            return False  # someone is on it; a later write checks again
        if (c.index_type == "ivfflat" or c.pca) and not status.exists:
            rows = await self.session.pool.fetchval(
                self.ctx.sql.rows_at_least(), c.min_rows_for_index
            )
            if rows < c.min_rows_for_index:
                return False
        built = await self._build(
            c.index_type,
            None,
            concurrently=True,  # the table is live: never block its writers
            wait=False,
            settings=self.build_settings(None, None),
        )
        return built is not None and built.usable

    async def create_index(
        self,
        index_type: str | None = None,
        params: Mapping[str, int] | None = None,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """AsyncPGVectorStore.create_index."""
        chosen = index_type if index_type is not None else self.ctx.config.index_type
        if chosen == "none":
            raise ConfigurationError(
                "create_index() needs an index type: this store's index_type is 'none'",
                hint="Pass 'hnsw' or 'ivfflat'.",
            )
        settings = self.build_settings(maintenance_work_mem, max_parallel_maintenance_workers)
        status = await self._build(
            chosen,
            params,
            concurrently=concurrently,
            wait=True,
            settings=settings,
            progress=progress,
        )
        assert status is not None  # wait=True always ends with a status or an error
        if chosen == self.ctx.config.index_type:
            self.wanted = False
        return status

    async def drop_index(self, *, concurrently: bool = False) -> bool:
        """AsyncPGVectorStore.drop_index: a background build is cancelled first."""
        await self.cancel_background()
        self.wanted = False
        connection = await self.session.connect_dedicated()
        try:
            await self._lock_builds(connection, wait=True)
            dropped = False
            for status in await self.read_statuses(connection):
                if status.exists:
                    await connection.execute(
                        self.ctx.sql.drop_index(status.name, concurrently=concurrently)
                    )
                    logger.info("dropped index %s", status.name)
                    dropped = True
            self.ann = self.ctx.config.index_type != "none"
            await self.refresh_session(connection)
            return dropped
        finally:
            await connection.close()

    async def reindex(
        self,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """AsyncPGVectorStore.reindex."""
        settings = self.build_settings(maintenance_work_mem, max_parallel_maintenance_workers)
        connection = await self.session.connect_dedicated()
        try:
            await self._lock_builds(connection, wait=True)
            statuses = [s for s in await self.read_statuses(connection) if s.exists]
            if not statuses:
                return (await self.read_statuses(connection))[0]
            for status in statuses:
                if status.building:
                    raise DatabaseError(
                        f"index {status.name} is being built by another session outside pgvs",
                        hint="Wait for that build to finish, or cancel it, then retry.",
                    )
                await self._execute_build(
                    connection,
                    self.ctx.sql.reindex(status.name, concurrently=concurrently),
                    concurrently=concurrently,
                    settings=settings,
                    progress=progress,
                    description=f"reindex {status.index_type}",
                )
            await self.refresh_session(connection)
            return await self.status_named(connection, statuses[0].name)
        except BaseException:
            await self._abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

    async def index_status(self) -> IndexStatus:
        """AsyncPGVectorStore.index_status."""
        statuses = await self.read_statuses(self.session.pool)
        return next((status for status in statuses if status.exists), statuses[0])

    async def wait_for_index(self, timeout: float | None = None) -> IndexStatus:
        """AsyncPGVectorStore.wait_for_index."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if self._error is not None:
            raise self._error
        return await self.index_status()
