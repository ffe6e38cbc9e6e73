"""Python values for pgvector's types, in exactly pgvector's binary and text layouts.

================ ====================== ================================================
Python           PostgreSQL             limits (checked before anything is sent)
================ ====================== ================================================
``Vector``       ``vector``             1..16,000 finite float32
``HalfVector``   ``halfvec``            1..16,000 finite float16 (values round to ±65504)
``SparseVector`` ``sparsevec``          dim 1..10⁹, at most 16,000 non-zero float32
``Bit``          ``bit`` / ``varbit``   0..2³¹-8 bits
================ ====================== ================================================

Invalid input raises :class:`pgvs.errors.ValidationError` (a ``ValueError``) whose message names
the offending position, e.g. ``vector element 17 is NaN``. Bools are refused as elements of the
float types (a bool in an embedding is a bug; bit strings are :class:`Bit`).

This package never imports numpy by itself: numpy is imported when a numpy array is passed in or
``to_numpy()`` is called. Likewise scipy, which is optional: ``SparseVector`` takes a one-row
``scipy.sparse`` array or matrix when scipy is in use, and ``to_coo()`` needs it installed.

The values have ``len()``, indexing and iteration, but through ``__getitem__`` rather than
``__iter__``, so that a list of them is a one-dimensional ``vector[]`` (etc.) parameter for
asyncpg instead of a list of sub-arrays (see ``_common``).

The ``encode_*`` / ``decode_*`` functions are the codec functions :func:`pgvs.register_vector`
installs in asyncpg; they are public so that code which builds wire bytes itself uses the very
same checks. ``SPEEDUPS`` says whether the compiled fast path of the ``vector`` and ``halfvec``
encoders (``pgvs._speedups``, built at install time when a C compiler is available) is in use;
it returns exactly the bytes of the pure-Python path, which remains the reference.

For many rows at once, ``Vector.from_matrix(matrix)`` / ``HalfVector.from_matrix`` validate and
convert a whole 2-D numpy array in one pass; the encoders pass the resulting values
through without further work.
"""

from __future__ import annotations

from ._bit import Bit, decode_bit, encode_bit
from ._common import (
    BIT_MAX_LENGTH,
    HALF_MAX,
    HALFVEC_MAX_DIM,
    SPARSEVEC_MAX_DIM,
    SPARSEVEC_MAX_NNZ,
    VECTOR_MAX_DIM,
)
from ._halfvec import HalfVector, decode_halfvec, encode_halfvec
from ._native import dense_vector_wire as _dense_vector_wire
from ._sparsevec import SparseVector, decode_sparsevec, encode_sparsevec
from ._vector import DenseVector, Vector, decode_vector, encode_vector

#: True when the compiled ``vector`` and ``halfvec`` encoders are loaded (False without a C
#: build, or with ``PGVS_NO_EXTENSIONS=1`` set in the environment).
SPEEDUPS: bool = _dense_vector_wire is not None
del _dense_vector_wire  # callers use the copies in _numpy, _vector and _halfvec

__all__ = [
    "BIT_MAX_LENGTH",
    "HALFVEC_MAX_DIM",
    "HALF_MAX",
    "SPARSEVEC_MAX_DIM",
    "SPARSEVEC_MAX_NNZ",
    "SPEEDUPS",
    "VECTOR_MAX_DIM",
    "Bit",
    "DenseVector",
    "HalfVector",
    "SparseVector",
    "Vector",
    "decode_bit",
    "decode_halfvec",
    "decode_sparsevec",
    "decode_vector",
    "encode_bit",
    "encode_halfvec",
    "encode_sparsevec",
    "encode_vector",
]
