"""IndexCatalog: what the catalog says about a store's vector indexes, and the defaults it decides.

The statuses of the index names this store may own; the pgvs partial indexes that are this
store's (their ``COMMENT`` compiles, here, to the same predicate, type and quantization) and so
may serve its searches; and the query defaults the indexes decide: whether pgvs's ANN settings
apply (``ann``), IVFFlat's ``lists``, the settings ``tune(apply=True)`` persisted (with
``partition_by``: on this store's domain's partition's own index, :meth:`load_tuned`). After every
index operation :meth:`IndexCatalog.refresh_session` re-reads all of it and brings the pool's
session settings in step. Reads only: the builds are :mod:`._index_ops`, the background
:mod:`._index_manager` (whose :class:`~._index_manager.IndexManager` this is the base of).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import indexes as ix
from .. import partial, planning, tuning
from .._sql import qualified
from ..errors import ConfigurationError, ValidationError
from ..results import IndexStatus
from ..scale import partition_name
from ._context import StoreContext
from ._index_builds import read_catalog, status_of_row
from ._session import Session

__all__ = ["IndexCatalog"]


class IndexCatalog:
    """The vector indexes of one store as last read, and the query defaults they decide."""

    def __init__(self, ctx: StoreContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        # Whether pgvs manages a vector index here (configured, or one of its indexes exists):
        # ANN-only settings and pgvs's query defaults apply then.
        self.ann = ctx.config.index_type != "none"
        self.lists: int | None = None  # lists of the store's IVFFlat index, if any
        self.tuned: dict[str, str] = {}  # what tune(apply=True) left on the indexes' comments
        self.iterative = True  # the server's pgvector has iterative scans (set at bootstrap)
        # Valid pgvs partial indexes searches may route to: (name, predicate, size in bytes).
        self.partials: list[tuple[str, partial.Predicate, int]] = []
        # When (event loop time) ``partials`` was last read; never yet, so the first search
        # after start-up finds it stale (the manager re-reads it past a TTL).
        self._partials_at = -math.inf
        self._partial_probes: dict[str, int] = {}  # IVFFlat partial indexes: sqrt(their lists)

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

    def predicate(self, where: Mapping[str, Any] | None, domain: str | None) -> partial.Predicate:
        ctx = self.ctx
        return partial.compile_predicate(
            where,
            domain,
            ctx.filter_target,
            domain_sql=ctx.sql.col("domain_id") if ctx.has_domain else None,
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
            statuses.append(status_of_row(row))
        return statuses

    async def read_indexes(self, connection: Any) -> list[IndexStatus]:
        catalog = await read_catalog(self.ctx, connection)
        self.note_partials(catalog)
        return [status for status, _ in catalog]

    async def status_of(self, connection: Any, name: str) -> IndexStatus:
        for status in await self.read_indexes(connection):
            if status.name == name:
                return status
        return IndexStatus(name=name, exists=False)

    async def list_indexes(self) -> list[IndexStatus]:
        """AsyncPGVectorStore.list_indexes."""
        return await self.read_indexes(self.session.pool)

    async def index_status(self) -> IndexStatus:
        """AsyncPGVectorStore.index_status."""
        statuses = await self.read_statuses(self.session.pool)
        return next((status for status in statuses if status.exists), statuses[0])

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
        """Read the settings ``tune(apply=True)`` persisted on this store's indexes' comments.

        With ``partition_by`` only the comment of this store's domain's partition's own index
        (none while the partition does not exist): each tenant's graph has its own setting."""
        config = self.ctx.config
        if config.partition_by is None:
            rows = await connection.fetch(
                tuning.TUNED_COMMENTS_QUERY, config.schema, self.ctx.sql.index_names()
            )
        else:
            rows = await self.partition_indexes(connection, self.ctx.sql.index_names())
        self.tuned = {}
        for row in rows:
            self.tuned.update(tuning.parse_tuned_comment(row["comment"]))

    async def partition_indexes(self, connection: Any, parents: Sequence[str]) -> list[Any]:
        """The own indexes (``name``, ``comment``) of this store's domain's partition that are
        children of the partitioned indexes ``parents`` (none while the partition is missing)."""
        config = self.ctx.config
        partition = qualified(config.schema, partition_name(config.table_name, self.ctx.domain))
        return list(
            await connection.fetch(
                tuning.PARTITION_TUNED_QUERY, config.schema, list(parents), partition
            )
        )

    async def refresh_tuned(self) -> None:
        """Re-read the persisted setting and bring the pool in step: a partitioned store's
        domain's partition was just created, found or dropped, and its index with it."""
        await self.load_tuned(self.session.pool)
        await self.session.apply_settings(self.desired_session())

    async def refresh_session(self, connection: Any) -> None:
        """Re-read the store's indexes and bring the pool's query defaults in step with them."""
        self.note_statuses(await self.read_statuses(connection))
        await self.load_tuned(connection)
        await self.read_indexes(connection)  # the partial indexes searches may route to
        await self.session.apply_settings(self.desired_session())
