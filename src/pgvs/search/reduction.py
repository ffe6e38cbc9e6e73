"""PCA for two-stage search: fit a projection, and write it as an immutable SQL function. Pure.

A PCA store (``index_dimensions=N, reduction="pca"``) indexes ``f(embedding)::vector(N)`` where
``f`` is a SQL function of the store's own, and searches order by ``f(embedding) <-> f($1)``
before re-ranking by the full vector. The projection therefore lives in the database, in the
function's body: every process projects rows and queries the same way, writes need nothing
(the index computes ``f`` as rows arrive, on every write path, COPY included), and a query is
projected by the server.

``f(v)`` is ``[v . c_1, ..., v . c_N]`` with ``c_i`` the top principal directions of a sample of
the stored vectors. The mean is left out: it shifts every projected point alike, so L2 distances
(what the index ranks by) do not change. Until a store has rows to learn from, ``f`` is
*provisional*: the first N coordinates (the prefix), marked so in the function's comment; the
first index build fits the real projection on a sample (see :mod:`pgvs.store._index_ops`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FITTED",
    "PROVISIONAL",
    "SAMPLE_ROWS",
    "fit_components",
    "function_sql",
    "prefix_components",
]

#: Rows drawn (at random) to fit the projection.
SAMPLE_ROWS = 20_000
#: The function's comment, saying whether it was fitted on data.
PROVISIONAL = "pgvs:pca provisional (the prefix, until the first index build fits it)"
FITTED = "pgvs:pca fitted"


def prefix_components(dimensions: int, reduced: int) -> npt.NDArray[np.float32]:
    """The provisional projection: the first ``reduced`` coordinates."""
    return np.eye(reduced, dimensions, dtype=np.float32)


def fit_components(sample: npt.NDArray[Any], reduced: int) -> npt.NDArray[np.float32]:
    """The top ``reduced`` principal directions of ``sample`` (rows), as a (reduced, D) matrix.

    Needs more rows than ``reduced`` (else ValueError). Signs are fixed (largest entry of each
    direction positive) so refitting the same data gives the same function.
    """
    rows = np.asarray(sample, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] <= reduced:
        raise ValueError(f"a PCA to {reduced} dimensions needs more than {reduced} rows")
    centered = rows - rows.mean(axis=0)
    _, _, directions = np.linalg.svd(centered, full_matrices=False)
    components = directions[:reduced]
    signs = np.sign(components[np.arange(reduced), np.abs(components).argmax(axis=1)])
    fixed: npt.NDArray[np.float32] = (components * signs[:, None]).astype(np.float32)
    return fixed


def function_sql(name_sql: str, vector_type: str, components: npt.NDArray[np.float32]) -> str:
    """``CREATE OR REPLACE FUNCTION`` of the projection: one inner product per component.

    ``name_sql`` is the quoted, qualified name; the literals are the components' float32 values
    in pgvector's text form: Python's shortest repr of each value as a double, which parses
    back to the same float32 (numbers only: nothing here comes from a user). pgvector's ``<#>``
    is the negative inner product, hence the minus signs.
    """
    literals = [
        "'[" + ",".join(repr(float(x)) for x in row) + f"]'::{vector_type}" for row in components
    ]
    products = ", ".join(f"-(v <#> {literal})" for literal in literals)
    return (
        f"CREATE OR REPLACE FUNCTION {name_sql}(v {vector_type}) RETURNS vector\n"
        "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE\n"
        f"RETURN (ARRAY[{products}])::real[]::vector"
    )
