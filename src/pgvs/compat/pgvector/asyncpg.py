"""pgvector-python's ``pgvector.asyncpg.register_vector`` on pgvs' codecs."""

from __future__ import annotations

from typing import Any

import asyncpg

from .._shared import bools_allowed, install
from . import HalfVector, SparseVector, Vector

__all__ = ["register_vector"]


async def register_vector(conn: asyncpg.Connection[Any], schema: str | None = None) -> None:
    """Install pgvs' binary codecs for ``vector``, ``halfvec`` and ``sparsevec``, returning
    :mod:`pgvs.compat.pgvector`'s ``Vector``, ``HalfVector`` and ``SparseVector``.

    Parameters may be those types, pgvs' own, numpy arrays or lists (bools as 1.0 / 0.0).
    ``bit``/``varbit`` keep asyncpg's codec (``asyncpg.BitString``), as with pgvector-python.
    ``schema`` defaults to wherever the ``vector`` extension is installed (pgvector-python
    assumes ``public``). A pgvector without ``halfvec``/``sparsevec`` still gets ``vector``.
    """
    await install(
        conn,
        schema,
        {
            "vector": Vector._from_wire,
            "halfvec": HalfVector._from_wire,
            "sparsevec": SparseVector._from_wire,
        },
        wrap_encoder=bools_allowed,
    )
