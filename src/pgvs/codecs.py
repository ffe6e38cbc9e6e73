"""Binary asyncpg codecs for pgvector's types (and, on request, PostgreSQL's ``bit`` / ``varbit``).

::

    conn = await asyncpg.connect(dsn)
    await register_vector(conn)                     # or: create_pool(dsn, init=register_vector)
    await conn.execute("INSERT INTO items (embedding) VALUES ($1)", numpy_row_or_list)
    row = await conn.fetchrow("SELECT embedding FROM items")   # -> pgvs.Vector

    # numpy rows out instead (the store's hot path):
    pool = await asyncpg.create_pool(dsn, init=functools.partial(register_vector, numpy=True))

What each type accepts as a parameter, and what it returns:

- ``vector``: a Vector, HalfVector, numpy array or sequence of numbers; returns
  :class:`~pgvs.Vector`, or with ``numpy=True`` a writable native float32 numpy array.
- ``halfvec``: the same inputs; returns :class:`~pgvs.HalfVector`, or with ``numpy=True`` a
  float32 numpy array (float16 values are exact in float32).
- ``sparsevec``: a SparseVector, or a dense numpy array / sequence (its non-zero elements);
  returns :class:`~pgvs.SparseVector` either way. A bare ``dict`` is refused, since it does not
  say how many dimensions there are: pass ``SparseVector(mapping, dim=...)``. A dense array of a
  10⁹-dimension value is not something to build by accident; ``.to_numpy()`` does it on request.
- ``bit`` / ``varbit`` are PostgreSQL's own types, so by default :func:`register_vector` leaves
  them to asyncpg (``asyncpg.BitString`` in and out, for every table of the connection, exactly
  as without pgvs). With ``bit=True`` it installs pgvs' codec instead: a Bit, an
  ``asyncpg.BitString``, a ``"0101"`` string, bools, or a numpy bool array in; :class:`~pgvs.Bit`
  out (``.to_numpy()`` gives bools).

Every encoder also takes ``bytes`` already in the type's wire layout, checked as the type's
``from_binary`` does, so batch writers may pre-encode rows.

Every value is validated on the client before it is sent (see :mod:`pgvs.types`); values the
server sends are trusted and wrapped without re-checking. asyncpg reports an encoder's refusal as
``asyncpg.DataError("invalid input for query argument $1: ...")`` whose ``__cause__`` is the
:class:`~pgvs.errors.ValidationError` naming the element.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from .errors import ExtensionMissingError
from .types import (
    decode_bit,
    decode_halfvec,
    decode_sparsevec,
    decode_vector,
    encode_bit,
    encode_halfvec,
    encode_sparsevec,
    encode_vector,
)

__all__ = ["codec_functions", "install_codecs", "register_vector", "vector_extension_schema"]

logger = logging.getLogger("pgvs.codecs")

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]

_EXTENSION_HINT = (
    "Run `CREATE EXTENSION vector;` in this database as a role allowed to (a superuser or the "
    "database owner on PostgreSQL 13+), or install pgvector on the server first."
)

_EXTENSION_SCHEMA_SQL = """
SELECT n.nspname
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'vector'
"""

# Types added after pgvector's first releases (halfvec and sparsevec arrived in 0.7.0): a server
# with an older pgvector simply has no such type, and still gets the rest.
_OPTIONAL_TYPES = ("halfvec", "sparsevec")


def codec_functions(*, numpy: bool = False) -> dict[str, tuple[Encoder, Decoder]]:
    """The ``(encoder, decoder)`` pair :func:`register_vector` installs for each type name
    (``bit`` and ``varbit`` only with ``bit=True``).

    These are exactly the callables asyncpg invokes per value (encoders return the binary wire
    bytes, decoders receive them); benchmarks and batch writers can call them directly.
    """
    vector_encoder: Encoder = encode_vector
    vector_decoder: Decoder = decode_vector
    halfvec_decoder: Decoder = decode_halfvec
    if numpy or sys.modules.get("numpy") is not None:
        # numpy is (or will be) in use anyway: take the encoder whose fast path is a float32 row.
        from .types import _numpy

        vector_encoder = _numpy.encode_vector
        if numpy:
            vector_decoder = _numpy.decode_vector
            halfvec_decoder = _numpy.decode_halfvec
    return {
        "vector": (vector_encoder, vector_decoder),
        "halfvec": (encode_halfvec, halfvec_decoder),
        "sparsevec": (encode_sparsevec, decode_sparsevec),
        "bit": (encode_bit, decode_bit),
        "varbit": (encode_bit, decode_bit),
    }


async def vector_extension_schema(conn: asyncpg.Connection[Any]) -> str | None:
    """The schema the ``vector`` extension is installed in, or None if it is not installed."""
    schema: str | None = await conn.fetchval(_EXTENSION_SCHEMA_SQL)
    return schema


async def register_vector(
    conn: asyncpg.Connection[Any],
    *,
    schema: str | None = None,
    numpy: bool = False,
    bit: bool = False,
) -> None:
    """Install binary codecs for ``vector``, ``halfvec`` and ``sparsevec`` (and on request for
    ``bit`` and ``varbit``).

    Usable directly as ``asyncpg.create_pool(init=register_vector)``, or with options through
    ``functools.partial(register_vector, numpy=True)``.

    ``schema`` is where pgvector's types live; by default it is looked up from ``pg_extension``.
    ``numpy=True`` makes ``vector`` and ``halfvec`` columns come back as writable native float32
    numpy arrays instead of :class:`~pgvs.Vector` / :class:`~pgvs.HalfVector`.

    ``bit`` and ``varbit`` are PostgreSQL's own types, used by tables that have nothing to do
    with vectors, so they keep asyncpg's codec (``asyncpg.BitString`` in and out) unless
    ``bit=True``: then every ``bit``/``varbit`` value of the connection comes back as
    :class:`~pgvs.Bit`, and parameters may be a Bit, a ``BitString``, a ``"0101"`` string, bools
    or a bool array.

    Raises :class:`~pgvs.errors.ExtensionMissingError` if pgvector is not installed in the
    database (or not in the given ``schema``). A pgvector too old to have ``halfvec`` or
    ``sparsevec`` still gets the other codecs.
    """
    await install_codecs(conn, codec_functions(numpy=numpy), schema=schema, bit=bit)


async def install_codecs(
    conn: asyncpg.Connection[Any],
    functions: Mapping[str, tuple[Encoder, Decoder]],
    *,
    schema: str | None,
    bit: bool,
) -> None:
    """:func:`register_vector` with the given ``(encoder, decoder)`` pairs, keyed by type name
    as :func:`codec_functions` returns them (``pgvs.compat`` installs its own decoders)."""
    if schema is None:
        schema = await vector_extension_schema(conn)
        if schema is None:
            raise ExtensionMissingError(
                "the pgvector extension (`vector`) is not installed in this database",
                hint=_EXTENSION_HINT,
            )
    for name in ("vector", *_OPTIONAL_TYPES):
        encoder, decoder = functions[name]
        try:
            await conn.set_type_codec(
                name, schema=schema, encoder=encoder, decoder=decoder, format="binary"
            )
        except ValueError as exc:
            # asyncpg's exact wording for a type that does not exist (Connection._introspect_type).
            if str(exc) != f"unknown type: {schema}.{name}":
                raise
            if name == "vector":
                raise ExtensionMissingError(
                    f"type {schema}.vector does not exist: the pgvector extension is not "
                    f"installed in schema {schema!r} of this database",
                    hint=_EXTENSION_HINT,
                ) from exc
            logger.debug("pgvector in schema %s has no %s type; not registering it", schema, name)
    if not bit:
        return
    # bit and varbit are PostgreSQL's own types; asyncpg lets a custom codec replace its builtin.
    for name in ("bit", "varbit"):
        encoder, decoder = functions[name]
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=encoder, decoder=decoder, format="binary"
        )
