"""``scipy.sparse`` to and from ``SparseVector``: imported only once scipy is in use.

Every scipy sparse format (coo, csr, csc, bsr, dia, dok, lil), in its ``*_array`` and
``*_matrix`` flavours, is read through its COO form; a value is one row, so a 2-D input must
have shape ``(1, dim)`` and a 1-D sparse array (scipy >= 1.13) shape ``(dim,)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._common import fail


def sparse_pairs(matrix: Any) -> tuple[int, list[tuple[int, Any]]]:
    """``(dim, [(0-based index, value), ...])`` of a one-row scipy sparse array or matrix.

    Entries stored more than once are summed, which is what the matrix means to scipy itself;
    the caller checks the dimension count and the values (and drops explicit zeros).
    """
    name = type(matrix).__name__
    shape = tuple(matrix.shape)
    if len(shape) == 1:
        dim = shape[0]
    elif len(shape) == 2 and shape[0] == 1:
        dim = shape[1]
    else:
        fail(
            f"sparsevec from a scipy sparse {name} needs a single row, shape (1, n) or (n,); "
            f"got shape {shape}"
        )
    code = matrix.dtype.kind
    if code == "b":
        fail(f"sparsevec input is a bool scipy sparse {name}; sparsevec elements must be numbers")
    if code not in "fiu":
        fail(f"sparsevec input must hold real numbers, got a scipy sparse {name} of {matrix.dtype}")
    coo = matrix.tocoo(copy=True)  # a copy: sum_duplicates() works in place
    coo.sum_duplicates()
    indices = coo.coords[-1] if hasattr(coo, "coords") else coo.col
    return dim, list(zip(indices.tolist(), coo.data.tolist(), strict=True))


def to_coo(dim: int, indices: Sequence[int], values: Sequence[float]) -> Any:
    """A ``1 x dim`` float32 ``scipy.sparse.coo_array`` of the given non-zero elements."""
    try:
        import numpy as np
        from scipy.sparse import coo_array
    except ImportError as exc:
        raise ImportError("SparseVector.to_coo() needs scipy: pip install scipy") from exc
    rows = np.zeros(len(indices), dtype=np.int32)
    columns = np.array(indices, dtype=np.int32)
    return coo_array(
        (np.array(values, dtype=np.float32), (rows, columns)), shape=(1, dim), dtype=np.float32
    )
