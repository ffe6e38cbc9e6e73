"""Recall tuning, the pure half: the sweep, recall@k, the report, the persisted default. No I/O.

``store.tune()`` (:mod:`pgvs.store._tuner`) measures; this module decides what to measure next
and what the measurements mean:

* :class:`Sweep` walks ``hnsw.ef_search`` (or ``ivfflat.probes``) upward by doubling from the
  smallest useful value until the mean recall@k reaches the target, then bisects between the last
  setting below the target and the first one at or above it, until that bracket is at most
  :func:`bisection_step` wide. It assumes recall grows with the setting (true of both knobs up
  to measurement noise); a non-monotonic point only moves the bracket.
* :func:`recall_at_k` scores one query's hits against its exact answer; :func:`measure_point`
  folds a setting's per-query recalls and latencies into a :class:`~pgvs.results.TunePoint`.
* :func:`held_out_queries` turns sampled stored rows into queries that are not in the index (see
  its docstring for why and how); :func:`build_report` picks the setting and writes the hint
  when the target is out of reach.
* The chosen setting is persisted as a comment on the vector index it was measured on
  (:func:`tuned_comment`, :func:`parse_tuned_comment`): it belongs to that graph, so dropping the
  index drops it, and every process opening the store reads it at ``initialize()``. With
  ``partition_by`` that graph is the tenant's partition's own index
  (:data:`PARTITION_TUNED_QUERY`): each tenant has its own setting, gone with its partition.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ConfigurationError, ValidationError
from .indexes import MAX_EF_SEARCH
from .results import TunePoint, TuneReport

__all__ = [
    "COMMENT_INDEX_SQL",
    "FORCE_INDEX_SETTINGS",
    "PARAMETERS",
    "PARTITION_TUNED_QUERY",
    "SAMPLE_SEED",
    "TUNED_COMMENTS_QUERY",
    "Sweep",
    "bisection_step",
    "build_report",
    "check_tune_arguments",
    "domain_where",
    "exact_sql",
    "held_out_queries",
    "knob_range",
    "measure_point",
    "parse_tuned_comment",
    "quantile",
    "recall_at_k",
    "sample_sql",
    "tuned_comment",
]

#: The query knob of each index type.
PARAMETERS: Mapping[str, str] = {"hnsw": "hnsw.ef_search", "ivfflat": "ivfflat.probes"}
#: Upper bounds of the knobs (pgvector's).
_MAX_SETTING: Mapping[str, int] = {"hnsw.ef_search": MAX_EF_SEARCH, "ivfflat.probes": 32768}
#: The bisection stops once its bracket is at most this fraction of its low end (and >= 1): the
#: chosen setting is then within about 12 % of the smallest one that reaches the target on the
#: sample, which is finer than the difference between a sample and the next queries.
_BISECTION_FRACTION = 8
#: Seed of the sample of stored rows (a hash of the id, so the same table gives the same sample
#: whatever plan the server picks, parallel or not).
SAMPLE_SEED = 18
#: The knob only matters when the vector index serves the search, and on a small table the planner
#: may prefer an exact scan (pgvector's cost estimate grows with ef_search): tuning measures the
#: index, as a table large enough to need tuning gets by itself.
FORCE_INDEX_SETTINGS: tuple[tuple[str, str], ...] = (
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_sort", "off"),
)
# Relative tolerance for "as near as the k-th true neighbour": a hit tied in distance with the
# k-th exact answer is as good an answer, whichever of the tied ids the exact scan returned.
_TIE_TOLERANCE = 1e-6
_COMMENT_PREFIX = "pgvs:tuned "

#: Comments of the store's vector indexes: $1 = schema, $2 = index names.
TUNED_COMMENTS_QUERY = """
    SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind = 'i'
"""
#: A tenant's own index on its partition (``partition_by``): the child (``pg_inherits``) of one of
#: the store's partitioned vector indexes ($1 = schema, $2 = their names) whose table is the
#: tenant's partition ($3 = its qualified name), and its comment. Only that child's comment is
#: ever read: the parent's (relkind 'I') could hold a setting an older pgvs measured on one
#: partition, perhaps an empty one, which is no tenant's.
PARTITION_TUNED_QUERY = """
    SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class p
    JOIN pg_namespace n ON n.oid = p.relnamespace
    JOIN pg_inherits h ON h.inhparent = p.oid
    JOIN pg_class c ON c.oid = h.inhrelid
    JOIN pg_index i ON i.indexrelid = c.oid
    WHERE n.nspname = $1 AND p.relname = ANY($2::text[]) AND p.relkind = 'I'
      AND c.relkind = 'i' AND i.indrelid = to_regclass($3)
