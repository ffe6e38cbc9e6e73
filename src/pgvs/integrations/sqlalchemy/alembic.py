"""Alembic support for pgvs columns: autogenerate rendering, the ``vector`` extension, and vector
indexes (``CONCURRENTLY`` when asked). ``pip install 'pgvs[alembic]'``.

In ``env.py``::

    from pgvs.integrations.sqlalchemy.alembic import process_revision_directives, render_item

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,  # writes pgvs.integrations.sqlalchemy.Vector(dim=768) + import
        process_revision_directives=process_revision_directives,  # adds the extension if missing
    )

Importing this module adds four operations to ``op`` in migrations:

* ``op.create_vector_extension(schema=None)`` / ``op.drop_vector_extension()``:
  ``CREATE EXTENSION IF NOT EXISTS vector`` / ``DROP EXTENSION IF EXISTS vector`` (never
  ``CASCADE``: the drop refuses while anything still uses pgvector's types);
* ``op.create_vector_index(name, table, column, metric="cosine", method="hnsw", ...)``: the index
  :func:`~pgvs.integrations.sqlalchemy.vector_index` builds, with the column's type read from
  the database (or given as ``column_type=`` for offline SQL); ``concurrently=True`` builds it
  with ``CREATE INDEX CONCURRENTLY`` in an autocommit block, outside the migration's transaction;
* ``op.drop_vector_index(name, table, concurrently=False)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation, Operations
from alembic.operations.ops import (
    AddColumnOp,
    AlterColumnOp,
    CreateTableOp,
    MigrationScript,
)
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table, inspect, text
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.sql.elements import ColumnElement, TextClause

from ..._sql import quote_ident
from ...errors import ConfigurationError
from ._indexes import Method, Quantization, vector_index
from ._types import Bit, _PgvsType

__all__ = [
    "CreateVectorExtensionOp",
    "CreateVectorIndexOp",
    "DropVectorExtensionOp",
    "DropVectorIndexOp",
    "process_revision_directives",
    "render_item",
]

_MODULE = "pgvs.integrations.sqlalchemy"


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Alembic's ``render_item`` hook: pgvs column types as ``pgvs.integrations.sqlalchemy.
    Vector(dim=768)``, with ``import pgvs.integrations.sqlalchemy`` added to the migration."""
    if type_ == "type" and isinstance(obj, _PgvsType):
        autogen_context.imports.add(f"import {_MODULE}")
        return f"{_MODULE}.{obj!r}"
    return False


# -- the extension -------------------------------------------------------------------------------


@Operations.register_operation("create_vector_extension")
class CreateVectorExtensionOp(MigrateOperation):
    """``CREATE EXTENSION IF NOT EXISTS vector [SCHEMA schema]``."""

    def __init__(self, schema: str | None = None) -> None:
        self.schema = schema

    @classmethod
    def create_vector_extension(cls, operations: Operations, schema: str | None = None) -> Any:
        return operations.invoke(cls(schema))

    def reverse(self) -> DropVectorExtensionOp:
        return DropVectorExtensionOp()


@Operations.register_operation("drop_vector_extension")
class DropVectorExtensionOp(MigrateOperation):
    """``DROP EXTENSION IF EXISTS vector``: refused by PostgreSQL while anything uses it."""

    @classmethod
    def drop_vector_extension(cls, operations: Operations) -> Any:
        return operations.invoke(cls())

    def reverse(self) -> CreateVectorExtensionOp:
        return CreateVectorExtensionOp()


@Operations.implementation_for(CreateVectorExtensionOp)
def _create_extension(operations: Operations, operation: CreateVectorExtensionOp) -> None:
    schema = f" SCHEMA {quote_ident(operation.schema)}" if operation.schema else ""
    operations.execute(f"CREATE EXTENSION IF NOT EXISTS vector{schema}")


@Operations.implementation_for(DropVectorExtensionOp)
def _drop_extension(operations: Operations, operation: DropVectorExtensionOp) -> None:
    operations.execute("DROP EXTENSION IF EXISTS vector")


@renderers.dispatch_for(CreateVectorExtensionOp)
def _render_create_extension(autogen_context: AutogenContext, op: CreateVectorExtensionOp) -> str:
    _import_ops(autogen_context)
    if op.schema is None:
        return "op.create_vector_extension()"
    return f"op.create_vector_extension(schema={op.schema!r})"


@renderers.dispatch_for(DropVectorExtensionOp)
def _render_drop_extension(autogen_context: AutogenContext, op: DropVectorExtensionOp) -> str:
    _import_ops(autogen_context)
    return "op.drop_vector_extension()"


def _import_ops(autogen_context: AutogenContext) -> None:
    # The migration then runs under any env.py, not only one that imports this module.
    autogen_context.imports.add(f"import {__name__}  # noqa: F401  (op.*_vector_* operations)")


def process_revision_directives(
    context: MigrationContext, revision: Any, directives: list[MigrationScript]
) -> None:
    """Alembic's ``process_revision_directives`` hook: when an autogenerated revision adds pgvs
    columns and the database has no ``vector`` extension, the upgrade starts with
    ``op.create_vector_extension()`` and the downgrade ends with ``op.drop_vector_extension()``.

    Chain it from your own hook if you have one: ``process_revision_directives(context,
    revision, directives)``.
    """
    if not directives or context.connection is None:
        return
    script = directives[0]
    pairs = zip(script.upgrade_ops_list, script.downgrade_ops_list, strict=False)
    for upgrade_ops, downgrade_ops in pairs:
        if not _adds_pgvs_columns(upgrade_ops.ops):
            continue
        installed = context.connection.scalar(
            text("SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'vector'")
        )
        if installed:
            return
        upgrade_ops.ops.insert(0, CreateVectorExtensionOp())
        downgrade_ops.ops.append(DropVectorExtensionOp())


