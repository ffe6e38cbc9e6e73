"""Vector indexes: which index, operator class, expression and parameters; which query settings.

Pure: no I/O, no driver and no store configuration (:mod:`pgvs.planning` applies these rules to
a :class:`~pgvs.config.StoreConfig`; :mod:`pgvs.store` sequences them with the catalog and the
server); docs/indexes.md is the user documentation. The rules encoded here are pgvector 0.8's:

* operator classes per column type and metric (``vector_l1_ops``, sparsevec and
  ``bit_jaccard_ops`` exist for HNSW only);
* the largest indexable column (2,000 ``vector`` dimensions, 4,000 ``halfvec``, 64,000 ``bit``;
  sparsevec rows of at most 1,000 non-zero elements for HNSW);
* IVFFlat's ``lists``: ``rows / 1000`` up to a million rows, ``sqrt(rows)`` above;
* the query-time settings ``hnsw.ef_search`` (1-1000, default 40), ``ivfflat.probes`` and the
  iterative scans of 0.8 (``hnsw.iterative_scan`` ``relaxed_order``/``strict_order``,
  ``ivfflat.iterative_scan`` ``relaxed_order`` only).

Two quantizations shrink what the index holds while the table keeps full precision:
``halfvec`` indexes ``(embedding::halfvec(n))`` (to 4,000 dimensions), ``binary`` indexes
``(binary_quantize(embedding)::bit(n))`` with Hamming distance. Searches then order by the same
expression (so the planner can use the index), take ``k * rerank_factor`` candidates and re-rank
them by the exact distance on the stored vectors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._sql import quote_ident
from .errors import ConfigurationError
from .results import IndexProgress, IndexStatus, SearchExplanation

__all__ = [
    "DEFAULT_EF_SEARCH",
    "DEFAULT_RERANK_FACTOR",
    "INDEX_TYPES",
    "MAX_EF_SEARCH",
    "MAX_INDEX_DIMENSIONS",
    "QUANTIZATIONS",
    "SPARSEVEC_HNSW_MAX_NONZERO",
    "BuildMemory",
    "IndexProgress",
    "IndexSpec",
    "IndexStatus",
    "SearchExplanation",
    "build_memory",
    "build_settings",
    "check_index_params",
    "default_lists",
    "default_probes",
    "graph_bytes",
    "index_problem",
    "indexed_as",
    "operator_class",
    "parse_meminfo",
    "parse_reloptions",
    "progress_from_row",
    "query_expression",
    "resolve_quantization",
    "uses_index",
    "version_tuple",
]

IndexType = Literal["hnsw", "ivfflat"]
Quantization = Literal["none", "halfvec", "binary"]

INDEX_TYPES: Final[tuple[IndexType, ...]] = ("hnsw", "ivfflat")
QUANTIZATIONS: Final = ("auto", "none", "halfvec", "binary")
ITERATIVE_SCANS: Final = ("relaxed_order", "strict_order", "off")

#: pgvector's limits on what an HNSW or IVFFlat index can hold, by indexed type.
MAX_INDEX_DIMENSIONS: Final[Mapping[str, int]] = {"vector": 2000, "halfvec": 4000, "bit": 64000}
#: An HNSW index on sparsevec takes rows with at most this many non-zero elements.
SPARSEVEC_HNSW_MAX_NONZERO: Final = 1000
#: pgvector's defaults and bounds for the query settings.
DEFAULT_EF_SEARCH: Final = 40
MAX_EF_SEARCH: Final = 1000
DEFAULT_PROBES: Final = 1
#: pgvs's ``hnsw.ef_search`` for the indexes it manages. With pgvector's default build (m=16,
#: ef_construction=64), recall@10 on sift5k-l2 (index scans forced) is 0.89 at pgvector's 40,
#: 0.97 at 100, 0.983 at 160 and 0.992 at 200 (glove50-5k-angular: 0.999 from 40 up). Raising
#: ef_search costs query time only, where a better graph (ef_construction) would also slow every
#: insert into the index. Set ``ef_search`` in the config to trade recall for speed.
PGVS_EF_SEARCH: Final = 200
#: Candidates per result fetched through a quantized index before the exact re-rank.
DEFAULT_RERANK_FACTOR: Final[Mapping[str, int]] = {"none": 1, "halfvec": 1, "binary": 10}

# index_params keys and their bounds (pgvector's own limits).
_PARAM_BOUNDS: Final[Mapping[IndexType, Mapping[str, tuple[int, int]]]] = {
    "hnsw": {"m": (2, 100), "ef_construction": (4, 1000)},
    "ivfflat": {"lists": (1, 32768)},
}
_OPCLASS_METRIC: Final = {
    "euclidean": "l2",
    "inner_product": "ip",
    "cosine": "cosine",
    "l1": "l1",
    "hamming": "hamming",
    "jaccard": "jaccard",
}
_IVFFLAT_MAX_LISTS: Final = 32768


# -- configuration checks ------------------------------------------------------------------------


def check_index_params(index_type: str, params: Mapping[str, Any]) -> dict[str, int]:
    """``params`` validated for ``index_type`` (a plain dict), or a ConfigurationError."""
    if not isinstance(params, Mapping):
        raise ConfigurationError("index_params must be a mapping")
    bounds = _PARAM_BOUNDS.get(index_type, {})  # type: ignore[call-overload]
    unknown = sorted(set(params) - set(bounds))
    if unknown:
        raise ConfigurationError(
            f"index_params key(s) {', '.join(map(repr, unknown))} do not apply to "
            f"{index_type}; valid: {', '.join(sorted(bounds)) or 'none'}"
        )
    checked: dict[str, int] = {}
    for key, value in params.items():
        low, high = bounds[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigurationError(
                f"index_params[{key!r}] must be an integer from {low} to {high}, got {value!r}"
            )
        checked[key] = value
    if checked.get("ef_construction", math.inf) < 2 * checked.get("m", 0):
        raise ConfigurationError(
            "index_params: ef_construction must be at least 2 * m (pgvector's rule)"
        )
    return checked


def resolve_quantization(vector_type: str, dimensions: int, requested: str) -> Quantization:
    """``auto`` becomes ``halfvec`` for 2,001-4,000-d ``vector`` columns, else ``none``."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    limit = MAX_INDEX_DIMENSIONS["vector"]
    if vector_type == "vector" and limit < dimensions <= MAX_INDEX_DIMENSIONS["halfvec"]:
        return "halfvec"
    return "none"


