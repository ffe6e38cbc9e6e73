"""Column types for pgvector's ``vector``, ``halfvec``, ``sparsevec`` and ``bit``, their distance
comparators, the ``avg``/``sum`` aggregates and the asyncpg codec registration."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, cast

import numpy as np
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DontWrapMixin, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import ReturnTypeFromArgs
from sqlalchemy.sql.operators import OperatorType, custom_op
from sqlalchemy.types import Float, String, TypeEngine, UserDefinedType

from ... import types as pgtypes
from ...codecs import codec_functions, vector_extension_schema
from ...errors import ExtensionMissingError, ValidationError

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "Bit",
    "HalfVector",
    "SparseVector",
    "Vector",
    "VectorValidationError",
    "avg",
    "register",
    "sum",
]

logger = logging.getLogger("pgvs.integrations.sqlalchemy")

Returns: TypeAlias = Literal["numpy", "pgvs"]
_Processor: TypeAlias = "Callable[[Any], Any] | None"

# Set on a dialect by register(): its asyncpg connections carry pgvs's binary codecs, so bound
# values go out as pgvs values (the codec sends their wire bytes) instead of pgvector's text form.
_BINARY_FLAG = "_pgvs_binary_codecs"
_PGVECTOR_TYPES = ("vector", "halfvec", "sparsevec")
_DISTANCE_OPERATORS = frozenset({"<->", "<=>", "<#>", "<+>", "<~>", "<%>"})


class VectorValidationError(ValidationError, DontWrapMixin):
    """A value bound to a pgvs column was refused before the statement was sent.

    A :class:`pgvs.errors.ValidationError`; SQLAlchemy raises it as it is (``DontWrapMixin``)
    instead of wrapping it in a ``StatementError``.
    """


def _refuse(message: str, cause: BaseException | None = None) -> VectorValidationError:
    error = VectorValidationError(message)
    error.__cause__ = cause
    return error


class _PgvsType(UserDefinedType[Any]):
    """What the four column types share: DDL, bind casts, validation and result conversion."""

    cache_ok = True
    # `$1::VECTOR(768)` in statements: the server and asyncpg know the parameter's type even
    # where the expression around it does not say (VALUES lists, function arguments).
    render_bind_cast = True

    _sql_name: ClassVar[str]
    _kind: ClassVar[str]
    _size_name: ClassVar[str] = "dim"
    _default_returns: ClassVar[Returns] = "numpy"

    # ``returns`` is not keyword-only: SQLAlchemy copies types and builds their cache keys from
    # the attributes named like positional __init__ arguments.
    def __init__(self, dim: int | None = None, returns: Returns | None = None) -> None:
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"{type(self).__name__}: {self._size_name} must be a positive int")
        if returns is not None and returns not in ("numpy", "pgvs"):
            raise ValueError(f"{type(self).__name__}: returns must be 'numpy' or 'pgvs'")
        self.dim = dim
        self.returns: Returns = returns or self._default_returns

    # -- DDL and display -------------------------------------------------------------------------

    def get_col_spec(self, **kw: Any) -> str:
        return self._sql_name if self.dim is None else f"{self._sql_name}({int(self.dim)})"

    def __repr__(self) -> str:
        # Alembic's autogenerate writes this after the module name: it must be valid Python that
        # rebuilds the same type.
        args = [] if self.dim is None else [f"{self._size_name}={self.dim}"]
        if self.returns != self._default_returns:
            args.append(f"returns={self.returns!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    @property
    def python_type(self) -> type:
        return object

    # -- values ----------------------------------------------------------------------------------

    def _coerce(self, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _checked(self, value: Any) -> Any:
        """``value`` as the pgvs type of this column, or VectorValidationError."""
        try:
            coerced = self._coerce(value)
        except ValidationError as exc:
            raise _refuse(f"{self!r} column: {exc}", exc) from None
        if self.dim is not None and len(coerced) != self.dim:
            size = "bits" if self._size_name == "length" else "dimensions"
            raise _refuse(
                f"{self!r} column: the value has {len(coerced)} {size}, the column {self.dim}"
            )
        return coerced

    def bind_processor(self, dialect: Dialect) -> _Processor:
        checked = self._checked
        to_text = self._to_text

        def process(value: Any) -> Any:
            if value is None:
                return None
            coerced = checked(value)
            # Checked per value: register() may run after the processor was cached.
            if getattr(dialect, _BINARY_FLAG, False):
                return coerced
            return to_text(coerced)

        return process

    def literal_processor(self, dialect: Dialect) -> _Processor:
        quote: Callable[[str], str] | None = String()._cached_literal_processor(dialect)
        checked = self._checked

        def process(value: Any) -> str:
            text = self._to_text(checked(value))
            return quote(text) if quote is not None else f"'{text}'"

        return process

    def _to_text(self, value: Any) -> str:
        """pgvector's text form of a value already checked by :meth:`_checked`."""
        text: str = value.to_text()
        return text

    def _from_text(self, text: str) -> Any:  # pragma: no cover - overridden
        """The pgvs value of text the server sent."""
        raise NotImplementedError

    def result_processor(self, dialect: Dialect, coltype: object) -> _Processor:
        from_text = self._from_text
        numpy = self.returns == "numpy"

        def process(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):  # text protocol (psycopg, or asyncpg without register())
                value = from_text(value)
            elif not hasattr(value, "to_numpy"):  # e.g. a numpy array from another codec
                value = self._coerce(value)
            return value.to_numpy() if numpy else value

        return process

    class Comparator(UserDefinedType.Comparator[Any]):
        def _adapt_expression(
            self, op: OperatorType, other_comparator: TypeEngine.Comparator[Any]
        ) -> tuple[OperatorType, TypeEngine[Any]]:
            # pgvector's distance operators return float8, also when written as .op("<=>").
            if isinstance(op, custom_op) and op.opstring in _DISTANCE_OPERATORS:
                return op, Float()
            return super()._adapt_expression(op, other_comparator)

        def _distance(self, operator: str, other: Any) -> ColumnElement[float]:
            # The other side is bound with this column's type: it is validated (dimension, NaN)
            # and cast like the column.
            result = self.op(operator, return_type=Float)(other)
            return cast("ColumnElement[float]", result)

    comparator_factory: type[UserDefinedType.Comparator[Any]] = Comparator


