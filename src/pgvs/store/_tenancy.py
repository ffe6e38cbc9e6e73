"""Tenancy: tenant partitions (``partition_by="domain"``) and the Citus table (``distributed``).

A partitioned store's table is ``PARTITION BY LIST (domain_id)`` and holds no rows itself; a
tenant's partition is created on the first write of a store of that domain, under the table's
DDL advisory lock (the one :mod:`._bootstrap` takes), so processes racing to create it wait for
the first and then find it. It carries the parent's indexes, the HNSW index among them (a
partitioned index: PostgreSQL creates each partition's own index with the partition, empty, so
instantly), and a tenant's searches (``domain_id = $n``) are pruned to its partition.

A tenant's ``tune(apply=True)`` setting is a comment on its partition's own index
(:mod:`._tuner`); a store re-reads it when it creates or finds its partition, or drops it.

``drop_domain`` drops the partition: O(1) whatever the tenant holds. On an unpartitioned table it
deletes the domain's rows instead (O(rows)).

``distributed=True`` hash-distributes the table on ``domain_id`` with Citus's
``create_distributed_table`` right after pgvs creates it (see docs/scale.md; untested here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from ..errors import ConfigurationError
from ..scale import (
    CITUS_DISTRIBUTE,
    CITUS_HINT,
    CITUS_INSTALLED,
    CITUS_IS_DISTRIBUTED,
    create_partition_sql,
    distribute_args,
    drop_partition_sql,
    partition_name,
)
from ._context import StoreContext
from ._session import Session, logger

__all__ = [
    "Tenancy",
    "check_distributed",
    "distribute",
    "is_missing_partition",
    "partitioned_problem",
]

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_RELKIND = "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)"
# PostgreSQL's words when a row's domain has no partition (SQLSTATE 23514).
_NO_PARTITION = "no partition of relation"


def is_missing_partition(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it: an IngestError wraps it) is a row finding no
    partition for its domain."""
    while exc is not None:
        if isinstance(exc, asyncpg.CheckViolationError) and _NO_PARTITION in str(exc):
            return True
        exc = exc.__cause__
    return False


class Tenancy:
    def __init__(
        self,
        ctx: StoreContext,
        session: Session,
        partition_seen: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.partitioned = ctx.config.partition_by is not None
        self._ready = False  # this store's domain has its partition (as far as we know)
        # Called once this store's domain's partition was created or found, or dropped by this
        # store: its index's tuned setting (tune(apply=True)) is re-read
        # (:meth:`IndexCatalog.refresh_tuned`). A store opened before its partition existed
        # (or was dropped and made again) otherwise keeps the setting it read at initialize().
        self._partition_seen = partition_seen

    def partition_of(self, domain: str) -> str:
        return partition_name(self.ctx.config.table_name, domain)

    async def ensure_partition(self, *, check: bool = False) -> None:
        """This store's domain's partition, created when missing (once per store; every time
        with ``check``: ``CREATE TABLE IF NOT EXISTS`` of an existing one locks nothing)."""
        if not self.partitioned or (self._ready and not check):
            return
        ctx = self.ctx
        sql = ctx.sql
        name = self.partition_of(ctx.domain)
        async with self.session.pool.acquire() as connection, connection.transaction():
            await connection.execute(_LOCK, sql.lock_key())
            await connection.execute(
                create_partition_sql(
                    ctx.config.schema, sql.table, name, ctx.domain, sql.partition_storage()
                )
            )
        logger.debug("partition %s of %s is in place", name, sql.table)
        self._ready = True
        if self._partition_seen is not None:
            await self._partition_seen()

    def check_index_operation(
        self, operation: str, *, concurrently: bool, partial: bool = False
    ) -> None:
        """Index operations a partitioned table cannot take, refused before any I/O.

        Its vector index is a partitioned index (each tenant's partition has its own, made with
        the partition). PostgreSQL builds, drops and reindexes a partitioned index only inside
        one blocking statement: no CONCURRENTLY; and pgvs's REINDEX runs in a transaction, which
        a partitioned index refuses. A partial (per-tenant) index adds nothing: a tenant's
        index holds its rows only already."""
        if not self.partitioned:
            return
        why = None
        if operation == "reindex":
            why = "REINDEX of a partitioned index cannot run in a transaction block"
        elif concurrently:
            why = (
                f"PostgreSQL cannot {operation.replace('_', ' ')} a partitioned index CONCURRENTLY"
            )
        elif partial:
            why = "each tenant's partition has an index of its own rows already"
        if why is not None:
            raise ConfigurationError(
                f"{operation}() is not available on a store with partition_by='domain': {why}",
                hint="Per tenant: REINDEX INDEX CONCURRENTLY on the partition's own index "
                "(pg_partition_tree lists them); see docs/scale.md.",
            )

    def partition_lost(self) -> None:
        """A write found no partition for this domain (dropped since): create it again."""
        self._ready = False

    async def drop_domain(self, domain: str) -> bool:
        """Drop ``domain``'s partition (or, unpartitioned, delete its rows). True: it had one."""
        ctx = self.ctx
        sql = ctx.sql
        if not isinstance(domain, str) or "\x00" in domain:
            raise ConfigurationError("drop_domain takes a domain_id string without NUL")
        if not ctx.has_domain:
            raise ConfigurationError("this table has no domain_id column: there are no domains")
        if not self.partitioned:
            status = await self.session.pool.execute(sql.delete_where("TRUE"), domain)
            return int(status.split()[-1]) > 0
        name = self.partition_of(domain)
        async with self.session.pool.acquire() as connection, connection.transaction():
            await connection.execute(_LOCK, sql.lock_key())
            existed = bool(
                await connection.fetchval(
                    "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                    ctx.config.schema,
                    name,
                )
            )
            await connection.execute(drop_partition_sql(ctx.config.schema, name))
        if domain == ctx.domain:
            self._ready = False
            if self._partition_seen is not None:
                await self._partition_seen()  # its tuned setting went with it
        return existed


async def partitioned_problem(connection: asyncpg.Connection, ctx: StoreContext) -> str | None:
    """At set-up: why the existing table does not fit ``partition_by`` (None: it fits)."""
    relkind = await connection.fetchval(_RELKIND, ctx.sql.table_text)
    partitioned = relkind == "p"
    if ctx.config.partition_by is not None and not partitioned:
        return (
            f"partition_by={ctx.config.partition_by!r} but {ctx.sql.table} is not a "
            "partitioned table (pgvs partitions only the tables it creates)"
        )
    return None


async def check_distributed(connection: asyncpg.Connection, ctx: StoreContext) -> None:
    """``distributed=True`` on a server without Citus: a ConfigurationError, before any DDL."""
    if ctx.config.distributed and not await connection.fetchval(CITUS_INSTALLED):
        raise ConfigurationError(
            "distributed=True but the citus extension is not installed in this database",
            hint=CITUS_HINT,
        )


async def distribute(connection: asyncpg.Connection, ctx: StoreContext) -> None:
    """Hash-distribute the table on its domain column (once; under the set-up's locks)."""
    if not ctx.config.distributed:
        return
    sql = ctx.sql
    if await connection.fetchval(CITUS_IS_DISTRIBUTED, sql.table_text):
        return
    column = ctx.config.column("domain_id")
    assert column is not None  # StoreConfig refuses distributed without it
    await connection.execute(CITUS_DISTRIBUTE, *distribute_args(sql.table_text, column))
    logger.info("distributed %s on %s with Citus", sql.table, column)
