"""What to do about a store's vector index, decided from what the catalog says. Pure: no I/O.

The store parts read the catalog and run the statements (:mod:`pgvs.store._index_manager`: the
start-up check and the background build; :mod:`pgvs.store._index_ops`: ``create_index``); each
choice between the read and the statement is one function here, of the values read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from . import indexes as ix
from . import partial, planning
from .config import StoreConfig
from .errors import ConfigurationError
from .results import IndexStatus

__all__ = [
    "AutoStep",
    "StartupStep",
    "auto_step",
    "check_same_index",
    "check_same_params",
    "lists_from_rows",
    "startup_step",
]

#: At start-up, for the configured index (``auto_create_index`` on): ``keep`` it (valid, nothing
#: to do); ``repair`` a pgvs partial index that is INVALID, ``rebuild`` the configured one that is
#: INVALID, or build it ``later`` (it learns from rows) in the background; or ``build_now``: HNSW
#: without PCA, instant when the table is empty (the caller checks that under the build lock).
StartupStep = Literal["keep", "repair", "rebuild", "later", "build_now"]

#: One pass of the background build for the configured index: ``done`` (valid, perhaps built by
#: another process), ``wait`` (a build of it is running: a later write checks again), ``count``
#: the rows first (it learns from them: built only from ``min_rows_for_index`` on), or ``build``.
AutoStep = Literal["done", "wait", "count", "build"]


def startup_step(config: StoreConfig, status: IndexStatus, *, broken_partials: bool) -> StartupStep:
    """What start-up does about the configured index whose catalog status is ``status``.

    ``broken_partials``: a pgvs partial index of this store is INVALID. The background build
    then runs anyway, and it checks the configured index too, so ``repair`` wins over the rest.
    """
    if status.usable or broken_partials:
        return "repair" if broken_partials else "keep"
    if status.exists:
        return "rebuild"  # INVALID: an interrupted CREATE INDEX CONCURRENTLY, never used by queries
    if config.index_type != "hnsw" or config.pca:
        return "later"  # IVFFlat's lists and PCA's projection are fitted on rows
    return "build_now"


def auto_step(config: StoreConfig, status: IndexStatus) -> AutoStep:
    """What one pass of the background build does about the configured index."""
    if status.usable:
        return "done"
    if status.building:
        return "wait"
    if (config.index_type == "ivfflat" or config.pca) and not status.exists:
        return "count"  # an INVALID one is rebuilt at once: its rows were there before
    return "build"


def check_same_index(
    status: IndexStatus,
    recorded: Mapping[str, Any] | None,
    *,
    index_type: str,
    comment: str | None,
    derived: bool,
) -> None:
    """Refuse to take an existing index named like the one asked for when it is another index.

    ``comment`` is the partial index's comment asked for (None: a full index), ``recorded`` the
    parsed comment the existing index carries, ``derived`` whether the name was derived. Type,
    full or partial, and the predicate must agree; a partial index without a comment is accepted
    only under its derived name (that name carries the predicate's digest).
    """
    ours = comment is None or (recorded is None and derived)
    if status.exists and (
        status.index_type != index_type
        or (comment is None) != (status.predicate is None)
        or not (ours or recorded == partial.parse_comment(comment))
    ):
        raise ConfigurationError(
            f"index {status.name} exists as another index: {status.definition}",
            hint="drop_index(name) first, or choose another name.",
        )


def check_same_params(
    name: str, index_type: str, existing: Mapping[str, Any], requested: Mapping[str, Any] | None
) -> None:
    """Refuse explicit ``requested`` parameters that differ from those the valid index has.

    Effective values are compared: ``{}`` and ``{"m": 16, "ef_construction": 64}`` are the same
    HNSW index (pgvector's defaults), so only a real difference is an error; ``None`` (nothing
    asked) accepts any.
    """
    have = planning.effective_params(index_type, existing)
    wanted = ix.check_index_params(index_type, requested or {})
    different = {k: v for k, v in wanted.items() if have.get(k) != v}
    if requested is not None and different:
        raise ConfigurationError(
            f"index {name} exists with {have}, not {different}",
            hint="drop_index() first to rebuild it with other parameters.",
        )


def lists_from_rows(
    index_type: str, params: Mapping[str, Any] | None, config_params: Mapping[str, Any]
) -> bool:
    """Does a build derive IVFFlat's ``lists`` from the row count (so count the rows first)?

    Only when neither the call's ``params`` nor, without them, the store's give ``lists``.
    """
    return index_type == "ivfflat" and "lists" not in (
        params if params is not None else config_params
    )
