"""Schema set-up at ``initialize()``: extension, schema, table and first index, race-free.

Everything runs in one transaction on one connection under advisory locks (the extension's, then
the table's), so any number of processes may initialize the same new table at once: the first
creates, the others wait and then verify what it made.
"""

from __future__ import annotations

from typing import cast

import asyncpg

from .. import indexes as ix
from .._schema_check import schema_problems
from .._sql import quote_ident
from ..codecs import vector_extension_schema
from ..errors import ConfigurationError, ExtensionMissingError, SchemaMismatchError
from ._context import StoreContext
from ._index_manager import IndexManager
from ._projection import ensure_projection
from ._query_log import prepare_query_log
from ._rls import ensure_policy
from ._session import logger
from ._tenancy import check_distributed, distribute, partitioned_problem

__all__ = ["prepare_schema"]

_EXTENSION_LOCK = "pgvs:extension:vector"
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
# A text search configuration by name, as the search path finds it, or in the schema given.
_TS_CONFIG_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace "
    "WHERE c.cfgname = $2 AND CASE WHEN $1::text IS NULL THEN pg_ts_config_is_visible(c.oid) "
    "ELSE n.nspname = $1 END)"
)
_HAS_COLUMN = (
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) "
    "AND attname = $2 AND attnum > 0 AND NOT attisdropped)"
)


async def prepare_schema(
    connection: asyncpg.Connection, ctx: StoreContext, indexes: IndexManager
) -> tuple[str, bool]:
    """Extension, schema, table (and an HNSW index on an empty table), in one transaction.

    Returns the extension's schema and whether an automatic index build is due (it then runs
    in the background, never in initialize()).
    """
    sql, config = ctx.sql, ctx.config
    async with connection.transaction():
        if config.text_search is not None and not await connection.fetchval(
            _TS_CONFIG_EXISTS, *_schema_and_name(config.text_search)
        ):
            raise ConfigurationError(
                f"text_search={config.text_search!r} is not a text search configuration of "
                "this database",
                hint="SELECT cfgname FROM pg_ts_config lists them ('english', 'simple', ...).",
            )
        await connection.execute(_LOCK, _EXTENSION_LOCK)
        extension_schema = await vector_extension_schema(connection)
        if extension_schema is None:
            extension_schema = await _create_extension(connection)
        version = await connection.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        # Iterative index scans (and their settings) arrived in pgvector 0.8.0; an older
        # server would reject the unknown hnsw.* settings.
        indexes.iterative = ix.version_tuple(str(version)) >= (0, 8, 0)
        await check_distributed(connection, ctx)  # before any DDL
        await connection.execute(_LOCK, sql.lock_key())
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", sql.table_text)
        if not exists:
            if not config.auto_create_table:
                raise SchemaMismatchError(
                    f"table {sql.table} does not exist",
                    hint="Create it, or set auto_create_table=True to let pgvs create it.",
                )
            schema_known = await connection.fetchval(
                "SELECT true FROM pg_namespace WHERE nspname = $1", config.schema
            )
            if not schema_known:
                await connection.execute(
                    f"CREATE SCHEMA IF NOT EXISTS {quote_ident(config.schema)}"
                )
            for statement in sql.create_table():
                await connection.execute(statement)
            logger.info("created table %s", sql.table)
        elif config.text_search is not None and config.auto_create_table:
            await _add_text_search(connection, ctx)
        await _verify_table(connection, ctx)
        problem = await partitioned_problem(connection, ctx)
        if problem is not None:
            raise SchemaMismatchError(problem, hint="Leave partition_by unset for this table.")
        await distribute(connection, ctx)
        await ensure_policy(connection, ctx)
        await prepare_query_log(connection, ctx)
        if config.pca:
            await ensure_projection(ctx, connection)
        index_due = await indexes.initial_index(connection)
    return extension_schema, index_due


def _schema_and_name(qualified: str) -> tuple[str | None, str]:
    schema, _, name = qualified.rpartition(".")
    return schema or None, name


async def _add_text_search(connection: asyncpg.Connection, ctx: StoreContext) -> None:
    """The tsvector column and its GIN index on an existing table, when missing (under the
    table's lock, in the set-up transaction: the column is a table rewrite that keeps every row,
    the index build blocks writes meanwhile; both only once)."""
    sql, config = ctx.sql, ctx.config
    present = await connection.fetchval(_HAS_COLUMN, sql.table_text, config.column("content_tsv"))
    if not present:
        logger.warning(
            "adding the full-text column %s to %s (text_search=%r): the table is rewritten once",
            config.column("content_tsv"),
            sql.table,
            config.text_search,
        )
        await connection.execute(sql.add_text_column())
    await connection.execute(sql.create_text_index())


async def _create_extension(connection: asyncpg.Connection) -> str:
    try:
        async with connection.transaction():  # a savepoint: a refusal must not hide the cause
            await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ExtensionMissingError(
            "the vector extension is not installed and this role may not create it",
            hint="Run `CREATE EXTENSION vector;` as a superuser or the database owner.",
        ) from exc
    except asyncpg.UndefinedFileError as exc:
        raise ExtensionMissingError(
            "pgvector is not installed on this PostgreSQL server",
            hint="Install pgvector on the server (https://github.com/pgvector/pgvector), "
            "then run `CREATE EXTENSION vector;`.",
        ) from exc
    return cast(str, await vector_extension_schema(connection))


async def _verify_table(connection: asyncpg.Connection, ctx: StoreContext) -> None:
    sql = ctx.sql
    rows = await connection.fetch(sql.COLUMNS_QUERY, sql.table_text)
    columns = {row["attname"]: (row["typname"], row["atttypmod"], row["shown"]) for row in rows}
    keys = [
        tuple(row["columns"])
        for row in await connection.fetch(sql.UNIQUE_KEYS_QUERY, sql.table_text)
    ]
    problems = schema_problems(ctx.config, columns, keys)
    if problems:
        raise SchemaMismatchError(
            f"table {sql.table} does not match the store's configuration:\n- "
            + "\n- ".join(problems),
            hint="Fix the table, or change dimensions / vector_type / id_type / columns.",
        )