class _DenseComparator(_PgvsType.Comparator):
    def l2_distance(self, other: Any) -> ColumnElement[float]:
        """``<->``: Euclidean distance."""
        return self._distance("<->", other)

    def cosine_distance(self, other: Any) -> ColumnElement[float]:
        """``<=>``: cosine distance (1 - cosine similarity)."""
        return self._distance("<=>", other)

    def max_inner_product(self, other: Any) -> ColumnElement[float]:
        """``<#>``: the negative inner product (smaller is more similar, as for distances)."""
        return self._distance("<#>", other)

    def l1_distance(self, other: Any) -> ColumnElement[float]:
        """``<+>``: taxicab distance."""
        return self._distance("<+>", other)


class _BitComparator(_PgvsType.Comparator):
    def hamming_distance(self, other: Any) -> ColumnElement[float]:
        """``<~>``: the number of differing bits."""
        return self._distance("<~>", other)

    def jaccard_distance(self, other: Any) -> ColumnElement[float]:
        """``<%>``: 1 - |a AND b| / |a OR b|."""
        return self._distance("<%>", other)


@functools.lru_cache(maxsize=32)
def _text_format(dim: int) -> str:
    # 9 significant digits name every float32 exactly (FLT_DECIMAL_DIG); one %-format of the
    # whole row is several times faster than formatting the elements one by one.
    return "[" + ",".join(["%.9g"] * dim) + "]"


