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
from .results import (
    IndexInfo,
    PartitionStats,
    PoolStats,
    QueryStats,
    StoreStats,
    TableActivity,
)

__all__ = [
    "ACTIVITY_QUERY",
    "INDEXES_QUERY",
    "MEMORY_QUERY",
    "MEMORY_SETTINGS",
    "PARTITIONS_QUERY",
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

# The table's storage: its own, or (partitioned: relkind 'p', no storage of its own) the sum
# over the leaves of pg_partition_tree (which lists nothing for an unpartitioned table). A
# partitioned table with no partition yet sums nothing: sizes 0, the parent's reltuples.
RELATION_QUERY = """
    WITH leaves AS (
        SELECT c.oid, c.reltuples, c.reltoastrelid FROM pg_class c
        WHERE c.oid = to_regclass($1) AND c.relkind <> 'p'
        UNION ALL
        SELECT c.oid, c.reltuples, c.reltoastrelid
        FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid
        WHERE t.isleaf
    ), storage AS (
        SELECT count(*) AS leaves,
               CASE WHEN bool_and(reltuples < 0) THEN -1
                    ELSE sum(greatest(reltuples, 0)) END AS reltuples,
               COALESCE(sum(pg_relation_size(oid)), 0) AS table_bytes,
               COALESCE(sum(pg_total_relation_size(NULLIF(reltoastrelid, 0))), 0) AS toast_bytes,
               COALESCE(sum(pg_indexes_size(oid)), 0) AS indexes_bytes,
               COALESCE(sum(pg_total_relation_size(oid)), 0) AS total_bytes
        FROM leaves
    )
    SELECT COALESCE(s.reltuples, c.reltuples)::bigint AS rows_estimate,
           s.table_bytes, s.toast_bytes, s.indexes_bytes, s.total_bytes,
           c.relkind = 'p' AS partitioned,
           CASE WHEN c.relkind = 'p' THEN s.leaves ELSE 0 END AS partition_count,
           format_type(a.atttypid, a.atttypmod) AS column_type,
           (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
           current_setting('server_version') AS server_version,
           (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'pg_stat_statements') AS pgss_schema
    FROM pg_class c
    CROSS JOIN storage s
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
    WHERE c.oid = to_regclass($1)
"""
# A partitioned index (the parent's) has no storage and no pg_stat_user_indexes row: its size
# and scans are its partitions' indexes' (pg_partition_tree of an index lists them).
INDEXES_QUERY = """
    SELECT ic.relname AS name, am.amname AS method, i.indisvalid AS valid,
           COALESCE(p.size_bytes, pg_relation_size(ic.oid)) AS size_bytes,
           pg_get_indexdef(ic.oid) AS definition,
           opc.opcname AS opclass, ic.reloptions, i.indisprimary AS is_primary,
           i.indisunique AS is_unique, COALESCE(s.idx_scan, p.scans) AS scans,
           COALESCE(p.partitions, 0) AS partitions
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[0]
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
    LEFT JOIN LATERAL (
        SELECT count(*) AS partitions, sum(pg_relation_size(t.relid)) AS size_bytes,
               sum(u.idx_scan) AS scans
        FROM pg_partition_tree(ic.oid) t
        LEFT JOIN pg_stat_user_indexes u ON u.indexrelid = t.relid
        WHERE t.isleaf AND ic.relkind = 'I'
    ) p ON true
    WHERE i.indrelid = to_regclass($1)
    ORDER BY ic.relname
"""
# Summed over the table and its partitions (a partitioned parent's own row counts no tuples and
# is never vacuumed: autovacuum processes the partitions); the times are the latest of any.
ACTIVITY_QUERY = """
    SELECT sum(n_live_tup) AS n_live_tup, sum(n_dead_tup) AS n_dead_tup,
           max(last_vacuum) AS last_vacuum, max(last_autovacuum) AS last_autovacuum,
           max(last_analyze) AS last_analyze, max(last_autoanalyze) AS last_autoanalyze,
           sum(vacuum_count) AS vacuum_count, sum(autovacuum_count) AS autovacuum_count
    FROM pg_stat_user_tables
    WHERE relid = to_regclass($1)
       OR relid IN (SELECT relid FROM pg_partition_tree(to_regclass($1)))
"""
# The leaves of a partitioned table ($1), largest first (at most $3), limited to domain $2 when
# it is not NULL. ``domain`` is the one value of a list partition's bound as PostgreSQL prints
# it, FOR VALUES IN ('it''s') (quotes doubled; with standard_conforming_strings off a value
# holding a backslash is printed E'...' and this gives NULL); NULL for DEFAULT or several values.
# The sizes are read for the partitions kept only.
PARTITIONS_QUERY = r"""
    WITH parts AS (
        SELECT c.oid, c.relname, c.reltuples, c.reltoastrelid,
               pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid
        WHERE t.isleaf
    ), named AS (
        SELECT *, CASE WHEN bound ~ '^FOR VALUES IN \(''([^'']|'''')*''\)$'
                       THEN replace(substr(bound, 17, length(bound) - 18), '''''', '''')
                  END AS domain
        FROM parts
    ), kept AS (
        SELECT *, pg_total_relation_size(oid) AS total_bytes FROM named
        WHERE $2::text IS NULL OR domain = $2
        ORDER BY total_bytes DESC, relname
        LIMIT $3
    )
    SELECT k.relname AS name, k.domain, k.reltuples::bigint AS rows_estimate,
           pg_relation_size(k.oid) AS table_bytes,
           COALESCE(pg_total_relation_size(NULLIF(k.reltoastrelid, 0)), 0) AS toast_bytes,
           pg_indexes_size(k.oid) AS indexes_bytes, k.total_bytes,
           s.n_live_tup, s.n_dead_tup, s.last_vacuum, s.last_autovacuum, s.last_analyze,
           s.last_autoanalyze, s.vacuum_count, s.autovacuum_count
    FROM kept k LEFT JOIN pg_stat_user_tables s ON s.relid = k.oid
    ORDER BY k.total_bytes DESC, k.relname
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
        partitions=int(row["partitions"]),
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


def _partition(row: Row) -> PartitionStats:
    return PartitionStats(
        name=row["name"],
        domain=row["domain"],
        rows_estimate=int(row["rows_estimate"]),
        table_bytes=int(row["table_bytes"]),
        toast_bytes=int(row["toast_bytes"]),
        indexes_bytes=int(row["indexes_bytes"]),
        total_bytes=int(row["total_bytes"]),
        activity=_activity(row),
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
    partitions: Sequence[Row],
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
        partitioned=bool(relation["partitioned"]),
        partition_count=int(relation["partition_count"]),
        partitions=tuple(_partition(row) for row in partitions),
    )
