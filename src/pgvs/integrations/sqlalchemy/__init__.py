"""pgvs for SQLAlchemy 2: pgvector column types, distance comparators, aggregates, vector
indexes, and binary transfer on ``postgresql+asyncpg``. ``pip install 'pgvs[sqlalchemy]'``.

::

    from pgvs.integrations.sqlalchemy import Vector, avg, register, vector_index

    class Doc(Base):
        __tablename__ = "docs"
        id: Mapped[int] = mapped_column(primary_key=True)
        content: Mapped[str]
        embedding: Mapped[np.ndarray] = mapped_column(Vector(768))
        metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
        __table_args__ = (vector_index("docs_embedding_idx", "embedding", metric="cosine"),)

    engine = create_async_engine("postgresql+asyncpg://...")
    register(engine)  # binary vectors on the wire; once, before the engine connects
    ...
    rows = await session.scalars(
        select(Doc).order_by(Doc.embedding.cosine_distance(query)).limit(10)
    )
    centroid = await session.scalar(select(avg(Doc.embedding)))

* Types: :class:`Vector`, :class:`HalfVector`, :class:`SparseVector` (``dim``) and :class:`Bit`
  (``length``). Values bound to them are validated before the statement is sent (dimension,
  NaN/infinity, type): a bad one raises :class:`VectorValidationError`, a
  :class:`pgvs.errors.ValidationError`. ``returns="numpy"`` or ``returns="pgvs"`` chooses what
  comes back (numpy for the dense types, pgvs values for sparse and bit, by default).
* Comparators: ``l2_distance`` (``<->``), ``cosine_distance`` (``<=>``), ``max_inner_product``
  (``<#>``), ``l1_distance`` (``<+>``) on the float types; ``hamming_distance`` (``<~>``) and
  ``jaccard_distance`` (``<%>``) on :class:`Bit`.
* :func:`avg` / :func:`sum` return the column's type (a vector).
* :func:`vector_index` builds the ``Index`` with pgvector's operator class and ``WITH`` params;
  ``quantization="halfvec"`` / ``"binary"`` indexes :func:`quantized` expressions (vector
  columns over 2,000 dimensions need one), which queries order by to use the index.
* :func:`register` installs pgvs's binary codecs on an asyncpg engine. Without it (and on
  psycopg) values travel in pgvector's text form.
* Alembic: :mod:`pgvs.integrations.sqlalchemy.alembic` (``render_item`` for autogenerate,
  ``op.create_vector_extension()``, ``op.create_vector_index(...)``).

Importing this module maps the ``vector``, ``halfvec`` and ``sparsevec`` types of reflected
tables to these classes (SQLAlchemy's PostgreSQL ``ischema_names``), so Alembic's autogenerate
compares them instead of warning about unknown types.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql.base import ischema_names

from ._indexes import quantized, vector_index
from ._types import (
    Bit,
    HalfVector,
    SparseVector,
    Vector,
    VectorValidationError,
    avg,
    register,
    sum,
)

__all__ = [
    "Bit",
    "HalfVector",
    "SparseVector",
    "Vector",
    "VectorValidationError",
    "avg",
    "quantized",
    "register",
    "sum",
    "vector_index",
]

for _name, _type in (("vector", Vector), ("halfvec", HalfVector), ("sparsevec", SparseVector)):
    ischema_names[_name] = _type
del _name, _type

# Alembic writes ``pgvs.integrations.sqlalchemy.Vector(dim=768)``: the types' public home.
for _cls in (Vector, HalfVector, SparseVector, Bit):
    _cls.__module__ = __name__
del _cls