def indexed_as(vector_type: str, metric: str, quantization: Quantization) -> tuple[str, str]:
    """The (type, metric) the index itself holds under ``quantization``."""
    if quantization == "halfvec":
        return "halfvec", metric
    if quantization == "binary":
        return "bit", "hamming"
    return vector_type, metric


def operator_class(vector_type: str, metric: str, index_type: str) -> str:
    """pgvector's operator class for a column type, metric and index, or a ConfigurationError."""
    if index_type == "ivfflat":
        if vector_type == "sparsevec":
            raise ConfigurationError(
                "IVFFlat cannot index sparsevec columns",
                hint="Use index_type='hnsw' (sparsevec rows of up to 1,000 non-zero elements).",
            )
        if metric == "l1":
            raise ConfigurationError(
                "IVFFlat has no L1 operator class", hint="Use index_type='hnsw' for metric='l1'."
            )
        if metric == "jaccard":
            raise ConfigurationError(
                "IVFFlat has no Jaccard operator class for bit columns",
                hint="Use index_type='hnsw' for metric='jaccard', or metric='hamming'.",
            )
    elif index_type != "hnsw":
        raise ConfigurationError(f"index type {index_type!r} is not one of hnsw, ivfflat")
    return f"{vector_type}_{_OPCLASS_METRIC[metric]}_ops"


