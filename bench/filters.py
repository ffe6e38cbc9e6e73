"""Filter-compiler micro-benchmark: microseconds to compile typical filter documents.

``python -m bench filters [--runs 2000] [--repeat 25]``

Cases: one equality; the "typical" filter of 5 conditions (equality, a number range of two
operators, ``$contains``, a column ``$in``); the typical filter with fresh values on every call
(compilation caches only key-derived fragments, never values, so it should cost the same); and a
larger document of 12 conditions with ``$or``/``$not`` and dotted keys. No server needed.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from pgvs._sql import quote_ident
from pgvs.filters import FilterColumn, FilterTarget, compile_filter

from ._util import emit, progress

TARGET = FilterTarget(
    metadata_sql=quote_ident("metadata"),
    columns={
        "id": FilterColumn(quote_ident("id"), "text"),
        "document_id": FilterColumn(quote_ident("document_id"), "text"),
        "chunk_index": FilterColumn(quote_ident("chunk_index"), "integer"),
        "content": FilterColumn(quote_ident("content"), "text"),
        "created_at": FilterColumn(quote_ident("created_at"), "timestamptz"),
    },
)

EQUALITY: dict[str, Any] = {"category": "news"}
TYPICAL: dict[str, Any] = {
    "category": "news",
    "year": {"$gte": 2000, "$lt": 2010},
    "tags": {"$contains": "ai"},
    "@document_id": {"$in": ["d1", "d2", "d3"]},
}
LARGE: dict[str, Any] = {
    "category": {"$in": ["news", "blog", "paper"]},
    "year": {"$between": [2000, 2024]},
    "author.name": {"$ilike": "a%"},
    "$or": [
        {"tags": {"$contains": ["ai", "ml"]}},
        {"$not": {"lang": {"$nin": ["en", "de"]}}},
        {"source.kind": "web", "source.rank": {"$gt": 0.5}},
    ],
    "draft": {"$ne": True},
    "deleted": {"$exists": False},
    "@chunk_index": {"$lt": 50},
    "@created_at": {"$gte": "2024-01-01T00:00:00Z"},
}


def count_conditions(document: Any) -> int:
    """Operators applied to fields (what the compiler's MAX_CONDITIONS counts)."""
    total = 0
    for key, value in document.items():
        if key in ("$and", "$or"):
            total += sum(count_conditions(sub) for sub in value)
        elif key == "$not":
            total += count_conditions(value)
        elif isinstance(value, dict):
            total += len(value)
        else:
            total += 1
    return total


def _medians_us(
    cases: Mapping[str, Callable[[], object]], *, per_run: int, repeat: int
) -> dict[str, float]:
    """Each case's median time per compilation in µs; cases timed round-robin, GC held off."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm-up: imports, key caches, first allocations
        run()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, run in cases.items():
                start = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return {name: statistics.median(times) / per_run * 1e6 for name, times in samples.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench filters", description=__doc__)
    parser.add_argument("--runs", type=int, default=2000, help="compilations per timed run")
    parser.add_argument("--repeat", type=int, default=25, help="timed runs per case")
    args = parser.parse_args(argv)
    runs: int = args.runs

    fresh = [
        {**TYPICAL, "category": f"news-{i}", "year": {"$gte": 2000 + i, "$lt": 2010 + i}}
        for i in range(runs)
    ]

    def equality() -> None:
        for _ in range(runs):
            compile_filter(EQUALITY, TARGET)

    def typical() -> None:
        for _ in range(runs):
            compile_filter(TYPICAL, TARGET)

    def typical_fresh_values() -> None:
        for document in fresh:
            compile_filter(document, TARGET)

    def large() -> None:
        for _ in range(runs):
            compile_filter(LARGE, TARGET)

    progress(f"timing {args.repeat} runs of {runs} compilations per case")
    medians = _medians_us(
        {
            "equality_us": equality,
            "typical_5_conditions_us": typical,
            "typical_fresh_values_us": typical_fresh_values,
            f"large_{count_conditions(LARGE)}_conditions_us": large,
        },
        per_run=runs,
        repeat=args.repeat,
    )
    emit(
        {
            "benchmark": "filters",
            "python": platform.python_version(),
            "runs": runs,
            "repeat": args.repeat,
            **{name: round(value, 2) for name, value in medians.items()},
        }
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
