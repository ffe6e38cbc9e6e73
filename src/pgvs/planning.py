"""What a store's configuration means for its index and its queries. Pure: no I/O.

:mod:`pgvs.indexes` holds pgvector's rules; this module applies them to one
:class:`~pgvs.config.StoreConfig`: the index to build (:func:`index_spec`), the query settings
of the store's connections (:func:`session_settings`) and of one search (:func:`search_settings`,
a :class:`QueryPlan` whose empty ``settings`` is the one-round-trip path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import indexes as ix
from .config import StoreConfig
from .errors import ConfigurationError
from .indexes import (
    DEFAULT_EF_SEARCH,
    DEFAULT_PROBES,
    INDEX_TYPES,
    MAX_EF_SEARCH,
    PGVS_EF_SEARCH,
    IndexSpec,
    check_index_params,
    default_lists,
    default_probes,
    index_expression,
    index_problem,
    indexed_as,
    operator_class,
)

__all__ = [
    "PGVECTOR_BUILD_DEFAULTS",
    "QueryPlan",
    "effective_params",
    "index_spec",
    "search_settings",
    "session_settings",
    "set_local_sql",
]


#: What pgvector builds with when ``WITH (...)`` leaves a parameter out.
PGVECTOR_BUILD_DEFAULTS: Mapping[str, Mapping[str, int]] = {
    "hnsw": {"m": 16, "ef_construction": 64},
    "ivfflat": {"lists": 100},
}


def effective_params(index_type: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with pgvector's defaults filled in: ``{}`` and ``{"m": 16}`` are one HNSW."""
    return {**PGVECTOR_BUILD_DEFAULTS.get(index_type or "", {}), **params}


def build_settings(
    config: StoreConfig,
    maintenance_work_mem: str | int | None = None,
    max_parallel_maintenance_workers: int | None = None,
) -> list[tuple[str, str]]:
    """One build's settings: the call's, else the store's; validated as config keys are."""
    overrides: dict[str, Any] = {}
    if maintenance_work_mem is not None:
        overrides["maintenance_work_mem"] = maintenance_work_mem
    if max_parallel_maintenance_workers is not None:
        overrides["max_parallel_maintenance_workers"] = max_parallel_maintenance_workers
    checked = config.replace(**overrides) if overrides else config
    return ix.build_settings(checked.maintenance_work_mem, checked.max_parallel_maintenance_workers)


def index_spec(
    config: StoreConfig,
    *,
    name: str,
    column_sql: str,
    index_type: str,
    params: Mapping[str, Any] | None,
    rows: int,
    projection: str | None = None,
) -> IndexSpec:
    """The index to build for ``config``; IVFFlat's ``lists`` defaults from ``rows``;
    ``projection``: a PCA store's projection function (qualified)."""
    if index_type not in INDEX_TYPES:
        raise ConfigurationError(f"index type {index_type!r} is not one of hnsw, ivfflat")
    quant = config.index_quantization
    problem = index_problem(
        vector_type=config.vector_type,
        metric=config.index_metric,
        dimensions=config.indexed_dimensions,
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
    indexed_type, indexed_metric = indexed_as(config.vector_type, config.index_metric, quant)
    return IndexSpec(
        name=name,
        index_type=index_type,
        opclass=operator_class(indexed_type, indexed_metric, index_type),
        expression=index_expression(
            column_sql,
            config.vector_type,
            config.dimensions,
            quant,
            config.index_dimensions,
            projection,
        ),
        params=checked,
        quantization=quant,
    )


def session_settings(
    config: StoreConfig,
    *,
    managed: bool,
    lists: int | None = None,
    tuned: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Store-level query settings, sent as startup parameters of the store's own connections.

    They are the session defaults of a pool no one else uses, so they cost no round trip and
    cannot leak: per-call values and filtered-search settings go in ``SET LOCAL`` instead. The
    config's ``ef_search``/``probes`` when set; else, for an index pgvs manages (``managed``),
    the value ``store.tune(apply=True)`` persisted for it (``tuned``, read from the index), else
    pgvs's defaults: ef_search :data:`PGVS_EF_SEARCH`, probes sqrt(``lists``) of the IVFFlat
    index. Otherwise the server's own defaults apply (nothing is sent).
    """
    settings: dict[str, str] = {}
    tuned = tuned if managed and tuned else {}
    ef = config.ef_search or tuned.get("hnsw.ef_search") or (PGVS_EF_SEARCH if managed else None)
    if ef is not None:
        settings["hnsw.ef_search"] = str(ef)
    probes = (
        config.probes
        or tuned.get("ivfflat.probes")
        or (default_probes(lists) if managed and lists else None)
    )
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
    candidates = k * config.candidates_per_result
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
    if mode == "strict_order" and config.two_stage:
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
    resort = mode != "off" and not config.two_stage
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
