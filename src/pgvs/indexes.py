"""Vector indexes: which index, operator class, expression and parameters; which query settings.

Pure: no I/O and no driver. :mod:`pgvs.store` sequences these with the catalog and the server;
docs/indexes.md is the user documentation. The rules encoded here are pgvector 0.8's:

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from ._sql import quote_ident
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .config import StoreConfig

__all__ = [
    "DEFAULT_EF_SEARCH",
    "DEFAULT_RERANK_FACTOR",
    "INDEX_TYPES",
    "MAX_EF_SEARCH",
    "MAX_INDEX_DIMENSIONS",
    "QUANTIZATIONS",
    "SPARSEVEC_HNSW_MAX_NONZERO",
    "IndexProgress",
    "IndexSpec",
    "IndexStatus",
    "QueryPlan",
    "SearchExplanation",
    "build_settings",
    "check_index_params",
    "default_lists",
    "default_probes",
    "index_problem",
    "index_spec",
    "operator_class",
    "parse_reloptions",
    "progress_from_row",
    "resolve_quantization",
    "search_settings",
    "session_settings",
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


def _indexed(vector_type: str, metric: str, quantization: Quantization) -> tuple[str, str]:
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
    indexed_type, indexed_metric = _indexed(vector_type, metric, quantization)
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


def index_expression(column_sql: str, vector_type: str, dimensions: int, quant: str) -> str:
    """The indexed expression; searches must order by exactly this to use the index."""
    if quant == "halfvec":
        return f"({column_sql}::halfvec({dimensions}))"
    if quant == "binary":
        return f"(binary_quantize({column_sql})::bit({dimensions}))"
    return column_sql


def index_spec(
    config: StoreConfig,
    *,
    name: str,
    column_sql: str,
    index_type: str,
    params: Mapping[str, Any] | None,
    rows: int,
) -> IndexSpec:
    """The index to build for ``config``; IVFFlat's ``lists`` defaults from ``rows``."""
    if index_type not in INDEX_TYPES:
        raise ConfigurationError(f"index type {index_type!r} is not one of hnsw, ivfflat")
    quant = resolve_quantization(config.vector_type, config.dimensions, config.quantization)
    problem = index_problem(
        vector_type=config.vector_type,
        metric=config.metric,
        dimensions=config.dimensions,
        index_type=index_type,
        quantization=quant,
    )
    if problem is not None:
        raise problem
    if params is None:
        params = config.index_params if index_type == config.index_type else {}
    checked = check_index_params(index_type, params)
    if index_type == "ivfflat" and "lists" not in checked:
        checked["lists"] = default_lists(rows)
    indexed_type, indexed_metric = _indexed(config.vector_type, config.metric, quant)
    return IndexSpec(
        name=name,
        index_type=index_type,
        opclass=operator_class(indexed_type, indexed_metric, index_type),
        expression=index_expression(column_sql, config.vector_type, config.dimensions, quant),
        params=checked,
        quantization=quant,
    )


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


@dataclass(frozen=True)
class IndexStatus:
    """What the catalog says about the store's vector index.

    ``valid`` is ``pg_index.indisvalid``: an index that exists but is not valid (an interrupted
    ``CREATE INDEX CONCURRENTLY``, or a build still running) is never used by queries.
    ``building`` is True while ``pg_stat_progress_create_index`` shows a build of it.
    """

    name: str
    exists: bool
    valid: bool = False
    index_type: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    opclass: str | None = None
    definition: str | None = None
    building: bool = False

    @property
    def usable(self) -> bool:
        return self.exists and self.valid


@dataclass(frozen=True)
class IndexProgress:
    """One sample of ``pg_stat_progress_create_index`` for a running build."""

    phase: str
    percent: float | None  # None while the phase reports no totals
    tuples_done: int = 0
    tuples_total: int = 0
    blocks_done: int = 0
    blocks_total: int = 0
    elapsed: float = 0.0


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


# -- query settings ------------------------------------------------------------------------------


def session_settings(
    config: StoreConfig, *, managed: bool, lists: int | None = None
) -> dict[str, str]:
    """Store-level query settings, sent as startup parameters of the store's own connections.

    They are the session defaults of a pool no one else uses, so they cost no round trip and
    cannot leak: per-call values and filtered-search settings go in ``SET LOCAL`` instead. The
    config's ``ef_search``/``probes`` when set; else, for an index pgvs manages (``managed``),
    pgvs's defaults: ef_search :data:`PGVS_EF_SEARCH`, probes sqrt(``lists``) of the IVFFlat
    index. Otherwise the server's own defaults apply (nothing is sent).
    """
    settings: dict[str, str] = {}
    ef = config.ef_search or (PGVS_EF_SEARCH if managed else None)
    if ef is not None:
        settings["hnsw.ef_search"] = str(ef)
    probes = config.probes or (default_probes(lists) if managed and lists else None)
    if probes is not None:
        settings["ivfflat.probes"] = str(probes)
    return settings