def index_problem(
    *,
    vector_type: str,
    metric: str,
    dimensions: int,
    index_type: str,
    quantization: Quantization,
) -> ConfigurationError | None:
    """Why this index cannot exist (an error carrying advice), or None when it can."""
    if quantization == "halfvec" and vector_type != "vector":
        return ConfigurationError(
            f"quantization='halfvec' applies to vector columns, not {vector_type}",
            hint="Use quantization='none'"
            + (" (the column is half precision already)." if vector_type == "halfvec" else "."),
        )
    if quantization == "binary" and vector_type not in ("vector", "halfvec"):
        return ConfigurationError(
            f"quantization='binary' applies to vector and halfvec columns, not {vector_type}",
            hint="Use quantization='none'.",
        )
    indexed_type, indexed_metric = indexed_as(vector_type, metric, quantization)
    try:
        operator_class(indexed_type, indexed_metric, index_type)
    except ConfigurationError as exc:
        return exc
    limit = MAX_INDEX_DIMENSIONS.get(indexed_type)
    if limit is not None and dimensions > limit:
        if indexed_type == "vector":
            advice = (
                f"Use quantization='halfvec' (an index on embedding::halfvec({dimensions}), "
                "up to 4,000 dimensions; 'auto' picks it), quantization='binary', "
                "or index_type='none' (exact search)."
                if dimensions <= MAX_INDEX_DIMENSIONS["halfvec"]
                else "Use quantization='binary' (binary_quantize, re-ranked by exact distance), "
                "reduce the dimensions, or index_type='none' (exact search)."
            )
        elif indexed_type == "halfvec":
            advice = (
                "Use quantization='binary' (binary_quantize, re-ranked by exact distance), "
                "reduce the dimensions, or index_type='none' (exact search)."
            )
        else:
            advice = "Reduce the dimensions, or use index_type='none' (exact search)."
        where = f" (as {indexed_type})" if indexed_type != vector_type else ""
        return ConfigurationError(
            f"{index_type} indexes {indexed_type} of at most {limit} dimensions; this store's "
            f"{vector_type} column has {dimensions}{where}",
            hint=advice,
        )
    return None


def default_lists(rows: int) -> int:
    """IVFFlat ``lists`` as pgvector advises: rows / 1000 up to 1M rows, sqrt(rows) above."""
    lists = rows // 1000 if rows <= 1_000_000 else math.isqrt(rows)
    return max(1, min(lists, _IVFFLAT_MAX_LISTS))


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.8.6"`` -> ``(0, 8, 6)``; non-numeric parts count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def default_probes(lists: int) -> int:
    """IVFFlat ``probes`` as pgvector advises: sqrt(lists)."""
    return max(1, round(math.sqrt(lists)))


# -- the index itself ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    """One vector index: everything ``CREATE INDEX`` needs."""

    name: str  # unquoted
    index_type: IndexType
    opclass: str
    expression: str  # SQL of the indexed column or expression, parenthesized when an expression
    params: Mapping[str, int]
    quantization: Quantization

    def create_sql(self, table_sql: str, *, concurrently: bool) -> str:
        """``CREATE INDEX [CONCURRENTLY] IF NOT EXISTS``; the caller checks validity after."""
        with_ = ""
        if self.params:
            # Integers validated by check_index_params / default_lists; never user text.
            with_ = " WITH (" + ", ".join(f"{k} = {int(v)}" for k, v in self.params.items()) + ")"
        return (
            f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
            f"{quote_ident(self.name)} ON {table_sql} "
            f"USING {self.index_type} ({self.expression} {self.opclass}){with_}"
        )