class _DenseType(_PgvsType):
    _pgvs_class: ClassVar[type[pgtypes.DenseVector]]
    comparator_factory = _DenseComparator

    def _coerce(self, value: Any) -> Any:
        cls = self._pgvs_class
        if type(value) is cls:
            return value
        if isinstance(value, pgtypes.SparseVector | pgtypes.Bit):
            raise ValidationError(
                f"a {type(value).__name__} cannot be bound to a {self._kind} column"
                + (
                    "; convert it with .to_numpy() first"
                    if isinstance(value, pgtypes.SparseVector)
                    else ""
                )
            )
        return cls(value)

    def _to_text(self, value: Any) -> str:
        values = value.to_list()
        return _text_format(len(values)) % tuple(values)

    def _from_text(self, text: str) -> Any:
        # Text from the server is trusted; the pgvs value is built from float32s (the C path).
        return self._pgvs_class(np.array(text[1:-1].split(","), dtype=np.float32))


class Vector(_DenseType):
    """pgvector ``vector(dim)``: values go in as numpy arrays, sequences or :class:`pgvs.Vector`,
    and come back as float32 numpy arrays (``returns="numpy"``, the default) or
    :class:`pgvs.Vector` (``returns="pgvs"``)."""

    cache_ok = True
    _sql_name = "VECTOR"
    _kind = "vector"
    _pgvs_class = pgtypes.Vector


class HalfVector(_DenseType):
    """pgvector ``halfvec(dim)``: like :class:`Vector`, in half precision (values round to
    float16; beyond ±65504 is an error). Returns float32 numpy arrays or :class:`pgvs.HalfVector`."""

    cache_ok = True
    _sql_name = "HALFVEC"
    _kind = "halfvec"
    _pgvs_class = pgtypes.HalfVector


class SparseVector(_PgvsType):
    """pgvector ``sparsevec(dim)``: values go in as :class:`pgvs.SparseVector` or dense
    sequences / numpy arrays (their non-zero elements are kept), and come back as
    :class:`pgvs.SparseVector` (the default) or dense float32 numpy arrays (``returns="numpy"``)."""

    cache_ok = True
    _sql_name = "SPARSEVEC"
    _kind = "sparsevec"
    _default_returns = "pgvs"
    comparator_factory = _DenseComparator

    def _coerce(self, value: Any) -> Any:
        if type(value) is pgtypes.SparseVector:
            return value
        if isinstance(value, pgtypes.Bit):
            raise ValidationError("a Bit cannot be bound to a sparsevec column")
        if isinstance(value, dict):
            # A mapping says nothing of its dimensions; the column does.
            if self.dim is None:
                raise ValidationError(
                    "a dict needs a dimension: use SparseVector(dim) as the column type or bind "
                    "pgvs.SparseVector(mapping, dim=...)"
                )
            return pgtypes.SparseVector(value, dim=self.dim)
        return pgtypes.SparseVector(value)

    def _to_text(self, value: Any) -> str:
        pairs = ",".join(
            [f"{i + 1}:{v:.9g}" for i, v in zip(value.indices, value.values, strict=True)]
        )
        return f"{{{pairs}}}/{value.dim}"

    def _from_text(self, text: str) -> Any:
        return pgtypes.SparseVector.from_text(text)


class Bit(_PgvsType):
    """PostgreSQL ``bit(length)``, for pgvector's Hamming and Jaccard distances: values go in as
    :class:`pgvs.Bit`, ``"0101"`` strings, bools or numpy bool arrays, and come back as
    :class:`pgvs.Bit` (the default) or numpy bool arrays (``returns="numpy"``).

    Bit strings keep asyncpg's own ``bit`` codec (SQLAlchemy's ``BIT`` type relies on it), so
    :func:`register` leaves ``bit`` alone and this type converts to and from ``asyncpg.BitString``.
    """

    cache_ok = True
    _sql_name = "BIT"
    _kind = "bit"
    _size_name = "length"
    _default_returns = "pgvs"
    comparator_factory = _BitComparator

    def __init__(self, length: int | None = None, returns: Returns | None = None) -> None:
        super().__init__(length, returns=returns)
        self.length = length

    def _coerce(self, value: Any) -> Any:
        if type(value) is pgtypes.Bit:
            return value
        if isinstance(value, pgtypes.DenseVector | pgtypes.SparseVector):
            raise ValidationError(f"a {type(value).__name__} cannot be bound to a bit column")
        if type(value).__name__ == "BitString" and hasattr(value, "bytes"):  # asyncpg's
            return pgtypes.Bit.from_bytes(value.bytes, len(value))
        return pgtypes.Bit(value)

    def _from_text(self, text: str) -> Any:
        return pgtypes.Bit.from_text(text)

    def bind_processor(self, dialect: Dialect) -> _Processor:
        if dialect.driver != "asyncpg":
            return super().bind_processor(dialect)
        import asyncpg

        frombytes = asyncpg.BitString.frombytes
        checked = self._checked

        def process(value: Any) -> Any:
            if value is None:
                return None
            bits = checked(value)
            return frombytes(bits.to_bytes(), len(bits))

        return process