@dataclass(frozen=True)
class QueryPlan:
    """How one search runs: the ``SET LOCAL`` settings (none: the one-round-trip path), whether
    the rows need a final re-sort by distance, and how many candidates a quantized index gives.
    """

    settings: tuple[tuple[str, str], ...]
    resort: bool
    candidates: int


def search_settings(
    config: StoreConfig,
    *,
    k: int,
    filtered: bool,
    ann: bool,
    session: Mapping[str, str] | None = None,
    ef_search: int | None = None,
    probes: int | None = None,
    exact: bool = False,
    iterative: bool = True,
) -> QueryPlan:
    """The settings one search needs beyond the store's session defaults (``session``, from
    :func:`session_settings`).

    * ``exact``: ``enable_indexscan = off``, so no ANN index serves the ordering (bitmap scans of
      the filter's B-tree/GIN indexes stay available).
    * per-call ``ef_search``/``probes`` that differ from the store's value;
    * ``hnsw.ef_search`` raised to the rows the scan must yield (``k``, or ``k * rerank_factor``
      candidates of a quantized index) up to pgvector's maximum of 1000, since an HNSW scan
      yields at most ef_search rows without an iterative scan;
    * iterative scans (``ann`` only: the store has, or is configured for, a vector index) when a
      filter is present, or the rows needed pass 1000: the scan goes on until enough rows pass
      the filter. ``relaxed_order`` (and IVFFlat's, always relaxed) can yield rows slightly out
      of order, so those rows are re-sorted by exact distance;
    * ``plan_cache_mode = force_custom_plan`` for filtered searches: the planner chooses between
      the vector index and the filter's own indexes knowing the filter's values, never from a
      cached generic plan.
    """
    quant = resolve_quantization(config.vector_type, config.dimensions, config.quantization)
    factor = config.rerank_factor or DEFAULT_RERANK_FACTOR[quant]
    candidates = k * factor if quant != "none" else k
    settings: dict[str, str] = {}
    if exact:
        settings["enable_indexscan"] = "off"
        if filtered:
            settings["plan_cache_mode"] = "force_custom_plan"
        return QueryPlan(tuple(settings.items()), False, candidates)
    session = session or {}
    base_ef = int(session.get("hnsw.ef_search", DEFAULT_EF_SEARCH))
    base_probes = int(session.get("ivfflat.probes", DEFAULT_PROBES))
    ef = ef_search if ef_search is not None else base_ef
    if ann and candidates > ef:
        ef = min(candidates, MAX_EF_SEARCH)
    if ef != base_ef:
        settings["hnsw.ef_search"] = str(ef)
    if probes is not None and probes != base_probes:
        settings["ivfflat.probes"] = str(probes)
    mode = "off"
    if not iterative:  # pgvector < 0.8: no iterative scans (filtered searches may lose rows)
        pass
    elif ann and filtered:
        mode = config.iterative_scan
    elif ann and candidates > ef:
        mode = "strict_order"
    if mode == "strict_order" and quant != "none":
        mode = "relaxed_order"  # candidates are re-ranked anyway; relaxed is cheaper
    if mode != "off":
        settings["hnsw.iterative_scan"] = mode
        settings["ivfflat.iterative_scan"] = "relaxed_order"
        if config.max_scan_tuples is not None:
            settings["hnsw.max_scan_tuples"] = str(config.max_scan_tuples)
        if config.max_probes is not None:
            settings["ivfflat.max_probes"] = str(config.max_probes)
    if filtered:
        settings["plan_cache_mode"] = "force_custom_plan"
    # A quantized search re-ranks in its outer query; a plain one re-sorts only when an
    # iterative scan (possibly relaxed) ran.
    resort = mode != "off" and quant == "none"
    return QueryPlan(tuple(settings.items()), resort, candidates)


def set_local_sql(settings: Sequence[tuple[str, str]]) -> str:
    """``BEGIN`` plus one ``SET LOCAL`` per setting, as one simple-protocol message.

    Names and values come from :func:`search_settings` only: fixed setting names, and integers or
    fixed words, so nothing here is user text.
    """
    parts = ["BEGIN"]
    parts += [f"SET LOCAL {name} = {_setting_value(value)}" for name, value in settings]
    return "; ".join(parts)


def _setting_value(value: str) -> str:
    if value.isdigit() or value.replace("_", "").isalpha():
        return value
    raise ValueError(f"unexpected setting value {value!r}")  # pragma: no cover - internal


# -- plans ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchExplanation:
    """The plan of a search: what ``search()`` would run, and whether a vector index serves it."""

    sql: str
    settings: tuple[tuple[str, str], ...]
    plan: Mapping[str, Any]  # the "Plan" object of EXPLAIN (FORMAT JSON)
    uses_vector_index: bool
    index_name: str | None


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
