"""Bulk ingest's SQL: what the target table allows, and the statements of one ingest. Pure.

Identifiers reach SQL only through :func:`pgvs._sql.quote_ident` (via :class:`Statements`);
values are ``$n`` parameters or COPY data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._sql import quote_ident
from ._statements import Statements

__all__ = ["IngestSQL", "TargetInfo", "copy_or_stage", "target_info"]


@dataclass(frozen=True)
class TargetInfo:
    """What ingest learns about the table once, when it starts."""

    column_types: Mapping[str, str]  # real column name -> pg_type.typname
    direct_copy: bool  # may new rows be COPied straight into the table (see target_info)
    reason: str = ""  # why not, when direct_copy is False
    parallel_writes: bool = False  # may batches with disjoint ids write at the same time


@dataclass(frozen=True)
class _Column:
    logical: str
    real: str
    typname: str


@dataclass
class IngestSQL:
    """The statements of one ingest, built from the store's Statements and the catalog.

    COPY data lists the columns in :attr:`copy_columns` order: the fixed-width ones first (domain,
    a uuid/integer id, a dense vector), so one numpy array holds that part of every row.
    """

    sql: Statements
    target: TargetInfo
    domain: str
    columns: list[_Column] = field(init=False)
    stage_name: str = "pgvs_ingest_stage"

    def __post_init__(self) -> None:
        config = self.sql.config
        types = self.target.column_types

        def column(logical: str) -> _Column:
            real = config.column(logical)
            assert real is not None
            return _Column(logical, real, types.get(real, ""))

        fixed: list[_Column] = []
        variable: list[_Column] = []
        if self.sql.has("domain_id"):
            fixed.append(column("domain_id"))
        id_column = column("id")
        (variable if config.id_type == "text" else fixed).append(id_column)
        dense = config.vector_type in ("vector", "halfvec")
        (fixed if dense else variable).append(column("embedding"))
        for logical in ("content", "metadata", "document_id", "chunk_index"):
            if logical == "metadata" or self.sql.has(logical):
                variable.append(column(logical))
        self.columns = fixed + variable

    @property
    def copy_columns(self) -> list[str]:
        """Real column names, in COPY data order (for asyncpg's ``copy_to_table``)."""
        return [c.real for c in self.columns]

    def _column_list(self) -> str:
        return ", ".join(quote_ident(c.real) for c in self.columns)

    def probe(self) -> str:
        """Which of a batch's ids are stored already: $1 = domain (if any), then the id array."""
        s = self.sql
        first = s.first_param()
        domain = f"{s.col('domain_id')} = $1::text AND " if s.has("domain_id") else ""
        condition = f"{domain}{s.col('id')} = ANY(${first}::{s.id_array_type})"
        return f"SELECT {s.id_select} FROM {s.table} WHERE {condition}"  # noqa: S608

    def probe_args(self, keys: list[Any]) -> list[Any]:
        return [*self.domain_args(), keys]

    def domain_args(self) -> list[Any]:
        return [self.domain] if self.sql.has("domain_id") else []

    def domain_has_rows(self) -> str:
        """Does the store's domain hold any row? ($1 = domain, if the table has the column)."""
        s = self.sql
        where = f" WHERE {s.col('domain_id')} = $1::text" if s.has("domain_id") else ""
        return f"SELECT EXISTS (SELECT 1 FROM {s.table}{where})"  # noqa: S608

    def stage_ddl(self) -> str:
        """A temporary table shaped like the COPY data, dropped when the transaction ends.

        A staging row is written once and read once: it should stay whole in its page. So the
        vector column is stored PLAIN (inline, never compressed) when that fits, where pgvector's
        default would move every vector over ~2 KB out to a TOAST table; and toast_tuple_target
        is the largest, so content and metadata are not compressed to squeeze rows under 2 KB.
        """
        c = self.sql.config
        name = quote_ident(self.stage_name)
        itemsize = {"vector": 4, "halfvec": 2}.get(c.vector_type)
        shape = f"SELECT {self._column_list()} FROM {self.sql.table} WITH NO DATA"  # noqa: S608
        ddl = f"CREATE TEMP TABLE {name} WITH (toast_tuple_target = 8160) ON COMMIT DROP AS {shape}"
        if itemsize is not None and 8 + itemsize * c.dimensions <= 6000:
            ddl += (
                f"; ALTER TABLE pg_temp.{name} ALTER COLUMN {self.sql.col('embedding')} "
                "SET STORAGE PLAIN"
            )
        return ddl

    def upsert_from_stage(self) -> str:
        """Insert-or-update every staged row: the same conflict rule and SET list as add_vectors."""
        s = self.sql
        columns = self._column_list()
        updates = [
            f"{quote_ident(c.real)} = EXCLUDED.{quote_ident(c.real)}"
            for c in self.columns
            if c.logical not in ("id", "domain_id")
        ]
        if s.has("updated_at"):
            updates.append(f"{s.col('updated_at')} = now()")
        return (
            f"INSERT INTO {s.table} ({columns})\n"
            f"SELECT {columns} FROM pg_temp.{quote_ident(self.stage_name)}\n"
            f"ON CONFLICT ({', '.join(s.conflict_columns)}) DO UPDATE SET {', '.join(updates)}"
        )

    def truncate_stage(self) -> str:
        return f"TRUNCATE pg_temp.{quote_ident(self.stage_name)}"

    # Catalog queries (no identifiers: the table travels as a value).
    TARGET_QUERY = """
        SELECT c.relkind::text AS relkind, c.relrowsecurity, c.relhasrules, a.names, a.types,
               (SELECT count(*) FROM pg_index i
                WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion)) AS unique_indexes,
               EXISTS (SELECT 1 FROM pg_trigger g
                       WHERE g.tgrelid = c.oid AND NOT g.tgisinternal) AS has_triggers,
               EXISTS (SELECT 1 FROM pg_constraint k
                       WHERE k.conrelid = c.oid AND k.contype IN ('f', 'x')) AS has_references,
               EXISTS (SELECT 1 FROM pg_index i
                       JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_am m ON m.oid = x.relam
                       WHERE i.indrelid = c.oid AND m.amname IN ('hnsw', 'ivfflat'))
                   AS has_vector_index
        FROM pg_class c
        CROSS JOIN LATERAL (
            SELECT array_agg(a.attname::text ORDER BY a.attnum) AS names,
                   array_agg(t.typname::text ORDER BY a.attnum) AS types
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        ) AS a
        WHERE c.oid = to_regclass($1)
    """


def target_info(
    relkind: str,
    row_security: bool,
    has_rules: bool,
    names: Sequence[str],
    types: Sequence[str],
    *,
    unique_indexes: int = 1,
    has_triggers: bool = False,
    has_references: bool = False,
) -> TargetInfo:
    """Decide whether new rows may be COPied straight into the table, and by several batches.

    A successful ``COPY`` of rows whose ids are unique within it is exactly what ``INSERT ... ON
    CONFLICT DO UPDATE`` does to rows that conflict with nothing: the unique index's check runs
    at insert time (waiting for an in-progress inserter of the same key), so if COPY succeeds no
    other row had any of those keys, and if one did it fails with a unique violation and the
    batch is redone as an upsert. The two differ only where COPY itself behaves unlike INSERT:
    it ignores rules, and refuses tables under row-level security; and it only applies to plain
    and partitioned tables.

    Batches with disjoint ids may write at the same time when nothing but the conflict key can
    make one batch wait for another's transaction: no other unique or exclusion index, no
    triggers, no foreign keys. (Commits stay in batch order; a batch waiting for an earlier
    one's row locks is then the only kind of wait between batches, and it cannot form a cycle.)
    """
    column_types = dict(zip(names, types, strict=True))
    if relkind not in ("r", "p"):
        return TargetInfo(column_types, False, f"relkind {relkind!r} is not a table")
    if row_security:
        return TargetInfo(column_types, False, "row-level security is enabled")
    if has_rules:
        return TargetInfo(column_types, False, "the table has rules")
    parallel = relkind == "r" and unique_indexes == 1 and not has_triggers and not has_references
    return TargetInfo(column_types, True, parallel_writes=parallel)


def copy_or_stage(
    rows: int, stored: list[int], *, staged_only: bool
) -> tuple[list[int], list[int]]:
    """A batch's row positions split in two: those COPied straight into the table (their ids are
    not stored), and ``stored`` (those whose ids are), merged from the staging table.

    ``staged_only`` (row-level security: PostgreSQL refuses COPY FROM into a table whose policies
    apply) sends every row through the stage and an INSERT.
    """
    if staged_only:
        return [], list(range(rows))
    if not stored:
        return list(range(rows)), []
    stored_set = set(stored)
    return [i for i in range(rows) if i not in stored_set], stored
