"""Every value a store returns: search hits, stored rows, index and ingest reports.

``SearchResult`` and ``Record`` behave as the tuples they unpack to: ``for id, score, metadata in
store.search(q)``, ``hits[0][1]``, ``len(hit) == 3``, ``hit == (hit.id, hit.score, hit.metadata)``;
``for vector, metadata in store.get_vectors(ids)`` likewise with ``(vector, metadata)``. The rest
(``distance``, ``content``, ...) are attributes. Like a tuple holding a dict, a hit with metadata
is not hashable; equality and ordering are the tuple's.

Pure: no I/O, no driver, no numpy (``TuneReport.plot`` alone writes a file, with matplotlib).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, overload

from .errors import ConfigurationError, ValidationError

__all__ = [
    "IndexInfo",
    "IndexProgress",
    "IndexStatus",
    "IngestProgress",
    "IngestResult",
    "PartitionStats",
    "PoolStats",
    "QueryStats",
    "Record",
    "SearchExplanation",
    "SearchResult",
    "StoreStats",
    "TableActivity",
    "TunePoint",
    "TuneReport",
]


class _TupleView(Sequence[Any]):
    """Tuple behaviour over the first fields of a slotted dataclass (see ``_as_tuple``).

    Not a ``tuple`` subclass: a tuple subclass cannot have slots, and a ``__dict__`` per hit made
    building results measurably slower (bench/search.py); these methods cost nothing until used.
    """

    __slots__ = ()

    def _as_tuple(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return iter(self._as_tuple())

    def __len__(self) -> int:
        return len(self._as_tuple())

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Any, ...]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._as_tuple()[index]

    def __contains__(self, value: object) -> bool:
        return value in self._as_tuple()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _TupleView):
            other = other._as_tuple()
        if isinstance(other, tuple):
            return self._as_tuple() == other
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _TupleView):
            other = other._as_tuple()
        if isinstance(other, tuple):
            return self._as_tuple() < other
        return NotImplemented

    def __hash__(self) -> int:
        # The tuple's hash: a TypeError when a field (the metadata dict) is unhashable.
        return hash(self._as_tuple())


# Not frozen: a frozen dataclass sets every field through object.__setattr__, which made building
# ten results cost several times reading them (measured in bench/search.py's breakdown). eq=False:
# equality is the tuple's (_TupleView), not field by field.
@dataclass(slots=True, eq=False)
class SearchResult(_TupleView):
    """One search hit; a tuple ``(id, score, metadata)`` with more attributes.

    ``score`` grows with similarity (see the README's table per metric; for text search the
    ``ts_rank_cd`` rank, for hybrid search the fused score); ``distance`` is what pgvector's
    operator returned (NaN from text search, which has no query vector). ``vector`` is None
    unless ``include_vectors=True``. Hybrid search sets ``vector_rank`` and ``text_rank``, the
    row's 1-based rank in each leg (None where that leg did not find it); text search sets
    ``text_rank``.
    """

    id: Any
    score: float
    metadata: dict[str, Any] | None
    distance: float
    content: str | None = None
    document_id: str | None = None
    chunk_index: int | None = None
    vector: Any = None
    vector_rank: int | None = None
    text_rank: int | None = None

    def _as_tuple(self) -> tuple[Any, ...]:
        return (self.id, self.score, self.metadata)

    def __iter__(self) -> Iterator[Any]:  # the hot path of `for id, score, meta in hits`
        return iter((self.id, self.score, self.metadata))


@dataclass(slots=True, eq=False)
class Record(_TupleView):
    """One stored row from ``get_vectors``; a tuple ``(vector, metadata)`` with more attributes.

    For an id that is not stored, ``found`` is False and ``vector`` and ``metadata`` are None.
    """

    id: Any
    vector: Any
    metadata: dict[str, Any] | None
    content: str | None = None
    document_id: str | None = None
    chunk_index: int | None = None

    @property
    def found(self) -> bool:
        return self.vector is not None

    def _as_tuple(self) -> tuple[Any, ...]:
        return (self.vector, self.metadata)

    def __eq__(self, other: object) -> bool:
        # A vector is usually a numpy array, whose == is elementwise: compare it as a whole.
        if isinstance(other, Record):
            other = other._as_tuple()
        if not isinstance(other, tuple):
            return NotImplemented
        return len(other) == 2 and _same_vector(self.vector, other[0]) and self.metadata == other[1]

    __hash__ = _TupleView.__hash__


def _same_vector(a: Any, b: Any) -> bool:
    """``a == b`` as one truth value, for numpy arrays too (equal shape and elements)."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    shape = getattr(a, "shape", None)
    if shape is not None or getattr(b, "shape", None) is not None:
        if shape != getattr(b, "shape", None):
            return False
        return bool((a == b).all())
    return bool(a == b)


