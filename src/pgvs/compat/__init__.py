"""Drop-in names for code written against other pgvector clients.

- :mod:`pgvs.compat.pgvector` (and :mod:`pgvs.compat.pgvector.asyncpg`): pgvector-python's
  ``Vector``, ``HalfVector``, ``SparseVector``, ``Bit`` and ``register_vector``;
- :mod:`pgvs.compat.asyncpg_vector`: asyncpg_vector's ``Vector``, ``HalfVector``,
  ``SparseVector`` and ``register_vector``.

Moving over is an import change (``from pgvector import Vector`` becomes
``from pgvs.compat.pgvector import Vector``). Each class is a thin subclass of the pgvs type, so
the values are pgvs values (same checks, same codecs, usable wherever pgvs takes one), with the
other library's method names and constructor shapes added. Where pgvs is deliberately stricter
(NaN, infinities, empty vectors, out-of-range sparse indices: the server refuses them too), the
compat classes are as strict; README.md, "Moving from pgvector-python / asyncpg_vector", lists
every difference with its one-line replacement.
"""
