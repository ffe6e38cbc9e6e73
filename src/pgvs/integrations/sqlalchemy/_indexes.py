"""``vector_index``: a SQLAlchemy ``Index`` for HNSW or IVFFlat, checked by pgvs's index rules."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Column, Index, Table, event, text
from sqlalchemy.sql.elements import ColumnElement, TextClause

from ...config import _METRIC_ALIASES, _METRICS_BY_TYPE, METRICS
from ...errors import ConfigurationError
from ...indexes import check_index_params, index_problem, operator_class
from ._types import _PgvsType

__all__ = ["vector_index"]

Method = Literal["hnsw", "ivfflat"]


def vector_index(
    name: str,
    column: Any,
    *,
    metric: str = "cosine",
    method: Method = "hnsw",
    m: int | None = None,
    ef_construction: int | None = None,
    lists: int | None = None,
    where: ColumnElement[bool] | TextClause | str | None = None,
    concurrently: bool = False,
) -> Index:
    """An HNSW (default) or IVFFlat index on a pgvs column, with pgvector's operator class for
    ``metric`` and the build parameters as ``WITH (...)``.

    ``column`` is a column, an ORM attribute or, inside ``__table_args__``, the column's name (the
    operator class is then chosen when the index joins its table). ``metric`` is one of
    ``cosine``, ``euclidean`` (``l2``), ``inner_product`` (``ip``), ``l1`` for vector, halfvec
    and sparsevec columns, ``hamming`` or ``jaccard`` for bit columns. ``m`` and
    ``ef_construction`` (HNSW) and ``lists`` (IVFFlat) are checked against pgvector's bounds;
    left out, pgvector's defaults apply (m=16, ef_construction=64, lists=100). ``where`` makes a
    partial index (a SQL expression, or SQL text). ``concurrently=True`` renders
    ``CREATE INDEX CONCURRENTLY``, which PostgreSQL runs only outside a transaction (in Alembic,
    inside ``op.get_context().autocommit_block()``, or use ``op.create_vector_index``).

    Impossible combinations (IVFFlat on sparsevec, L1 with IVFFlat, a vector column over 2,000
    dimensions, a bit metric on a float column) raise :class:`pgvs.errors.ConfigurationError`.
    """
    canonical = _METRIC_ALIASES.get(str(metric).lower(), str(metric).lower())
    if canonical not in METRICS:
        raise ConfigurationError(
            f"metric {metric!r} is not one of {', '.join(METRICS)} "
            f"(aliases: {', '.join(sorted(_METRIC_ALIASES))})"
        )
    if method not in ("hnsw", "ivfflat"):
        raise ConfigurationError(f"index method {method!r} is not one of hnsw, ivfflat")
    given = {"m": m, "ef_construction": ef_construction, "lists": lists}
    params = check_index_params(method, {k: v for k, v in given.items() if v is not None})
    if isinstance(where, str):
        where = text(where)

    kwargs: dict[str, Any] = {"postgresql_using": method}
    if params:
        kwargs["postgresql_with"] = params
    if where is not None:
        kwargs["postgresql_where"] = where
    if concurrently:
        kwargs["postgresql_concurrently"] = True

    target = column.__clause_element__() if hasattr(column, "__clause_element__") else column
    if isinstance(target, Column) and isinstance(target.type, _PgvsType):
        kwargs["postgresql_ops"] = {target.key: _opclass(target, canonical, method)}
        return Index(name, column, **kwargs)
    if isinstance(target, Column) or not isinstance(target, str):
        raise ConfigurationError(
            f"vector_index({name!r}): the column must be a pgvs Vector, HalfVector, "
            f"SparseVector or Bit column (or its name), got {target!r}"
        )
    index = Index(name, target, **kwargs)

    # A name in __table_args__: the column's type is known only once the index is on its table.
    @event.listens_for(index, "after_parent_attach")
    def _choose_opclass(index: Index, table: Table) -> None:
        resolved = table.c.get(target)
        if resolved is None or not isinstance(resolved.type, _PgvsType):
            raise ConfigurationError(
                f"vector_index({name!r}): {table.name}.{target} is not a pgvs vector column"
            )
        index.dialect_options["postgresql"]["ops"] = {target: _opclass(resolved, canonical, method)}

    return index


def _opclass(column: Column[Any], metric: str, method: Method) -> str:
    column_type = column.type
    assert isinstance(column_type, _PgvsType)
    kind = column_type._kind
    if metric not in _METRICS_BY_TYPE[kind]:  # type: ignore[index]
        raise ConfigurationError(
            f"metric {metric!r} does not apply to {kind} column {column.key!r}; use one of "
            f"{', '.join(_METRICS_BY_TYPE[kind])}"  # type: ignore[index]
        )
    if column_type.dim is None and kind != "sparsevec":
        raise ConfigurationError(
            f"column {column.key!r} has no dimensions ({column_type!r}); pgvector indexes only "
            f"columns declared with them, e.g. {type(column_type).__name__}(768)"
        )
    problem = index_problem(
        vector_type=kind,
        metric=metric,
        dimensions=column_type.dim or 0,
        index_type=method,
        quantization="none",
    )
    if problem is not None:
        raise problem
    return operator_class(kind, metric, method)