def _reduced(
    sql: str, vector_type: str, dimensions: int, prefix: int | None, projection: str | None
) -> tuple[str, str, int]:
    """(expression, type, dimensions) of a vector after a two-stage reduction, if any."""
    if prefix is None:
        return sql, vector_type, dimensions
    if projection is not None:
        return f"{projection}({sql})", "vector", int(prefix)
    return f"subvector({sql}, 1, {int(prefix)})", vector_type, int(prefix)


def index_expression(
    column_sql: str,
    vector_type: str,
    dimensions: int,
    quant: str,
    prefix: int | None = None,
    projection: str | None = None,
) -> str:
    """The indexed expression; searches must order by exactly this to use the index.

    ``prefix``: the index holds the first ``prefix`` dimensions only (``subvector``; cast to a
    typed ``vector(n)``/``halfvec(n)``, which an index needs); quantization then applies to that.
    ``projection`` (with ``prefix`` the reduced size): the SQL function that projects a vector
    to that many dimensions (a ``vector``). The query side is :func:`query_expression` of the
    same arguments.
    """
    sql, kind, dims = _reduced(column_sql, vector_type, dimensions, prefix, projection)
    if quant == "halfvec":
        return f"({sql}::halfvec({dims}))"
    if quant == "binary":
        return f"(binary_quantize({sql})::bit({dims}))"
    return f"({sql}::{kind}({dims}))" if prefix is not None else sql


def query_expression(
    query_sql: str,
    vector_type: str,
    dimensions: int,
    quant: str,
    prefix: int | None = None,
    projection: str | None = None,
) -> str:
    """The query vector shaped like :func:`index_expression`'s indexed value."""
    sql, kind, dims = _reduced(query_sql, vector_type, dimensions, prefix, projection)
    if quant == "halfvec":
        return f"({sql})::halfvec({dims})"
    if quant == "binary":
        return f"binary_quantize({sql})"
    return f"({sql})::{kind}({dims})" if prefix is not None else sql


def build_settings(
    maintenance_work_mem: str | None, max_parallel_maintenance_workers: int | None
) -> list[tuple[str, str]]:
    """The (setting, value) pairs a build applies; values were validated by StoreConfig."""
    settings = []
    if maintenance_work_mem is not None:
        settings.append(("maintenance_work_mem", maintenance_work_mem))
    if max_parallel_maintenance_workers is not None:
        settings.append(("max_parallel_maintenance_workers", str(max_parallel_maintenance_workers)))
    return settings


# Bytes of one element of pgvector's in-memory HNSW build beyond its value: its header and
# neighbour-array bookkeeping, and ~2m+1 neighbour candidates (2m on layer 0, m/(m-1) on average
# above) of 16 bytes. Calibrated on pgvector 0.8.6's own notice ("hnsw graph no longer fits into
# maintenance_work_mem after N tuples"): 8 MB held 8,636 64-d elements (m=16), 2,213 768-d and
# 8,620 128-d (m=8), 64 MB 17,698 768-d; this formula says 8,630, 2,214, 8,630 and 17,716.
_HNSW_ELEMENT_OVERHEAD: Final = 180
_HNSW_CANDIDATE_BYTES: Final = 16
#: Head-room over the estimate (rows written while the build runs, estimate error); +16MB.
_GRAPH_MARGIN: Final = 1.2
_MIB: Final = 1 << 20
#: Of the server's memory, a build takes at most a quarter of the total and half of what is
#: available now: a build must never push the server (or its neighbours) into swap or the OOM
#: killer. Unknown memory (no access to /proc/meminfo): at most this much.
_UNKNOWN_MEMORY_CAP: Final = 1 << 30


