"""The optional compiled fast paths (``pgvs._speedups``), or None when they are not available.

The extension is built by the wheel build hook when a C compiler is present; pure Python is the
reference and always works. ``PGVS_NO_EXTENSIONS=1`` in the environment turns the extension off
at import time (the pure-Python encoders are then used everywhere).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

DenseVectorWire = Callable[[Any], "bytes | None"]
Float32Rows = Callable[[Any, int], "bytearray | None"]


def flag(name: str) -> bool:
    """Whether environment switch ``name`` is on ("", "0", "false" and "no" mean off; the build
    hook, hatch_build.py, reads the switches the same way)."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _load() -> tuple[DenseVectorWire, DenseVectorWire, Float32Rows] | tuple[None, None, None]:
    if flag("PGVS_NO_EXTENSIONS"):
        return None, None, None
    try:
        from .._speedups import dense_halfvec_wire, dense_vector_wire, float32_rows
    except ImportError:
        return None, None, None
    return dense_vector_wire, dense_halfvec_wire, float32_rows


#: ``dense_vector_wire(values)``: ``vector`` wire bytes of a 1-D contiguous native float32/float64
#: buffer, or of an exact list/tuple of exact floats and ints, whose values are all finite in
#: float32, else None (then the pure-Python path decides and names the offending element).
#: ``dense_halfvec_wire(values)``: the same for ``halfvec`` (through float32, then float16, ties to
#: even; None when a value is not finite or rounds beyond ±65504). Both are None when the
#: extension is absent or disabled. They accept any such buffer (memoryviews and ctypes arrays
#: too): callers pass them only the types whose Python path means the same thing.
#: ``float32_rows(rows, dim)``: a bytearray of native float32 values from an exact list/tuple of
#: exact lists/tuples of ``dim`` exact floats and ints, all finite in float32, else None (the
#: general path then names the offending row).
dense_vector_wire, dense_halfvec_wire, float32_rows = _load()
