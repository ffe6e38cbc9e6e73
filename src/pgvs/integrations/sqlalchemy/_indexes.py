"""``vector_index``: a SQLAlchemy ``Index`` for HNSW or IVFFlat, checked by pgvs's index rules."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Column, Index, Table, cast, event, func, text
from sqlalchemy.sql.elements import ColumnElement, TextClause

from ...config import METRIC_ALIASES, METRICS, METRICS_BY_TYPE
from ...errors import ConfigurationError
from ...indexes import check_index_params, index_problem, indexed_as, operator_class
from ._types import Bit, HalfVector, _PgvsType

__all__ = ["quantized", "vector_index"]

Method = Literal["hnsw", "ivfflat"]
Quantization = Literal["none", "halfvec", "binary"]


def quantized(column: Any, quantization: Literal["halfvec", "binary"]) -> ColumnElement[Any]:
    """The expression a quantized :func:`vector_index` indexes; order by it to use the index.

    ``"halfvec"``: ``CAST(embedding AS HALFVEC(dim))`` (for ``vector`` columns of up to 4,000
    dimensions; HNSW indexes ``vector`` only to 2,000), compared with the comparators of
    :class:`HalfVector`: ``quantized(Doc.embedding, "halfvec").cosine_distance(q)``.

    ``"binary"``: ``CAST(binary_quantize(embedding) AS BIT(dim))``, one bit per dimension (set
    where the value is positive), compared by ``hamming_distance`` with the query's bits
    (``q > 0`` of a numpy row). Fetch more candidates than you need and re-rank them by the exact
    distance: the bits alone rank coarsely.
    """
    target = _column(column, "quantized()")
    column_type = target.type
    assert isinstance(column_type, _PgvsType)
    kinds = ("vector",) if quantization == "halfvec" else ("vector", "halfvec")
    if column_type._kind not in kinds or column_type.dim is None:
        raise ConfigurationError(
            f"quantized({quantization!r}) needs a {' or '.join(kinds)} column with dimensions, "
            f"got {target.key!r} of type {column_type!r}"
        )
    if quantization == "halfvec":
        return cast(target, HalfVector(column_type.dim))
    if quantization == "binary":
        return cast(func.binary_quantize(target), Bit(column_type.dim))
    raise ConfigurationError(f"quantization {quantization!r} is not one of halfvec, binary")


def _column(column: Any, what: str) -> Column[Any]:
    target = column.__clause_element__() if hasattr(column, "__clause_element__") else column
    if not isinstance(target, Column) or not isinstance(target.type, _PgvsType):
        raise ConfigurationError(
            f"{what}: the column must be a pgvs Vector, HalfVector, SparseVector or Bit column, "
            f"got {target!r}"
        )
    return target


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
    quantization: Quantization = "none",
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

    ``quantization="halfvec"`` indexes ``CAST(column AS HALFVEC(dim))`` (vector columns of
    2,001-4,000 dimensions need it), ``"binary"`` indexes ``CAST(binary_quantize(column) AS
    BIT(dim))`` with Hamming distance; queries order by :func:`quantized` to use them.

    Impossible combinations (IVFFlat on sparsevec, L1 with IVFFlat, a vector column over 2,000
    dimensions without quantization, a bit metric on a float column) raise
    :class:`pgvs.errors.ConfigurationError`.
    """
    canonical = METRIC_ALIASES.get(str(metric).lower(), str(metric).lower())
    if canonical not in METRICS:
        raise ConfigurationError(
            f"metric {metric!r} is not one of {', '.join(METRICS)} "
            f"(aliases: {', '.join(sorted(METRIC_ALIASES))})"
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

    if quantization not in ("none", "halfvec", "binary"):
        raise ConfigurationError(
            f"quantization {quantization!r} is not one of none, halfvec, binary"
        )
    if not isinstance(column, str):
        target = _column(column, f"vector_index({name!r})")
        opclass = _opclass(target, canonical, method, quantization)
        if quantization == "none":
            kwargs["postgresql_ops"] = {target.key: opclass}
            return Index(name, target, **kwargs)
        # SQLAlchemy keys the operator class of an expression by the expression's label.
        label = f"{target.key}_{quantization}"
        kwargs["postgresql_ops"] = {label: opclass}
        return Index(name, quantized(target, quantization).label(label), **kwargs)
    if quantization != "none":
        raise ConfigurationError(
            f"vector_index({name!r}): a quantized index needs the column itself (or its ORM "
            "attribute), not its name"
        )
    column_name: str = column
    index = Index(name, column_name, **kwargs)

    # A name in __table_args__: the column's type is known only once the index is on its table.
    @event.listens_for(index, "after_parent_attach")
    def _choose_opclass(index: Index, table: Table) -> None:
        resolved = table.c.get(column_name)
        if resolved is None or not isinstance(resolved.type, _PgvsType):
            raise ConfigurationError(
                f"vector_index({name!r}): {table.name}.{column_name} is not a pgvs vector column"
            )
        index.dialect_options["postgresql"]["ops"] = {
            column_name: _opclass(resolved, canonical, method, "none")
        }

    return index


def _opclass(column: Column[Any], metric: str, method: Method, quantization: Quantization) -> str:
    column_type = column.type
    assert isinstance(column_type, _PgvsType)
    kind = column_type._kind
    if metric not in METRICS_BY_TYPE[kind]:  # type: ignore[index]
        raise ConfigurationError(
            f"metric {metric!r} does not apply to {kind} column {column.key!r}; use one of "
            f"{', '.join(METRICS_BY_TYPE[kind])}"  # type: ignore[index]
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
        quantization=quantization,
    )
    if problem is not None:
        raise problem
    return operator_class(*indexed_as(kind, metric, quantization), method)
