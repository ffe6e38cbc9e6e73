"""``store.stats()``: the catalog, the statistics views and the pool, read in one visit.

All queries run on one pooled connection, outside a transaction (but the row count, which runs
in the store's own transaction: under row-level security the tenant is set there), so a failing
optional part (``pg_stat_statements`` present but not preloaded, or not readable by this role)
costs only that part. The pool is sampled before that connection is taken, so the report's own query does
not count as a connection in use.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from .. import _stats_sql as q
from ..errors import SchemaMismatchError
from ..results import PoolStats, StoreStats
from ._context import StoreContext
from ._session import Session, scope, transaction

__all__ = ["pool_stats", "read_stats"]


def pool_stats(pool: asyncpg.Pool) -> PoolStats:
    """Size, idle, in use and waiting callers of an asyncpg pool.

    asyncpg has public getters for sizes but none for waiters or checkouts: those come from its
    queue of free connection holders (``in_use`` = holders out of the queue, ``waiting`` =
    callers blocked on it), read defensively so a change in asyncpg degrades to None.
    """
    size, idle = pool.get_size(), pool.get_idle_size()
    max_size = pool.get_max_size()
    queue: Any = getattr(pool, "_queue", None)
    getters = getattr(queue, "_getters", None)
    try:
        in_use = max_size - int(queue.qsize())
    except (AttributeError, TypeError, ValueError):
        in_use = size - idle
    waiting = None if getters is None else sum(1 for getter in getters if not getter.done())
    return PoolStats(
        size=size,
        min_size=pool.get_min_size(),
        max_size=max_size,
        idle=idle,
        in_use=max(0, in_use),
        waiting=waiting,
    )


async def read_stats(ctx: StoreContext, session: Session, top_queries: int) -> StoreStats:
    """AsyncPGVectorStore.stats."""
    config = ctx.config
    table = ctx.sql.table_text
    pool = pool_stats(session.raw_pool)
    async with session.pool.acquire() as connection:
        relation = await connection.fetchrow(q.RELATION_QUERY, table, config.column("embedding"))
        if relation is None:
            raise SchemaMismatchError(
                f"table {ctx.sql.table} does not exist (any more)",
                hint="Create it again: initialize() a store with auto_create_table=True.",
            )
        indexes = await connection.fetch(q.INDEXES_QUERY, table)
        activity = await connection.fetchrow(q.ACTIVITY_QUERY, table)
        # pgvector defines its hnsw.* / ivfflat.* settings when its library loads: load it, so
        # the values in force are shown rather than NULL on a fresh connection.
        await connection.execute(q.load_vector_sql(session.extension_schema))
        settings = await connection.fetch(q.SETTINGS_QUERY, list(q.SETTINGS))
        memory = await connection.fetch(q.MEMORY_QUERY, list(q.MEMORY_SETTINGS))
        count_sql, takes_domain = q.rows_by_domain_sql(config)
        # Under row-level security the policy admits the rows of the tenant the transaction
        # names (none outside one): the count runs in the store's own scoped transaction.
        async with transaction(connection):
            await scope(connection, session.pool.domain)
            domains = await connection.fetch(count_sql, *([ctx.domain] if takes_domain else []))
        partitions: list[asyncpg.Record] = []
        if relation["partitioned"]:
            own = ctx.domain if config.domain_id is not None else None
            partitions = await connection.fetch(q.PARTITIONS_QUERY, table, own, q.TOP_DOMAINS)
        found: list[asyncpg.Record] | None = None
        note: str | None = None
        if top_queries <= 0:
            note = "not asked for"
        elif relation["pgss_schema"] is None:
            note = "the pg_stat_statements extension is not installed in this database"
        else:
            try:
                found = await connection.fetch(
                    q.top_queries_sql(relation["pgss_schema"]), config.table_name, top_queries
                )
            except asyncpg.PostgresError as exc:  # e.g. not in shared_preload_libraries
                note = f"pg_stat_statements is not readable: {exc}"
    return q.assemble(
        table=ctx.sql.table,
        relation=relation,
        indexes=indexes,
        activity=activity,
        settings=settings,
        memory=memory,
        domains=domains,
        partitions=partitions,
        pool=pool,
        top_queries=found,
        top_queries_note=note,
    )
