"""The catalog queries of ``store.stats()`` and how their rows become a StoreStats. Pure: no I/O.

Everything is read from the catalog and the statistics views by value (``to_regclass($1)``),
so the only identifiers written into SQL are the store's own, quoted by :mod:`pgvs._sql`: the
table and domain column of the per-domain count, and the schemas of the ``vector`` and
``pg_stat_statements`` extensions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._sql import qualified, quote_ident
from .config import StoreConfig
from .indexes import parse_reloptions
from .results import IndexInfo, PoolStats, QueryStats, StoreStats, TableActivity

__all__ = [
    "ACTIVITY_QUERY",
    "INDEXES_QUERY",
    "MEMORY_QUERY",
    "MEMORY_SETTINGS",
    "RELATION_QUERY",
    "SETTINGS",
    "SETTINGS_QUERY",
    "TOP_DOMAINS",
    "assemble",
    "load_vector_sql",
    "rows_by_domain_sql",
    "top_queries_sql",
]

# An asyncpg Record (or any mapping of column name to value): read by key only.
Row = Any

#: Domains listed by name in StoreStats.rows_by_domain (the largest first).
TOP_DOMAINS = 100

#: The settings that decide how vector queries and index builds behave.
SETTINGS = (
    "hnsw.ef_search",
    "hnsw.iterative_scan",
    "hnsw.max_scan_tuples",
    "hnsw.scan_mem_multiplier",
    "ivfflat.probes",
    "ivfflat.iterative_scan",
    "ivfflat.max_probes",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "shared_buffers",
    "effective_cache_size",
    "random_page_cost",
    "jit",
    "jit_above_cost",
    "plan_cache_mode",
    "statement_timeout",
)
MEMORY_SETTINGS = ("work_mem", "maintenance_work_mem", "shared_buffers", "effective_cache_size")

RELATION_QUERY = """
    SELECT c.reltuples::bigint AS rows_estimate,
           pg_relation_size(c.oid) AS table_bytes,
           COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS toast_bytes,
           pg_indexes_size(c.oid) AS indexes_bytes,
           pg_total_relation_size(c.oid) AS total_bytes,
           format_type(a.atttypid, a.atttypmod) AS column_type,
           (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
           current_setting('server_version') AS server_version,
           (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'pg_stat_statements') AS pgss_schema
    FROM pg_class c
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
    WHERE c.oid = to_regclass($1)
"""
INDEXES_QUERY = """
    SELECT ic.relname AS name, am.amname AS method, i.indisvalid AS valid,
           pg_relation_size(ic.oid) AS size_bytes, pg_get_indexdef(ic.oid) AS definition,
           opc.opcname AS opclass, ic.reloptions, i.indisprimary AS is_primary,
           i.indisunique AS is_unique, s.idx_scan AS scans
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[0]
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
    WHERE i.indrelid = to_regclass($1)
    ORDER BY ic.relname
"""
ACTIVITY_QUERY = """
    SELECT n_live_tup, n_dead_tup, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze,
           vacuum_count, autovacuum_count
    FROM pg_stat_user_tables WHERE relid = to_regclass($1)
"""
# current_setting(name, true) is NULL for a setting the server does not know (hnsw.* before the
# vector library is loaded in the session, on servers without pgvector's newer settings).
SETTINGS_QUERY = """
    SELECT s.name, current_setting(s.name, true) AS value
    FROM unnest($1::text[]) WITH ORDINALITY AS s(name, position) ORDER BY s.position
"""
MEMORY_QUERY = """
    SELECT s.name, pg_size_bytes(current_setting(s.name)) AS bytes
    FROM unnest($1::text[]) AS s(name)
"""


def load_vector_sql(extension_schema: str | None) -> str:
    """A statement that loads pgvector's library in the session, so its settings exist."""
    type_name = "vector" if extension_schema is None else f"{quote_ident(extension_schema)}.vector"
    return f"SELECT '[1]'::{type_name}"


def rows_by_domain_sql(config: StoreConfig) -> tuple[str, bool]:
    """The per-domain count and whether it takes the store's domain as ``$1``.

    A tenant's store counts its own domain only: other tenants' names and sizes are theirs.
    """
    table = qualified(config.schema, config.table_name)
    domain_column = config.column("domain_id")
    if domain_column is None:
        return f"SELECT ''::text AS domain, count(*) AS rows, 1 AS domains FROM {table}", False
    column = quote_ident(domain_column)
    if config.domain_id is not None:
        return (
            f"SELECT $1::text AS domain, count(*) AS rows, 1 AS domains "
            f"FROM {table} WHERE {column} = $1",
            True,
        )
    return (
        f"SELECT {column}::text AS domain, count(*) AS rows, count(*) OVER () AS domains, "
        f"sum(count(*)) OVER () AS total FROM {table} GROUP BY 1 ORDER BY 2 DESC, 1 "
        f"LIMIT {TOP_DOMAINS}",
        False,
    )


def top_queries_sql(pgss_schema: str) -> str:
    """The statements of this database that mention the table (``$1``), by total time."""
    view = qualified(pgss_schema, "pg_stat_statements")
    return (
        "SELECT query, calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms, rows "
        f"FROM {view} WHERE dbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) AND strpos(query, $1) > 0 "
        "ORDER BY total_exec_time DESC LIMIT $2"
    )


def _index(row: Row) -> IndexInfo:
    return IndexInfo(
        name=row["name"],
        method=row["method"],
        valid=bool(row["valid"]),
        size_bytes=int(row["size_bytes"]),
        definition=row["definition"],
        opclass=row["opclass"],
        params=parse_reloptions(row["reloptions"]),
        primary=bool(row["is_primary"]),
        unique=bool(row["is_unique"]),
        scans=None if row["scans"] is None else int(row["scans"]),
    )


def _activity(row: Row | None) -> TableActivity:
    if row is None:
        return TableActivity()
    return TableActivity(
        live_tuples=int(row["n_live_tup"] or 0),
        dead_tuples=int(row["n_dead_tup"] or 0),
        last_vacuum=row["last_vacuum"],
        last_autovacuum=row["last_autovacuum"],
        last_analyze=row["last_analyze"],
        last_autoanalyze=row["last_autoanalyze"],
        vacuum_count=int(row["vacuum_count"] or 0),
        autovacuum_count=int(row["autovacuum_count"] or 0),
    )


def assemble(
    *,
    table: str,
    relation: Row,
    indexes: Sequence[Row],
    activity: Row | None,
    settings: Sequence[Row],
    memory: Sequence[Row],
    domains: Sequence[Row],
    pool: PoolStats,
    top_queries: Sequence[Row] | None,
    top_queries_note: str | None,
) -> StoreStats:
    """A StoreStats from the rows of the queries above."""
    if domains and "total" in domains[0]:
        rows = int(domains[0]["total"])
        domain_count = int(domains[0]["domains"])
    else:
        rows = sum(int(row["rows"]) for row in domains)
        domain_count = sum(1 for row in domains if int(row["rows"]) > 0)
    return StoreStats(
        table=table,
        column_type=relation["column_type"] or "?",
        rows=rows,
        rows_by_domain={row["domain"]: int(row["rows"]) for row in domains if int(row["rows"])},
        domains=domain_count,
        rows_estimate=int(relation["rows_estimate"]),
        table_bytes=int(relation["table_bytes"]),
        toast_bytes=int(relation["toast_bytes"]),
        indexes_bytes=int(relation["indexes_bytes"]),
        total_bytes=int(relation["total_bytes"]),
        indexes=tuple(_index(row) for row in indexes),
        settings={row["name"]: row["value"] for row in settings},
        memory_bytes={row["name"]: int(row["bytes"]) for row in memory},
        activity=_activity(activity),
        pool=pool,
        pgvector_version=str(relation["pgvector_version"] or "?"),
        server_version=str(relation["server_version"]),
        top_queries=None
        if top_queries is None
        else tuple(
            QueryStats(
                query=str(row["query"]),
                calls=int(row["calls"]),
                total_ms=float(row["total_ms"]),
                mean_ms=float(row["mean_ms"]),
                rows=int(row["rows"]),
            )
            for row in top_queries
        ),
        top_queries_note=top_queries_note,
    )