"""
#: COMMENT takes no bind parameters, so the server writes the statement: ``%L`` quotes the
#: comment as a literal and ``%s`` of a regclass the index name. $1 = qualified index name.
COMMENT_INDEX_SQL = "SELECT format('COMMENT ON INDEX %s IS %L', $1::regclass, $2::text)"


def check_tune_arguments(
    target_recall: object, k: object, sample: object, max_seconds: object
) -> None:
    """Refuse impossible arguments before any I/O (the table-dependent checks come later)."""
    if (
        isinstance(target_recall, bool)
        or not isinstance(target_recall, (int, float))
        or not 0.0 < float(target_recall) <= 1.0
    ):
        raise ValidationError(
            f"target_recall must be a number in (0, 1], got {target_recall!r}",
            hint="Recall is a share of the exact answers: 0.95 asks for 95 % of them.",
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValidationError(f"k must be a positive integer, got {k!r}")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValidationError(f"sample must be a positive integer, got {sample!r}")
    if max_seconds is not None and (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not max_seconds > 0
    ):
        raise ValidationError(f"max_seconds must be a positive number or None, got {max_seconds!r}")


def recall_at_k(
    found: Sequence[tuple[Any, float]], truth: Sequence[tuple[Any, float]], k: int
) -> float | None:
    """Recall@k of one query: the share of its exact top ``k`` that ``found`` returned.

    Both are ``(id, distance)`` pairs, nearest first (the query's own row already removed). A
    found row counts when its id is among the exact top ``k`` or when it is as near as the
    ``k``-th exact answer (a tie). With fewer than ``k`` exact answers (a narrow filter) the
    recall is over those; None when there are none (the query says nothing).
    """
    expected = truth[:k]
    if not expected:
        return None
    wanted = {key for key, _ in expected}
    limit = expected[-1][1]
    limit += abs(limit) * _TIE_TOLERANCE + _TIE_TOLERANCE
    hits = sum(1 for key, distance in found[:k] if key in wanted or distance <= limit)
    return min(hits, len(expected)) / len(expected)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated between order statistics."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("quantile of no values")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_point(
    setting: int, recalls: Sequence[float | None], latencies_ms: Sequence[float]
) -> TunePoint:
    """One setting's row of the curve: mean and p05 recall, p50 and p95 latency."""
    scored = [r for r in recalls if r is not None]
    if not scored:  # no query had an exact answer: nothing was missed
        scored = [1.0]
    mean = sum(scored) / len(scored)
    margin = 0.0
    if len(scored) > 1:  # the sampling noise of the mean: how far other such queries may land
        variance = sum((r - mean) ** 2 for r in scored) / (len(scored) - 1)
        margin = _Z95 * math.sqrt(variance / len(scored))
    return TunePoint(
        setting=setting,
        recall=mean,
        p05_recall=quantile(scored, 0.05),
        p50_ms=quantile(latencies_ms, 0.5),
        p95_ms=quantile(latencies_ms, 0.95),
        recall_margin=margin,
    )


_Z95 = 1.96  # two-sided 95 % of a normal distribution: the mean of many per-query recalls


def bisection_step(low: int) -> int:
    """The widest bracket the bisection leaves above a failing setting ``low``."""
    return max(1, low // _BISECTION_FRACTION)


class Sweep:
    """Which setting to measure next, from what was measured (``record``) so far.

    Doubling from ``low`` (clamped to ``high``) until a setting's mean recall reaches ``target``;
    then bisection of (last failing, first passing] down to :func:`bisection_step`. ``next()`` is
    None when done: the target is bracketed, reached at ``low``, or out of reach at ``high``.
    """

    def __init__(self, target: float, low: int, high: int) -> None:
        if not 1 <= low <= high:
            raise ValueError(f"bad sweep range [{low}, {high}]")  # pragma: no cover - internal
        self.target = target
        self.low = low
        self.high = high
        self.measured: dict[int, float] = {}

    def record(self, setting: int, recall: float) -> None:
        self.measured[setting] = recall

    def _bracket(self) -> tuple[int | None, int | None]:
        """(largest failing setting below the first passing one, first passing setting)."""
        passing = [s for s, r in self.measured.items() if r >= self.target]
        if not passing:
            return (max(self.measured) if self.measured else None), None
        high = min(passing)
        below = [s for s in self.measured if s < high]
        return (max(below) if below else None), high

    def next(self) -> int | None:
        if not self.measured:
            return self.low
        failing, passing = self._bracket()
        if passing is None:
            top = max(self.measured)
            return None if top >= self.high else min(top * 2, self.high)
        if failing is None or passing - failing <= bisection_step(failing):
            return None
        return (failing + passing) // 2

    @property
    def chosen(self) -> int | None:
        """The smallest setting that reached the target (None while none has)."""
        return self._bracket()[1]

    @property
    def step(self) -> int:
        """How far above the sample's true threshold ``chosen`` may be: the bracket's width
        (0 when the lowest setting passed, or nothing passed)."""
        failing, passing = self._bracket()
        if failing is None or passing is None:
            return 0
        return passing - failing


def _hint(parameter: str, index_type: str, complete: bool, high: int, quantized: bool) -> str:
    if not complete:
        return "The deadline ran out before the target was reached: raise max_seconds."
    if quantized:
        # Only k * rerank_factor candidates are re-ranked by exact distance: past a point a
        # wider index scan finds no better candidates, so the knob cannot raise the recall.
        return (
            f"Even {parameter} = {high} does not reach the target: a quantized index re-ranks "
            "k * rerank_factor candidates, so raise rerank_factor in the store's config (or "
            "quantize less)."
        )
    if index_type == "hnsw":
        return (
            f"Even {parameter} = {high} does not reach the target: rebuild the index with a "
            "denser graph, e.g. drop_index() then create_index('hnsw', {'m': 32, "
            "'ef_construction': 128}), and tune again."
        )
    return (
        f"Even {parameter} = {high} does not reach the target: rebuild the index with more "
        "lists (drop_index(), create_index('ivfflat', {'lists': ...})), and tune again."
    )


def build_report(
    *,
    parameter: str,
    index_type: str,
    target_recall: float,
    k: int,
    queries: int,
    sampled: bool,
    filtered: bool,
    points: Sequence[TunePoint],
    sweep: Sweep,
    exact_p50_ms: float,
    complete: bool,
    elapsed_seconds: float,
    quantized: bool = False,
) -> TuneReport:
    """The report of a sweep: the smallest setting reaching the target, or, when none did, the
    one with the best recall (with a hint; ``quantized``: the index re-ranks candidates);
    ``complete`` is False when a deadline cut it short."""
    chosen = sweep.chosen
    if chosen is None and points:
        best = max(points, key=lambda p: (p.recall, -p.setting))
        chosen = best.setting
    reached = sweep.chosen is not None
    return TuneReport(
        parameter=parameter,
        index_type=index_type,
        target_recall=target_recall,
        k=k,
        queries=queries,
        sampled=sampled,
        filtered=filtered,
        points=tuple(sorted(points, key=lambda p: p.setting)),
        setting=chosen,
        reachable=reached,
        complete=complete,
        step=sweep.step,
        exact_p50_ms=exact_p50_ms,
        hint=None if reached else _hint(parameter, index_type, complete, sweep.high, quantized),
        elapsed_seconds=elapsed_seconds,
    )


# -- the persisted default ---------------------------------------------------------------------


def tuned_comment(report: TuneReport) -> str:
    """The index comment that records ``report``'s setting as the store's default."""
    if report.setting is None:
        raise ValueError("a report without a setting has nothing to persist")  # pragma: no cover
    document = {
        "parameter": report.parameter,
        "value": report.setting,
        "target_recall": report.target_recall,
        "k": report.k,
        "recall": round(report.recall or 0.0, 4),
    }
    return _COMMENT_PREFIX + json.dumps(document, sort_keys=True)


def parse_tuned_comment(comment: str | None) -> dict[str, str]:
    """The setting a :func:`tuned_comment` records, as ``{parameter: value}``; ``{}`` for any
    other comment (a user's own, or a malformed one: never an error at start-up)."""
    if not comment or not comment.startswith(_COMMENT_PREFIX):
        return {}
    try:
        document = json.loads(comment[len(_COMMENT_PREFIX) :])
        parameter, value = document["parameter"], document["value"]
    except (ValueError, TypeError, KeyError):
        return {}
    high = _MAX_SETTING.get(parameter) if isinstance(parameter, str) else None
    if high is None or isinstance(value, bool) or not isinstance(value, int):
        return {}
    if not 1 <= value <= high:
        return {}
    return {parameter: str(value)}


def knob_range(parameter: str, *, rows_per_query: int, lists: int | None) -> tuple[int, int]:
    """The settings worth sweeping: an HNSW scan yields at most ef_search rows, so below the
    rows a search needs the store raises it anyway; IVFFlat probes go up to all the lists."""
    if parameter == "hnsw.ef_search":
        if rows_per_query > MAX_EF_SEARCH:
            raise ValidationError(
                f"k is too large to tune hnsw.ef_search: a search needs {rows_per_query} rows "
                f"and ef_search goes up to {MAX_EF_SEARCH}",
                hint=f"Tune with a k below {MAX_EF_SEARCH}.",
            )
        return rows_per_query, MAX_EF_SEARCH
    if lists is None:
        raise ConfigurationError("the IVFFlat index's lists are unknown")  # pragma: no cover
    return 1, max(1, lists)


def sample_sql(
    table: str, id_sql: str, id_select: str, embedding: str, operator: str, where: str, param: int
) -> str:
    """Stored rows in a repeatable pseudo-random order, each with the embedding of its nearest
    other row (NULL when it has none): ``$param`` = seed, ``$param+1`` = how many.

    ``table``/``id_sql``/``embedding`` are quoted identifiers from the store's Statements,
    ``id_select`` its id expression, ``operator`` its distance operator and ``where`` a compiled
    condition whose values are ``$n`` parameters numbered below ``param``. The neighbour
    satisfies ``where`` too (the inner query's unqualified columns are its own row's); the index
    may answer it: it only sets a scale (:func:`held_out_queries`), so an approximate one does.
    """
    order = f"hashtextextended({id_sql}::text, ${param}::bigint)"
    return (
        "SELECT s.id, s.embedding, n.embedding AS neighbour FROM ("  # noqa: S608 - identifiers and $n only
        f"SELECT {id_sql} AS key, {id_select} AS id, {embedding} AS embedding, {order} AS rank "
        f"FROM {table} WHERE {where} ORDER BY rank, {id_sql} LIMIT ${param + 1}::integer) s "
        f"LEFT JOIN LATERAL (SELECT {embedding} AS embedding FROM {table} "
        f"WHERE ({where}) AND {id_sql} <> s.key "
        f"ORDER BY {embedding} {operator} s.embedding LIMIT 1) n ON true "
        "ORDER BY s.rank, s.key"
    )


def held_out_queries(
    rows: npt.ArrayLike, neighbours: npt.ArrayLike, *, angular: bool, seed: int
) -> npt.NDArray[np.float32]:
    """Queries that are not in the index, made from stored ``rows`` (one per row).

    A stored row is an easy query for a graph index: the search walks to the row's own node,
    whose links are its nearest neighbours, so even the smallest ``ef_search`` finds them (on
    glove50 the sample measured 0.99 at 11 where its held-out words need 16), and leaving the
    row out of its own answers does not undo that. A query from the same data that is *not*
    stored lies, typically, as far from its nearest stored row as a stored row lies from its
    nearest other one. So each query is its row moved by that distance in a random direction:
    ``row + r * u`` with ``r = |row - nearest other row|`` and ``u`` a uniformly random unit
    vector; with ``angular`` (cosine) the row is turned by the angle to its nearest other row
    instead, towards a random direction orthogonal to it. The row itself stays a fair answer
    (it is the query's nearest stored row, as a held-out query's nearest neighbour is).

    ``neighbours[i]`` is row ``i``'s nearest other row (row ``i`` itself when it has none: the
    query is then the row). Seeded by ``seed``: the same rows give the same queries.
    """
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(neighbours, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"rows {x.shape} and neighbours {y.shape} differ")  # pragma: no cover
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    if not angular:
        radius = np.linalg.norm(x - y, axis=1, keepdims=True)
        moved: npt.NDArray[np.float32] = (x + radius * _unit(noise)).astype(np.float32)
        return moved
    # A zero row has no direction (cosine ignores length): its query is the random direction.
    xn, yn = _unit(x), _unit(y)
    cosine = np.clip(np.sum(xn * yn, axis=1, keepdims=True), -1.0, 1.0)
    angle = np.where(np.linalg.norm(x, axis=1, keepdims=True) > 0, np.arccos(cosine), np.pi / 2)
    across = _unit(noise - np.sum(noise * xn, axis=1, keepdims=True) * xn)
    turned: npt.NDArray[np.float32] = (np.cos(angle) * xn + np.sin(angle) * across).astype(
        np.float32
    )
    return turned


def _unit(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: npt.NDArray[np.float64] = np.divide(
        matrix, norms, out=np.zeros_like(matrix), where=norms > 0
    )
    return unit


def domain_where(domain_sql: str | None, domain_param: int, condition: str) -> str:
    """The WHERE condition of the tuning statements: the store's domain (a quoted column, bound
    as ``$domain_param``) and a compiled filter condition."""
    head = f"{domain_sql} = ${domain_param}::text AND " if domain_sql else ""
    return f"{head}({condition})"


def exact_sql(table: str, id_select: str, distance: str, where: str) -> str:
    """The exact top-$2 by ``distance`` (an expression of the embedding and the $1 query).

    Not the store's own statement: a quantized index orders by its own expression first, which
    an exact scan must not. Run with index scans off.
    """
    return (
        f"SELECT {id_select} AS id, {distance} AS distance FROM {table} "  # noqa: S608 - identifiers and $n only
        f"WHERE {where} ORDER BY distance LIMIT $2::integer"
    )
