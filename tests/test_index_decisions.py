"""The index decisions of pgvs._index_decisions, case by case (pure: no server)."""

from __future__ import annotations

from typing import Any

import pytest

from pgvs import partial
from pgvs._index_decisions import (
    auto_step,
    check_same_index,
    check_same_params,
    lists_from_rows,
    startup_step,
)
from pgvs.config import StoreConfig
from pgvs.errors import ConfigurationError
from pgvs.results import IndexStatus
from pgvs.store._context import StoreContext

HNSW = StoreConfig(dimensions=8)
IVFFLAT = StoreConfig(dimensions=8, index_type="ivfflat")
PCA = StoreConfig(dimensions=8, index_dimensions=4, reduction="pca")

MISSING = IndexStatus(name="i", exists=False)
VALID = IndexStatus(name="i", exists=True, valid=True, index_type="hnsw")
INVALID = IndexStatus(name="i", exists=True, valid=False, index_type="hnsw")
BUILDING = IndexStatus(name="i", exists=True, valid=False, index_type="hnsw", building=True)


@pytest.mark.parametrize(
    ("config", "status", "broken", "expected"),
    [
        (HNSW, VALID, False, "keep"),
        (HNSW, VALID, True, "repair"),
        (HNSW, INVALID, True, "repair"),  # the background pass checks the full index too
        (HNSW, MISSING, True, "repair"),
        (HNSW, INVALID, False, "rebuild"),
        (IVFFLAT, INVALID, False, "rebuild"),
        (IVFFLAT, MISSING, False, "later"),
        (PCA, MISSING, False, "later"),
        (HNSW, MISSING, False, "build_now"),
    ],
)
def test_startup_step(
    config: StoreConfig, status: IndexStatus, broken: bool, expected: str
) -> None:
    assert startup_step(config, status, broken_partials=broken) == expected


@pytest.mark.parametrize(
    ("config", "status", "expected"),
    [
        (HNSW, VALID, "done"),
        (IVFFLAT, VALID, "done"),
        (HNSW, BUILDING, "wait"),
        (IVFFLAT, BUILDING, "wait"),
        (IVFFLAT, MISSING, "count"),
        (PCA, MISSING, "count"),
        (IVFFLAT, INVALID, "build"),  # its rows were there before: no count
        (HNSW, MISSING, "build"),
        (HNSW, INVALID, "build"),
    ],
)
def test_auto_step(config: StoreConfig, status: IndexStatus, expected: str) -> None:
    assert auto_step(config, status) == expected


_TARGET = StoreContext(StoreConfig(dimensions=4, table_name="t")).filter_target
_PREDICATE = partial.compile_predicate({"cat": "a"}, None, _TARGET, domain_sql=None)
_COMMENT = _PREDICATE.comment("hnsw", "none")
_OTHER = partial.compile_predicate({"cat": "b"}, None, _TARGET, domain_sql=None).comment(
    "hnsw", "none"
)
_FULL = IndexStatus(name="i", exists=True, valid=True, index_type="hnsw")
_PARTIAL = IndexStatus(
    name="i", exists=True, valid=True, index_type="hnsw", predicate=_PREDICATE.sql
)


@pytest.mark.parametrize(
    ("status", "recorded", "index_type", "comment", "derived", "refused"),
    [
        (MISSING, None, "hnsw", None, True, False),  # nothing there: build it
        (MISSING, None, "hnsw", _COMMENT, False, False),
        (_FULL, None, "hnsw", None, True, False),  # the full index asked for
        (_FULL, None, "ivfflat", None, True, True),  # another type
        (_FULL, None, "hnsw", _COMMENT, True, True),  # full where partial is asked for
        (_PARTIAL, None, "hnsw", None, True, True),  # partial where full is asked for
        (_PARTIAL, partial.parse_comment(_COMMENT), "hnsw", _COMMENT, False, False),
        (_PARTIAL, partial.parse_comment(_OTHER), "hnsw", _COMMENT, True, True),  # other filter
        (_PARTIAL, None, "hnsw", _COMMENT, True, False),  # no comment, under its digest name
        (_PARTIAL, None, "hnsw", _COMMENT, False, True),  # no comment, under a chosen name
    ],
)
def test_check_same_index(
    status: IndexStatus,
    recorded: dict[str, Any] | None,
    index_type: str,
    comment: str | None,
    derived: bool,
    refused: bool,
) -> None:
    def check() -> None:
        check_same_index(status, recorded, index_type=index_type, comment=comment, derived=derived)

    if refused:
        with pytest.raises(ConfigurationError, match="exists as another index"):
            check()
    else:
        check()


@pytest.mark.parametrize(
    ("index_type", "existing", "requested", "refused"),
    [
        ("hnsw", {}, None, False),
        ("hnsw", {"m": 32}, None, False),  # nothing asked: any parameters do
        ("hnsw", {}, {}, False),
        ("hnsw", {}, {"m": 16, "ef_construction": 64}, False),  # pgvector's defaults
        ("hnsw", {"m": 16}, {"m": 16}, False),
        ("hnsw", {}, {"m": 32}, True),
        ("hnsw", {"m": 32}, {"ef_construction": 64}, False),  # only what is asked is compared
        ("ivfflat", {"lists": 100}, {"lists": 100}, False),
        ("ivfflat", {"lists": 100}, {"lists": 50}, True),
    ],
)
def test_check_same_params(
    index_type: str, existing: dict[str, int], requested: dict[str, int] | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(ConfigurationError, match="exists with"):
            check_same_params("i", index_type, existing, requested)
    else:
        check_same_params("i", index_type, existing, requested)


@pytest.mark.parametrize(
    ("index_type", "params", "config_params", "expected"),
    [
        ("ivfflat", None, {}, True),
        ("ivfflat", None, {"lists": 10}, False),
        ("ivfflat", {}, {"lists": 10}, True),  # the call's params replace the store's
        ("ivfflat", {"lists": 10}, {}, False),
        ("hnsw", None, {}, False),
        ("hnsw", {"m": 8}, {}, False),
    ],
)
def test_lists_from_rows(
    index_type: str, params: dict[str, int] | None, config_params: dict[str, int], expected: bool
) -> None:
    assert lists_from_rows(index_type, params, config_params) is expected
