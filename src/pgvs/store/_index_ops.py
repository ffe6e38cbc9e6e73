"""IndexOperations: make a store's index exist and be valid (``create_index``, ``reindex``).

Builds take turns under a session-level advisory lock on a dedicated connection (the build lock
of :class:`~._index_builds.BuildRunner`) and the catalog read under that lock decides what to do:
keep a valid index (refusing one of another shape, or other explicit parameters), report, drop
and rebuild an INVALID one, build a missing one; so any number of processes may ask at once.
Partial indexes (``create_index(where=..., domain=...)``, predicates from :mod:`pgvs.partial`) go
through the same builder; their ``COMMENT`` records the filter document they were built for, so
any store on the table recognises, routes searches to, and repairs them. The automatic build of
:mod:`._index_manager` runs :meth:`IndexOperations._build` too, without waiting for the lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import _index_decisions as decide
from .. import partial, planning
from .._sql import quote_ident, quote_literal
from ..errors import ConfigurationError, DatabaseError, ValidationError
from ..progress import ProgressCallback
from ..results import IndexStatus
from ._context import StoreContext
from ._index_builds import BuildRunner, read_catalog
from ._index_catalog import IndexCatalog
from ._projection import fit_projection
from ._session import Session, logger

__all__ = ["IndexOperations"]


class IndexOperations(IndexCatalog):
    """Index builds of one store, each under the build lock, on a dedicated connection."""

    def __init__(self, ctx: StoreContext, session: Session) -> None:
        super().__init__(ctx, session)
        self.builds = BuildRunner(ctx, session)
        # The configured index is still due from the automatic build; a manual build of it (or
        # a drop) settles that, and every write path starts the background check while set.
        self.wanted = False

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
        async with self.builds.dedicated() as connection:
            if not await self.builds.lock(connection, wait=wait):
                return None
            status, recorded = next(
                (pair for pair in await read_catalog(self.ctx, connection) if pair[0].name == name),
                (IndexStatus(name=name, exists=False), None),
            )
            # An index of that name must be the one asked for.
            decide.check_same_index(
                status, recorded, index_type=index_type, comment=comment, derived=derived
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
                decide.check_same_params(name, index_type, status.params, params)
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
            elif decide.lists_from_rows(index_type, params, self.ctx.config.index_params):
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
        async with self.builds.dedicated() as connection:
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