def graph_bytes(rows: int, dimensions: int, indexed_type: str, m: int = 16) -> int:
    """Memory an in-memory HNSW build of ``rows`` needs (pgvector keeps the whole graph in
    ``maintenance_work_mem``; past it, the build goes on inserting on disk, many times slower)."""
    value = {"halfvec": 2 * dimensions, "bit": -(-dimensions // 8)}.get(
        indexed_type, 4 * dimensions
    )
    per_element = 8 + value + (2 * m + 1) * _HNSW_CANDIDATE_BYTES + _HNSW_ELEMENT_OVERHEAD
    return max(0, rows) * per_element


@dataclass(frozen=True)
class BuildMemory:
    """The ``maintenance_work_mem`` one HNSW build gets (see :func:`build_memory`)."""

    setting: str | None  # e.g. "456MB"; None: the server's own value is enough (or larger)
    needed: int  # bytes the graph needs, with the margin
    cap: int  # the most pgvs gives a build on this server
    capped: bool  # the graph needs more than the cap: the build spills to disk

    def advice(self) -> str:
        return (
            f"the HNSW graph needs about {self.needed // _MIB}MB of maintenance_work_mem but "
            f"pgvs gives a build at most {self.cap // _MIB}MB on this server (a quarter of its "
            "memory, half of what is free; 1GB when it cannot read /proc/meminfo): the build "
            f"spills to disk and is many times slower. Set maintenance_work_mem="
            f"'{-(-self.needed // _MIB)}MB' in the store's config (or per create_index call) if "
            "the server can spare it, or build with quantization='halfvec' (half the memory)."
        )


def build_memory(
    graph: int, *, current: int, total: int | None, available: int | None
) -> BuildMemory:
    """``maintenance_work_mem`` for a graph of ``graph`` bytes (:func:`graph_bytes`): the graph
    with a margin, never below the server's ``current`` value, never above a safe share of the
    server's memory (``total`` and ``available``, bytes from its /proc/meminfo; None: unknown)."""
    needed = int(graph * _GRAPH_MARGIN) + 16 * _MIB
    if total is None or available is None:
        cap = _UNKNOWN_MEMORY_CAP
    else:
        cap = min(total // 4, available // 2)
    cap = max(cap, current)
    wanted = min(needed, cap)
    setting = f"{-(-wanted // _MIB)}MB" if wanted > current else None
    return BuildMemory(setting, needed, cap, needed > cap)


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) in bytes from the text of Linux's /proc/meminfo."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
            found[key] = int(parts[0]) * 1024
    return found.get("MemTotal"), found.get("MemAvailable")


def parse_reloptions(options: Sequence[str] | None) -> dict[str, Any]:
    """``["m=16", "ef_construction=64"]`` -> ``{"m": 16, "ef_construction": 64}``."""
    parsed: dict[str, Any] = {}
    for option in options or ():
        key, _, value = option.partition("=")
        try:
            parsed[key] = int(value)
        except ValueError:
            parsed[key] = value
    return parsed


def progress_from_row(row: Any, elapsed: float) -> IndexProgress | None:
    """An IndexProgress from a ``pg_stat_progress_create_index`` row (None: no build seen)."""
    if row is None:
        return None
    tuples_total = int(row["tuples_total"] or 0)
    tuples_done = int(row["tuples_done"] or 0)
    blocks_total = int(row["blocks_total"] or 0)
    blocks_done = int(row["blocks_done"] or 0)
    percent: float | None = None
    if tuples_total > 0:
        percent = min(100.0, 100.0 * tuples_done / tuples_total)
    elif blocks_total > 0:
        percent = min(100.0, 100.0 * blocks_done / blocks_total)
    phase = str(row["phase"] or "")
    return IndexProgress(
        phase.removeprefix("building index: "),
        percent,
        tuples_done,
        tuples_total,
        blocks_done,
        blocks_total,
        elapsed,
    )


# -- plans ---------------------------------------------------------------------------------------


def uses_index(plan: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """The first of ``names`` an Index Scan node of ``plan`` reads, or None."""
    wanted = set(names)
    stack = [plan]
    while stack:
        node = stack.pop()
        name = node.get("Index Name")
        if name in wanted and "Index" in str(node.get("Node Type", "")):
            return str(name)
        stack.extend(reversed(node.get("Plans", [])))
    return None
