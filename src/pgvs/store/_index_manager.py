"""IndexManager: a store's vector index over its lifetime, and what runs in the background.

The start-up check (inside the schema transaction: keep the configured index, build an HNSW one
on an empty table at once, or leave the rest to the background); the automatic build, one
background task per store, started after writes and never making a write wait, which also
repairs the store's INVALID partial indexes; and the re-read, past a TTL, of the partial indexes
searches route to (so indexes other processes create or drop are seen without a restart). What
must stop those tasks first (``drop_index``, ``close``) or wait on them (``wait_for_index``) is
here too. Reads and query defaults are :mod:`._index_catalog`, builds :mod:`._index_ops`, the
choices between them :mod:`pgvs._index_decisions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

import asyncpg

from .. import _index_decisions as decide
from .. import partial, planning
from ..errors import translate_error
from ..results import IndexStatus
from ._context import StoreContext
from ._index_builds import read_catalog
from ._index_ops import IndexOperations
from ._session import Session, logger

__all__ = ["IndexManager"]

# Seconds an automatic build waits after a failure before writes may trigger it again.
_AUTO_RETRY_DELAY = 60.0
# Seconds a store trusts its list of partial indexes; then a search re-reads it in the
# background (so indexes other processes create or drop are seen without a restart).
_PARTIALS_TTL = 60.0


class IndexManager(IndexOperations):
    """The vector index of one store: reads and query defaults (:mod:`._index_catalog`), builds
    (:mod:`._index_ops`), and here the start-up check and what runs in the background."""

    def __init__(self, ctx: StoreContext, session: Session) -> None:
        super().__init__(ctx, session)
        self._refresh: asyncio.Task[None] | None = None  # the re-read of ``partials``
        # Automatic index creation (one background task at a time per store).
        self._task: asyncio.Task[None] | None = None
        self._recheck = False
        self._retry_at = 0.0
        self._error: BaseException | None = None

    async def cancel_background(self) -> None:
        """Stop the automatic build, if one runs: a concurrent build left half done is an
        INVALID index, which the next start-up (or create_index) repairs."""
        for task in (self._task, self._refresh):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._refresh = None

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
        catalog = await read_catalog(self.ctx, connection)
        self.note_partials(catalog)
        if c.index_type == "none" or not c.auto_create_index:
            return False
        broken = [s for s, r in catalog if not s.valid and self._mine(s, r) is not None]
        for status in broken:
            logger.warning(
                "partial vector index %s on %s is INVALID and never used by queries; pgvs will "
                "rebuild it with its own predicate in the background",
                status.name,
                self.ctx.sql.table,
            )
        status = statuses[0]  # the configured type's index
        step = decide.startup_step(c, status, broken_partials=bool(broken))
        if step == "rebuild":
            logger.warning(
                "vector index %s on %s is INVALID (an interrupted CREATE INDEX CONCURRENTLY?) "
                "and is never used by queries; pgvs will rebuild it in the background",
                status.name,
                self.ctx.sql.table,
            )
        if step != "build_now":
            return step != "keep"
        # The build lock, transaction-scoped here: no pgvs builder elsewhere may be creating the
        # same index (two concurrent CREATE INDEX IF NOT EXISTS of one name can fail).
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
            self.ctx.sql.index_lock_key(),
        )
        if not locked or await connection.fetchval(self.ctx.sql.has_rows()):
            return True
        spec = self.index_spec("hnsw", None, rows=0)
        for name, value in planning.build_settings(self.ctx.config):
            await connection.execute("SELECT set_config($1, $2, true)", name, value)
        await connection.execute(spec.create_sql(self.ctx.sql.table, concurrently=False))
        self.ann = True
        logger.info("created %s index %s on %s", spec.index_type, spec.name, self.ctx.sql.table)
        return False

    async def _refresh_partials(self) -> None:
        try:
            await self.read_indexes(self.session.pool)
        except Exception as exc:  # a search never fails for this; the next one retries
            logger.debug("could not re-read the partial indexes of %s: %s", self.ctx.sql.table, exc)

    def route(self, filter: Mapping[str, Any] | None) -> partial.Route | None:
        """The partial index a search with ``filter`` may use (see :func:`pgvs.partial.route`)."""
        loop = asyncio.get_running_loop()
        stale = loop.time() - self._partials_at > _PARTIALS_TTL
        if stale and (self._refresh is None or self._refresh.done()):
            self._partials_at = loop.time()  # one refresh at a time, retried after the TTL
            self._refresh = loop.create_task(self._refresh_partials())
        if not self.partials:
            return None
        ctx = self.ctx
        chosen = partial.route(
            self.partials,
            filter,
            ctx.filter_target,
            domain=ctx.domain if ctx.has_domain else None,
            tenant=ctx.tenant,
        )
        if chosen is None or chosen.name not in self._partial_probes:
            return chosen
        return dataclasses.replace(chosen, probes=self._partial_probes[chosen.name])

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
        await self._repair_partials()
        status = await self.status_of(self.session.pool, self.ctx.sql.index_name(c.index_type))
        step = decide.auto_step(c, status)
        if step == "done":
            self.ann = True
            await self.refresh_session(self.session.pool)  # built by another process, perhaps
            return True
        if step == "wait":
            return False  # someone is on it; a later write checks again
        if step == "count":
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
            settings=planning.build_settings(self.ctx.config),
        )
        return built is not None and built.usable

    async def _repair_partials(self) -> None:
        """Rebuild every INVALID partial index of this store with its own predicate and params."""
        for status, recorded in await read_catalog(self.ctx, self.session.pool):
            predicate = self._mine(status, recorded)
            if predicate is None or status.valid or status.building:
                continue
            assert status.index_type is not None  # _mine checked it
            await self._build(
                status.index_type,
                dict(status.params),
                concurrently=True,
                wait=False,
                settings=planning.build_settings(self.ctx.config),
                predicate=predicate,
                name=status.name,
            )

    async def drop_index(self, name: str | None = None, *, concurrently: bool = False) -> bool:
        """AsyncPGVectorStore.drop_index: a background build is cancelled first."""
        await self.cancel_background()
        connection = await self.session.connect_dedicated()
        try:
            await self.builds.lock(connection, wait=True)
            if name is None:
                self.wanted = False
                targets = [s.name for s in await self.read_statuses(connection) if s.exists]
            else:
                # Only a vector index of this table: drop_index never reaches anything else.
                targets = [s.name for s in await self.read_indexes(connection) if s.name == name]
                if name in self.ctx.sql.index_names():
                    self.wanted = False
            for target in targets:
                await connection.execute(self.ctx.sql.drop_index(target, concurrently=concurrently))
                logger.info("dropped index %s", target)
            self.ann = self.ctx.config.index_type != "none"
            await self.refresh_session(connection)
            return bool(targets)
        finally:
            await connection.close()

    async def wait_for_index(self, timeout: float | None = None) -> IndexStatus:
        """AsyncPGVectorStore.wait_for_index."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if self._error is not None:
            raise self._error
        return await self.index_status()
