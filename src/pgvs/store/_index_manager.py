"""IndexManager: the lifecycle of a store's vector index.

Builds take turns under a session-level advisory lock on a dedicated connection and the catalog
decides what to do (keep a valid index, repair an INVALID one, build a missing one), so any number
of processes may ask at once. Progress is sampled from ``pg_stat_progress_create_index`` on the
pool. The automatic build runs as one background task per store, started after writes; it never
makes a write wait. What the index is decides the store's query defaults, so this part also keeps
them (``ann``, IVFFlat's ``lists``, the session settings) in step with the catalog.

Partial indexes (``create_index(where=..., domain=...)``, predicates from :mod:`pgvs.partial`)
go through the same builder; their ``COMMENT`` records the filter document they were built for,
so any store on the table recognises, routes searches to, and repairs them. The routable ones are
kept in ``partials`` (refreshed at start-up, after every index operation, by ``list_indexes()``
and, past a TTL, in the background), so a search decides its route without a catalog round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from .. import indexes as ix
from .. import partial, planning, tuning
from .._sql import quote_ident, quote_literal
from ..errors import ConfigurationError, DatabaseError, ValidationError, translate_error
from ..progress import ProgressCallback
from ..results import IndexStatus
from ._context import StoreContext
from ._index_builds import BuildRunner, read_catalog
from ._projection import fit_projection
from ._session import Session, logger

__all__ = ["IndexManager"]

# Seconds an automatic build waits after a failure before writes may trigger it again.
_AUTO_RETRY_DELAY = 60.0
# Seconds a store trusts its list of partial indexes; then a search re-reads it in the
# background (so indexes other processes create or drop are seen without a restart).
_PARTIALS_TTL = 60.0


class IndexManager:
    """The vector index of one store: status, builds (manual and automatic), query defaults."""

    def __init__(self, ctx: StoreContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        self.builds = BuildRunner(ctx, session)
        # Whether pgvs manages a vector index here (configured, or one of its indexes exists):
        # ANN-only settings and pgvs's query defaults apply then.
        self.ann = ctx.config.index_type != "none"
        self.lists: int | None = None  # lists of the store's IVFFlat index, if any
        self.tuned: dict[str, str] = {}  # what tune(apply=True) left on the indexes' comments
        self.iterative = True  # the server's pgvector has iterative scans (set at bootstrap)
        # Valid pgvs partial indexes searches may route to: (name, predicate, size in bytes).
        self.partials: list[tuple[str, partial.Predicate, int]] = []
        self._partials_at = -_PARTIALS_TTL
        self._partial_probes: dict[str, int] = {}  # IVFFlat partial indexes: sqrt(their lists)
        self._refresh: asyncio.Task[None] | None = None
        # Automatic index creation (one background task at a time per store).
        self._task: asyncio.Task[None] | None = None
        self.wanted = False
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
        if status.usable or broken:
            return bool(broken)
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
        for name, value in planning.build_settings(self.ctx.config):
            await connection.execute("SELECT set_config($1, $2, true)", name, value)
        await connection.execute(spec.create_sql(self.ctx.sql.table, concurrently=False))
        self.ann = True
        logger.info("created %s index %s on %s", spec.index_type, spec.name, self.ctx.sql.table)
        return False

    def index_spec(
        self,
        index_type: str,
        params: Mapping[str, Any] | None,
        *,
        rows: int,
        name: str | None = None,
    ) -> ix.IndexSpec:
        return planning.index_spec(
            self.ctx.config,
            name=name or self.ctx.sql.index_name(index_type),
            column_sql=self.ctx.sql.col("embedding"),
            index_type=index_type,
            params=params,
            rows=rows,
            projection=self.ctx.sql.projection,
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

    def predicate(self, where: Mapping[str, Any] | None, domain: str | None) -> partial.Predicate:
        ctx = self.ctx
        return partial.compile_predicate(
            where,
            domain,
            ctx.filter_target,
            domain_sql=ctx.sql.col("domain_id") if ctx.has_domain else None,
        )

    async def read_indexes(self, connection: Any) -> list[IndexStatus]:
        catalog = await read_catalog(self.ctx, connection)
        self.note_partials(catalog)
        return [status for status, _ in catalog]

    async def status_of(self, connection: Any, name: str) -> IndexStatus:
        for status in await self.read_indexes(connection):
            if status.name == name:
                return status
        return IndexStatus(name=name, exists=False)

    def _mine(
        self, status: IndexStatus, recorded: dict[str, Any] | None
    ) -> partial.Predicate | None:
        """The predicate of a partial index pgvs built for this store's configuration: its
        comment compiles, here, to the same predicate, type and quantization, on the operator
        class this store searches with. None for anything else (never routed to or repaired)."""
        if recorded is None or status.index_type not in ix.INDEX_TYPES:
            return None
        try:
            predicate = self.predicate(status.where or None, status.domain)
            spec = self.index_spec(status.index_type, {}, rows=0, name=status.name)
        except (ValidationError, ConfigurationError):
            return None  # written for another configuration of this table
        expected = partial.parse_comment(predicate.comment(spec.index_type, spec.quantization))
        return predicate if status.opclass == spec.opclass and recorded == expected else None

    def note_partials(self, catalog: Sequence[tuple[IndexStatus, dict[str, Any] | None]]) -> None:
        """Keep the partial indexes searches may route to: valid, and this store's (``_mine``)."""
        routable = []
        probes: dict[str, int] = {}
        for status, recorded in catalog:
            if recorded is not None:
                self.ann = True
            predicate = self._mine(status, recorded) if status.valid else None
            if predicate is None:
                continue
            routable.append((status.name, predicate, status.size_bytes))
            if status.index_type == "ivfflat":
                lists = int(planning.effective_params("ivfflat", status.params)["lists"])
                probes[status.name] = ix.default_probes(lists)
        self.partials, self._partial_probes = routable, probes
        self._partials_at = asyncio.get_running_loop().time()

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
        await self.read_indexes(connection)  # the partial indexes searches may route to
        await self.session.apply_settings(self.desired_session())

    async def _build(
        self,
        index_type: str,
        params: Mapping[str, Any] | None,
        *,
        concurrently: bool,
        wait: bool,
        settings: Sequence[tuple[str, str]],
        progress: ProgressCallback | bool | None = None,
        predicate: partial.Predicate | None = None,
        name: str | None = None,
    ) -> IndexStatus | None:
        """Make the index of ``index_type`` exist and be valid; the catalog decides, under the lock.

        ``wait=False`` (automatic builds) gives up when another builder holds the lock (None).
        An existing valid index is kept (with explicit ``params`` whose effective values differ,
        or another predicate, that is an error); an INVALID one is reported, dropped and rebuilt,
        never kept. With ``predicate`` the index is partial, named ``name`` or after it.
        """
        derived = name is None
        if name is None:
            name = (
                self.ctx.sql.index_name(index_type)
                if predicate is None
                else self.ctx.sql.partial_index_name(index_type, predicate.digest)
            )
        spec = self.index_spec(index_type, params, rows=0, name=name)  # refuse before I/O
        comment = predicate.comment(spec.index_type, spec.quantization) if predicate else None
        connection = await self.session.connect_dedicated()
        try:
            if not await self.builds.lock(connection, wait=wait):
                return None
            status, recorded = next(
                (pair for pair in await read_catalog(self.ctx, connection) if pair[0].name == name),
                (IndexStatus(name=name, exists=False), None),
            )
            # An index of that name must be the one asked for: type, partial or not, predicate
            # (a comment-less partial index is accepted only under its derived, digest name).
            ours = predicate is None or (recorded is None and derived)
            if status.exists and (
                status.index_type != index_type
                or (predicate is None) != (status.predicate is None)
                or not (ours or recorded == partial.parse_comment(comment))
            ):
                raise ConfigurationError(
                    f"index {name} exists as another index: {status.definition}",
                    hint="drop_index(name) first, or choose another name.",
                )
            if status.usable:
                self.ann = True
                if comment is not None and recorded is None:
                    # Built, but the comment of a concurrent build never landed: the derived
                    # name carries the predicate's digest, so this is the index asked for.
                    await connection.execute(
                        self.ctx.sql.comment_on_index(name, quote_literal(comment))
                    )
                await self.refresh_session(connection)
                # Compare effective values: {} and {"m": 16, "ef_construction": 64} are the
                # same HNSW index (pgvector's defaults), so only a real difference is an error.
                have = planning.effective_params(index_type, status.params)
                wanted = ix.check_index_params(index_type, params or {})
                different = {k: v for k, v in wanted.items() if have.get(k) != v}
                if params is not None and different:
                    raise ConfigurationError(
                        f"index {name} exists with {have}, not {different}",
                        hint="drop_index() first to rebuild it with other parameters.",
                    )
                return await self.status_of(connection, name)
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
            if predicate is not None and not await connection.fetchval(
                self.ctx.sql.rows_where(predicate.sql, limit=True)
            ):
                logger.warning(
                    "partial index %s on %s: no row matches %s yet; building it anyway (rows "
                    "that match later are indexed as they are written)",
                    name,
                    self.ctx.sql.table,
                    predicate.sql,
                )
            elif index_type == "ivfflat" and "lists" not in (
                params if params is not None else self.ctx.config.index_params
            ):
                counted = (
                    self.ctx.sql.count_all()
                    if predicate is None
                    else self.ctx.sql.rows_where(predicate.sql, limit=False)
                )
                rows = int(await connection.fetchval(counted))
            if self.ctx.config.pca and predicate is None and not self.partials:
                # No index depends on the projection now (this build makes the only one):
                # fit it on the rows as they are.
                await fit_projection(self.ctx, self.session, connection)
            spec = self.index_spec(index_type, params, rows=rows, name=name)
            if predicate is None:
                statement = spec.create_sql(self.ctx.sql.table, concurrently=concurrently)
            else:
                statement = self.ctx.sql.create_partial_index(
                    spec, predicate.sql, concurrently=concurrently
                )
            logger.info("building %s index %s on %s", index_type, name, self.ctx.sql.table)
            await self.builds.execute(
                connection,
                statement,
                concurrently=concurrently,
                settings=settings,
                progress=progress,
                description=f"{index_type} index",
                target=spec,  # maintenance_work_mem sized to its graph, unless given
            )
            if comment is not None:
                # A utility statement takes no parameters: the comment goes through the one
                # audited literal helper.
                await connection.execute(
                    self.ctx.sql.comment_on_index(name, quote_literal(comment))
                )
            status = await self.status_of(connection, name)
            if not status.usable:
                raise DatabaseError(
                    f"index {name} was built but is not valid",
                    hint="Check the server log; reindex() or drop_index() and retry.",
                )
            self.ann = True
            await self.refresh_session(connection)
            return await self.status_of(connection, name)
        except BaseException:
            await self.builds.abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

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

    async def create_index(
        self,
        index_type: str | None = None,
        params: Mapping[str, int] | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        domain: str | None = None,
        name: str | None = None,
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
        predicate = None
        if where is not None or domain is not None:
            predicate = self.predicate(where, domain)
        elif name is not None:
            raise ValidationError(
                "name= applies to partial indexes (with where= or domain=); the store's full "
                "index keeps its derived name"
            )
        if name is not None:
            quote_ident(name)  # a valid, 63-byte-safe identifier, or ConfigurationError
        settings = planning.build_settings(
            self.ctx.config, maintenance_work_mem, max_parallel_maintenance_workers
        )
        status = await self._build(
            chosen,
            params,
            concurrently=concurrently,
            wait=True,
            settings=settings,
            progress=progress,
            predicate=predicate,
            name=name,
        )
        assert status is not None  # wait=True always ends with a status or an error
        if chosen == self.ctx.config.index_type and predicate is None:
            self.wanted = False
        return status

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

    async def reindex(
        self,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """AsyncPGVectorStore.reindex."""
        settings = planning.build_settings(
            self.ctx.config, maintenance_work_mem, max_parallel_maintenance_workers
        )
        connection = await self.session.connect_dedicated()
        try:
            await self.builds.lock(connection, wait=True)
            statuses = [s for s in await self.read_statuses(connection) if s.exists]
            statuses += [s for s in await self.read_indexes(connection) if s.where is not None]
            if not statuses:
                return (await self.read_statuses(connection))[0]
            for status in statuses:
                if status.building:
                    raise DatabaseError(
                        f"index {status.name} is being built by another session outside pgvs",
                        hint="Wait for that build to finish, or cancel it, then retry.",
                    )
                await self.builds.execute(
                    connection,
                    self.ctx.sql.reindex(status.name, concurrently=concurrently),
                    concurrently=concurrently,
                    settings=settings,
                    progress=progress,
                    description=f"reindex {status.index_type}",
                    target=status,  # maintenance_work_mem sized to its graph, unless given
                )
            await self.refresh_session(connection)
            return await self.status_of(connection, statuses[0].name)
        except BaseException:
            await self.builds.abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

    async def list_indexes(self) -> list[IndexStatus]:
        """AsyncPGVectorStore.list_indexes."""
        return await self.read_indexes(self.session.pool)

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
