"""Helpers shared by the benchmarks: repeated timing, progress on stderr, the JSON result line,
and a database to run against."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any


def progress(message: str) -> None:
    """A progress line on stderr (stdout is reserved for the result)."""
    print(message, file=sys.stderr, flush=True)


def time_once(run: Callable[[], object]) -> float:
    """Seconds taken by one call of ``run``, with the garbage collector held off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def median_us(samples: list[float], per_run: int) -> float:
    """Median of per-run timings (seconds), as microseconds per operation."""
    return statistics.median(samples) / per_run * 1e6


def interleaved_medians(
    cases: Mapping[str, Callable[[], object]],
    *,
    default_per_run: int,
    per_run: Mapping[str, int] | None = None,
    repeat: int,
) -> dict[str, float]:
    """Time every case ``repeat`` times, round-robin (so drift in machine speed hits all cases
    alike), and return each case's median in microseconds per operation.

    A case's run performs ``per_run[name]`` operations, or ``default_per_run``.
    """
    counts = dict(per_run or {})
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm-up: imports, caches, first allocations
        run()
    for _ in range(repeat):
        for name, run in cases.items():
            samples[name].append(time_once(run))
    return {
        name: median_us(times, counts.get(name, default_per_run)) for name, times in samples.items()
    }


def emit(result: Mapping[str, Any]) -> None:
    """Print the result as one JSON object on the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(dict(result), sort_keys=False), flush=True)


def quantile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, linearly interpolated."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("quantile of no samples")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A DSN: ``DATABASE_URL`` when set, else a throwaway embedded server, stopped on exit."""
    url = os.environ.get("DATABASE_URL")
    if url:
        progress("using DATABASE_URL")
        yield url
        return
    from pgvs.server import EmbeddedServer

    server = EmbeddedServer()
    progress(f"starting an embedded PostgreSQL server in {server.data_dir}")
    dsn = server.start()
    try:
        yield dsn
    finally:
        progress("stopping the embedded server")
        server.stop()