def _adds_pgvs_columns(ops: Iterable[MigrateOperation]) -> bool:
    for op in ops:
        nested = getattr(op, "ops", None)
        if nested is not None and _adds_pgvs_columns(nested):
            return True
        if isinstance(op, CreateTableOp):
            types: list[object] = [c.type for c in op.columns if isinstance(c, Column)]
        elif isinstance(op, AddColumnOp):
            types = [op.column.type]
        elif isinstance(op, AlterColumnOp):
            types = [op.modify_type]
        else:
            types = []
        if any(isinstance(type_, _PgvsType) for type_ in types):
            return True
    return False


# -- vector indexes ------------------------------------------------------------------------------


@Operations.register_operation("create_vector_index")
class CreateVectorIndexOp(MigrateOperation):
    """An HNSW or IVFFlat index on a pgvs column; see :func:`vector_index` for the options."""

    def __init__(
        self,
        index_name: str,
        table_name: str,
        column_name: str,
        *,
        column_type: _PgvsType | None = None,
        metric: str = "cosine",
        method: Method = "hnsw",
        m: int | None = None,
        ef_construction: int | None = None,
        lists: int | None = None,
        where: ColumnElement[bool] | TextClause | str | None = None,
        schema: str | None = None,
        concurrently: bool = False,
        if_not_exists: bool = False,
        quantization: Quantization = "none",
    ) -> None:
        self.index_name = index_name
        self.table_name = table_name
        self.column_name = column_name
        self.column_type = column_type
        self.metric = metric
        self.method = method
        self.params = {"m": m, "ef_construction": ef_construction, "lists": lists}
        self.quantization = quantization
        self.where = where
        self.schema = schema
        self.concurrently = concurrently
        self.if_not_exists = if_not_exists

    @classmethod
    def create_vector_index(
        cls, operations: Operations, index_name: str, table_name: str, column_name: str, **kw: Any
    ) -> Any:
        return operations.invoke(cls(index_name, table_name, column_name, **kw))

    def reverse(self) -> DropVectorIndexOp:
        return DropVectorIndexOp(
            self.index_name, self.table_name, schema=self.schema, concurrently=self.concurrently
        )


@Operations.register_operation("drop_vector_index")
class DropVectorIndexOp(MigrateOperation):
    """``DROP INDEX [CONCURRENTLY] IF EXISTS``."""

    def __init__(
        self,
        index_name: str,
        table_name: str | None = None,
        *,
        schema: str | None = None,
        concurrently: bool = False,
    ) -> None:
        self.index_name = index_name
        self.table_name = table_name
        self.schema = schema
        self.concurrently = concurrently

    @classmethod
    def drop_vector_index(
        cls, operations: Operations, index_name: str, table_name: str | None = None, **kw: Any
    ) -> Any:
        return operations.invoke(cls(index_name, table_name, **kw))


@Operations.implementation_for(CreateVectorIndexOp)
def _create_vector_index(operations: Operations, operation: CreateVectorIndexOp) -> None:
    column_type = operation.column_type or _reflected_type(operations, operation)
    table = Table(
        operation.table_name,
        MetaData(),
        Column(operation.column_name, column_type),
        schema=operation.schema,
    )
    index = vector_index(
        operation.index_name,
        table.c[operation.column_name],
        metric=operation.metric,
        method=operation.method,
        where=operation.where,
        concurrently=operation.concurrently,
        quantization=operation.quantization,
        **operation.params,
    )

    # A quantized index is on an expression (labelled: its operator class is keyed by the label).
    columns = [operation.column_name] if operation.quantization == "none" else index.expressions

    def create() -> None:
        operations.create_index(
            operation.index_name,
            operation.table_name,
            columns,
            schema=operation.schema,
            if_not_exists=operation.if_not_exists or None,
            **index.dialect_kwargs,
        )

    _run(operations, create, concurrently=operation.concurrently)


@Operations.implementation_for(DropVectorIndexOp)
def _drop_vector_index(operations: Operations, operation: DropVectorIndexOp) -> None:
    def drop() -> None:
        operations.drop_index(
            operation.index_name,
            operation.table_name,
            schema=operation.schema,
            if_exists=True,
            postgresql_concurrently=operation.concurrently,
        )

    _run(operations, drop, concurrently=operation.concurrently)


def _run(operations: Operations, ddl: Any, *, concurrently: bool) -> None:
    if not concurrently:
        ddl()
        return
    # PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY inside a transaction block.
    with operations.get_context().autocommit_block():
        ddl()


def _reflected_type(operations: Operations, operation: CreateVectorIndexOp) -> _PgvsType:
    where = f"{operation.table_name}.{operation.column_name}"
    if operations.get_context().as_sql:
        raise ConfigurationError(
            f"op.create_vector_index({operation.index_name!r}): offline (--sql) migrations cannot "
            f"read the type of {where}",
            hint="Pass column_type=, e.g. column_type=Vector(768).",
        )
    columns = inspect(operations.get_bind()).get_columns(
        operation.table_name, schema=operation.schema
    )
    for column in columns:
        if column["name"] == operation.column_name:
            found = column["type"]
            if isinstance(found, BIT):
                return Bit(found.length)
            if isinstance(found, _PgvsType):
                return found
            raise ConfigurationError(
                f"op.create_vector_index({operation.index_name!r}): {where} is {found}, not a "
                "pgvector column"
            )
    raise ConfigurationError(f"op.create_vector_index({operation.index_name!r}): no column {where}")