class avg(ReturnTypeFromArgs[Any]):
    """``avg(column)``, typed as the column: the centroid comes back as a vector."""

    inherit_cache = True
    package = "pgvs"


class sum(ReturnTypeFromArgs[Any]):
    """``sum(column)``, typed as the column: the element-wise sum comes back as a vector."""

    inherit_cache = True
    package = "pgvs"


# -- binary transfer on asyncpg ------------------------------------------------------------------


def register(engine: Engine | AsyncEngine, *, schema: str | None = None) -> None:
    """Send and receive ``vector``, ``halfvec`` and ``sparsevec`` in binary on this engine.

    Call it once, right after ``create_engine`` / ``create_async_engine`` and before the engine
    opens a connection: every connection it opens then gets pgvs's binary asyncpg codecs, and
    the pgvs column types bind pgvs values (sent as wire bytes, no text formatting or parsing).
    ``schema`` is where pgvector's types live (looked up when not given).

    Only ``postgresql+asyncpg`` has binary codecs; on any other driver (``postgresql+psycopg``,
    ``psycopg2``) this does nothing and values travel in pgvector's text form, which is correct
    everywhere. The ``vector`` extension must exist before the engine connects (a migration that
    creates it should run on an engine without ``register``).
    """
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if sync_engine.dialect.driver != "asyncpg":
        return
    if getattr(sync_engine.dialect, _BINARY_FLAG, False):
        return
    pool: Any = sync_engine.pool
    opened = pool.checkedin() + pool.checkedout() if hasattr(pool, "checkedin") else 0
    if opened:
        # Pooled connections made before this call have no codecs, yet values would be bound
        # for binary transfer from now on.
        raise InvalidRequestError(
            "pgvs.integrations.sqlalchemy.register() must be called before the engine opens "
            f"connections ({opened} already open); call it right after creating the engine"
        )

    def install(dbapi_connection: Any, connection_record: object) -> None:
        dbapi_connection.run_async(lambda conn: _install_codecs(conn, schema))

    event.listen(sync_engine, "connect", install)
    setattr(sync_engine.dialect, _BINARY_FLAG, True)


async def _install_codecs(conn: asyncpg.Connection[Any], schema: str | None) -> None:
    if schema is None:
        schema = await vector_extension_schema(conn)
        if schema is None:
            raise ExtensionMissingError(
                "the pgvector extension (`vector`) is not installed in this database, and "
                "pgvs.integrations.sqlalchemy.register() needs its types",
                hint="Create it first (`CREATE EXTENSION vector;`, or op.create_vector_extension() "
                "in a migration run on an engine without register()).",
            )
    functions = codec_functions()
    for name in _PGVECTOR_TYPES:
        encoder, decoder = functions[name]
        try:
            await conn.set_type_codec(
                name, schema=schema, encoder=encoder, decoder=decoder, format="binary"
            )
        except ValueError as exc:
            # Too old a pgvector for halfvec/sparsevec: those columns cannot exist either.
            if name == "vector" or str(exc) != f"unknown type: {schema}.{name}":
                raise
            logger.debug("pgvector in schema %s has no %s type", schema, name)