@dataclass(frozen=True)
class IndexStatus:
    """What the catalog says about the store's vector index.

    ``valid`` is ``pg_index.indisvalid``: an index that exists but is not valid (an interrupted
    ``CREATE INDEX CONCURRENTLY``, or a build still running) is never used by queries.
    ``building`` is True while ``pg_stat_progress_create_index`` shows a build of it.
    A partial index (``create_index(where=..., domain=...)``) has its ``predicate`` as the
    server writes it; ``where`` and ``domain`` are what it was created with (``where`` in its
    canonical form, ``{}`` for a tenant-only index; None for a partial index pgvs did not build).
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
    predicate: str | None = None
    where: Mapping[str, Any] | None = None
    domain: str | None = None

    @property
    def usable(self) -> bool:
        return self.exists and self.valid

    @property
    def partial(self) -> bool:
        return self.predicate is not None


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


@dataclass(frozen=True)
class SearchExplanation:
    """The plan of a search: what ``search()`` would run, and whether a vector index serves it."""

    sql: str
    settings: tuple[tuple[str, str], ...]
    plan: Mapping[str, Any]  # the "Plan" object of EXPLAIN (FORMAT JSON)
    uses_vector_index: bool
    index_name: str | None
    # The partial index whose predicate the SQL carries (the filter implies it), or None.
    partial_index: str | None = None


@dataclass(frozen=True)
class IngestProgress:
    """What a ``progress`` callback receives after every committed batch.

    With ``atomic=True`` nothing commits until the end, so the callback runs after every batch
    is *written* inside the still-open transaction, and the counts are of written batches; a
    later failure rolls all of them back (the :class:`IngestError` says so).
    """

    rows_done: int  # input rows of the committed (atomic: written) batches
    rows_total: int | None  # input rows in all, when known (an array, a list); else None
    rows_per_second: float  # rows_done / elapsed_seconds
    batches_done: int
    elapsed_seconds: float


@dataclass(frozen=True)
class IngestResult:
    """The outcome of a complete ingest."""

    rows_read: int  # input rows
    rows_written: int  # rows upserted: input rows minus earlier duplicates within a batch
    rows_copied: int  # of rows_written, new ids written by COPY straight into the table
    rows_upserted: int  # of rows_written, written by INSERT ... ON CONFLICT from the stage
    batches: int
    committed_batches: list[int]
    elapsed_seconds: float
    batch_size: int = 0
    details: Mapping[str, float] = field(default_factory=dict)  # seconds per stage (profiling)
    # None: the store's HNSW index was built once after the load (details["index_build"]).
    # Else why not: the rows went into the table's index as they were written (or no index).
    index_note: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed_seconds if self.elapsed_seconds > 0 else math.inf


@dataclass(frozen=True)
class TunePoint:
    """One setting measured by ``store.tune()``: recall@k over the queries and latency.

    ``recall`` is the mean recall@k, ``p05_recall`` the recall the worst 5 % of queries stay
    under; ``p50_ms``/``p95_ms`` the median and 95th percentile of one search's server round trip.
    ``recall_margin``: the half-width of a 95 % confidence interval of ``recall`` as a mean over
    these queries (1.96 standard errors; 0 for one query): other queries drawn like them may get
    ``recall`` ± this. More queries narrow it.
    """

    setting: int
    recall: float
    p05_recall: float
    p50_ms: float
    p95_ms: float
    recall_margin: float = 0.0


_PLOT_FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class TuneReport:
    """What ``store.tune()`` measured and chose. ``print(report)`` shows it as a table.

    ``points`` is the curve, one :class:`TunePoint` per setting of ``parameter``
    (``hnsw.ef_search`` or ``ivfflat.probes``), by setting. ``setting`` is the smallest measured
    setting whose mean recall@k reached ``target_recall``; when none did (``reachable`` False),
    the one with the best recall, and ``hint`` says what to change. ``step`` is the width of the
    bisection's last bracket: the smallest setting reaching the target on these queries lies
    within ``step`` below ``setting``. ``complete`` is False when ``max_seconds`` ran out first
    (the report then holds the best setting measured so far). ``applied``: persisted as the
    store's default (``apply=True``). ``logged``: the queries were the searches' own, read from
    the query log (``queries="recent"``).
    """

    parameter: str
    index_type: str
    target_recall: float
    k: int
    queries: int
    sampled: bool  # queries drawn from the stored rows (each excluded from its own answers)
    filtered: bool
    points: tuple[TunePoint, ...]
    setting: int | None
    reachable: bool
    complete: bool
    step: int
    exact_p50_ms: float
    hint: str | None = None
    elapsed_seconds: float = 0.0
    applied: bool = False
    logged: bool = False  # queries="recent": the searches' own queries, from the query log

    @property
    def chosen(self) -> TunePoint | None:
        """The curve's point of ``setting``."""
        return next((p for p in self.points if p.setting == self.setting), None)

    @property
    def recall(self) -> float | None:
        """Mean recall@k at the chosen setting."""
        point = self.chosen
        return point.recall if point is not None else None

    @property
    def p50_ms(self) -> float | None:
        """Median latency at the chosen setting."""
        point = self.chosen
        return point.p50_ms if point is not None else None

    @property
    def best_recall(self) -> float | None:
        """The best mean recall any measured setting gave."""
        return max((p.recall for p in self.points), default=None)

    def to_table(self) -> str:
        """The report as plain text: a header, the curve (the chosen row marked), a verdict."""
        name = self.parameter.split(".")[-1]
        source = (
            "sampled stored vectors"
            if self.sampled
            else "logged queries (the newest served)"
            if self.logged
            else "given queries"
        )
        lines = [
            f"tune {self.parameter} ({self.index_type}) for recall@{self.k} >= "
            f"{self.target_recall:g}: {self.queries} {source}"
            + (", filtered" if self.filtered else ""),
            f"{name:>10}  {'recall':>7}  {'p05 recall':>10}  {'p50 ms':>8}  {'p95 ms':>8}",
        ]
        for p in self.points:
            mark = "  <- chosen" if p.setting == self.setting else ""
            lines.append(
                f"{p.setting:>10}  {p.recall:>7.3f}  {p.p05_recall:>10.3f}  "
                f"{p.p50_ms:>8.3f}  {p.p95_ms:>8.3f}{mark}"
            )
        lines.append(f"{'exact':>10}  {1.0:>7.3f}  {1.0:>10.3f}  {self.exact_p50_ms:>8.3f}")
        point = self.chosen
        if point is not None and self.reachable:
            speed = self.exact_p50_ms / point.p50_ms if point.p50_ms > 0 else math.inf
            lines.append(
                f"chosen: {self.parameter} = {self.setting} (recall {point.recall:.3f}, "
                f"p50 {point.p50_ms:.3f} ms, {speed:.1f}x the exact scan's speed; "
                f"within {self.step} of the smallest setting reaching the target)"
            )
            if point.recall_margin > 0:
                lines.append(
                    f"recall {point.recall:.3f} ± {point.recall_margin:.3f} (95 %, over "
                    f"{self.queries} queries): other queries like these may get "
                    f"{max(point.recall - point.recall_margin, 0):.3f} to "
                    f"{min(point.recall + point.recall_margin, 1):.3f}"
                )
        elif point is not None:
            lines.append(
                f"target not reached: best recall {point.recall:.3f} at "
                f"{self.parameter} = {self.setting}"
            )
        else:
            lines.append("no setting was measured")
        if not self.complete:
            lines.append("incomplete: max_seconds ran out")
        if self.applied:
            lines.append(f"applied: {self.parameter} = {self.setting} is the store's default")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        if self.sampled:
            lines.append(
                "note: measured on stored rows moved off the index (new rows like them); queries "
                "unlike them (questions against passages, another source) can need a much larger "
                'setting: tune with queries= of your own, or queries="recent" with query_log set'
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write the recall-latency curve to ``path`` (``.png``, ``.svg`` or ``.pdf``).

        Mean and p05 recall against the median latency, one point per setting, labelled with
        it; the target and the exact scan's latency as lines; the chosen setting circled. Needs
        matplotlib (``pip install 'pgvs[plot]'``). Returns the path written.
        """
        target = Path(path)
        if target.suffix.lower() not in _PLOT_FORMATS:
            raise ValidationError(
                f"plot path {str(target)!r} must end in one of {', '.join(_PLOT_FORMATS)}"
            )
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ConfigurationError(
                "TuneReport.plot() draws with matplotlib, which is not installed",
                hint="pip install 'pgvs[plot]' (or matplotlib).",
            ) from exc
        # Figure without pyplot: no global backend or figure registry is touched.
        figure = Figure(figsize=(7.0, 4.5), layout="constrained")
        axes = figure.add_subplot()
        latency = [p.p50_ms for p in self.points]
        axes.plot(latency, [p.recall for p in self.points], "o-", label=f"mean recall@{self.k}")
        axes.plot(latency, [p.p05_recall for p in self.points], "x:", label=f"p05 recall@{self.k}")
        for p in self.points:
            axes.annotate(
                str(p.setting), (p.p50_ms, p.recall), textcoords="offset points", xytext=(4, -10)
            )
        axes.axhline(self.target_recall, color="grey", linestyle="--", label="target")
        axes.axvline(self.exact_p50_ms, color="red", linestyle="-.", label="exact scan p50")
        point = self.chosen
        if point is not None:
            axes.plot(
                [point.p50_ms],
                [point.recall],
                "o",
                markersize=14,
                markerfacecolor="none",
                color="green",
                label=f"chosen {self.parameter} = {point.setting}",
            )
        axes.set_xlabel("p50 latency per search (ms)")
        axes.set_ylabel(f"recall@{self.k}")
        axes.set_title(title or f"{self.parameter}: recall vs latency ({self.queries} queries)")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower right")
        figure.savefig(target)
        return target


# -- store.stats() ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexInfo:
    """One index of the store's table (vector, metadata GIN, primary key, ...) from the catalog.

    On a partitioned table the index is the parent's partitioned index, which has no storage of
    its own: ``size_bytes`` and ``scans`` are then the sums over its ``partitions`` (each
    partition's own index; 0 for an index of an unpartitioned table).
    """

    name: str
    method: str  # pg_am.amname: hnsw, ivfflat, gin, btree, ...
    valid: bool  # pg_index.indisvalid: an INVALID index is never used by queries
    size_bytes: int
    definition: str
    opclass: str | None  # of the first key column
    params: Mapping[str, Any] = field(default_factory=dict)  # reloptions: m, lists, ...
    primary: bool = False
    unique: bool = False
    scans: int | None = None  # pg_stat_user_indexes.idx_scan
    partitions: int = 0  # a partitioned index: how many partition indexes the figures sum

    @property
    def is_vector(self) -> bool:
        return self.method in ("hnsw", "ivfflat")


@dataclass(frozen=True)
class TableActivity:
    """``pg_stat_user_tables`` for the table: tuple counts and (auto)vacuum / analyze times.

    The cumulative statistics system reports these with a short delay (at most about a second
    after a transaction ends), so they may trail the latest writes.
    """

    live_tuples: int = 0
    dead_tuples: int = 0
    last_vacuum: datetime | None = None
    last_autovacuum: datetime | None = None
    last_analyze: datetime | None = None
    last_autoanalyze: datetime | None = None
    vacuum_count: int = 0
    autovacuum_count: int = 0


@dataclass(frozen=True)
class QueryStats:
    """One statement from ``pg_stat_statements`` that names the store's table."""

    query: str
    calls: int
    total_ms: float
    mean_ms: float
    rows: int


@dataclass(frozen=True)
class PoolStats:
    """The store's asyncpg pool right now (the same numbers a pool monitor would chart).

    ``waiting`` counts callers blocked in ``acquire()`` for a free connection; it is read from
    asyncpg's queue and is None when that asyncpg version does not expose it.
    """

    size: int  # open connections
    min_size: int
    max_size: int
    idle: int
    in_use: int
    waiting: int | None


@dataclass(frozen=True)
class PartitionStats:
    """One partition of a partitioned table (``partition_by="domain"``: one tenant's).

    ``domain`` is the partition's one list value (None for a DEFAULT partition or one holding
    several values); the sizes and ``activity`` are the partition's own (``total_bytes``: its
    heap, TOAST and indexes).
    """

    name: str
    domain: str | None
    rows_estimate: int  # pg_class.reltuples (-1: never analyzed)
    table_bytes: int
    toast_bytes: int
    indexes_bytes: int
    total_bytes: int
    activity: TableActivity = field(default_factory=TableActivity)


@dataclass(frozen=True)
class StoreStats:
    """What ``store.stats()`` reports: rows, sizes, indexes, settings, vacuum, queries, pool.

    Two kinds of figures. ``rows``, ``rows_by_domain`` and ``domains`` are exact counts of the
    rows the store may see: every domain's (the 100 largest) for a store without ``domain_id``,
    the store's own domain only for a tenant's store (under ``row_level_security`` counted in
    the tenant's transaction, as the policy admits them). Everything else is catalog data about
    the whole table, every tenant's rows together, whatever the store's domain:
    ``rows_estimate``, the sizes, ``indexes`` and ``activity``. On a partitioned table
    (``partitioned``) those are the sums over its ``partition_count`` partitions (the parent
    has no storage), and ``partitions`` breaks them down: every partition (the 100 largest)
    for a store without ``domain_id``, the store's own for a tenant's store.
    ``settings`` are the values in force on the store's own connections (``current_setting``),
    None for one the server does not know; ``memory_bytes`` gives the memory settings in bytes.
    ``top_queries`` is None when ``pg_stat_statements`` is not available (``top_queries_note``
    says why).
    """

    table: str
    column_type: str  # e.g. vector(768)
    rows: int  # exact count (of the store's domain, for a tenant's store)
    rows_by_domain: Mapping[str, int]  # the largest domains, at most 100
    domains: int  # how many domains hold rows
    rows_estimate: int  # pg_class.reltuples, summed over partitions (-1: never analyzed)
    table_bytes: int  # the heap (main fork)
    toast_bytes: int  # the TOAST table and its index
    indexes_bytes: int
    total_bytes: int
    indexes: tuple[IndexInfo, ...]
    settings: Mapping[str, str | None]
    memory_bytes: Mapping[str, int]
    activity: TableActivity
    pool: PoolStats
    pgvector_version: str
    server_version: str
    top_queries: tuple[QueryStats, ...] | None = None
    top_queries_note: str | None = None
    partitioned: bool = False  # a partitioned table: the sizes are its partitions' sums
    partition_count: int = 0
    partitions: tuple[PartitionStats, ...] = ()

    @property
    def vector_indexes(self) -> tuple[IndexInfo, ...]:
        return tuple(index for index in self.indexes if index.is_vector)
