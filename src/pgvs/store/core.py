"""AsyncPGVectorStore: the async store, composed of its parts.

This class owns the public API and its documentation; every method hands its work to one part
(:mod:`._context` for what needs no I/O, :mod:`._session` for connections, :mod:`._bootstrap`,
:mod:`._writes`, :mod:`._reads`, :mod:`._index_manager`, :mod:`._ingest`, :mod:`._tuner`) and every exception
leaves through :func:`pgvs.errors.translated`. The sync facade (:mod:`pgvs.sync`) is generated
from the public coroutines here: ``python scripts/generate_sync.py`` after changing one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import asyncpg
import numpy.typing as npt

from ..config import StoreConfig
from ..errors import ConfigurationError, translated
from ..progress import IngestProgressCallback, ProgressCallback
from ..results import (
    IndexStatus,
    IngestResult,
    Record,
    SearchExplanation,
    SearchResult,
    StoreStats,
    TuneReport,
)
from ._bootstrap import prepare_schema
from ._context import StoreContext
from ._index_manager import IndexManager
from ._ingest import ingest_columns, run_ingest
from ._reads import Reader
from ._session import Session, retried_read
from ._stats import read_stats
from ._strategies import Strategies
from ._tuner import TuneProgress, Tuner
from ._writes import Writer

__all__ = ["AsyncPGVectorStore", "ProgressCallback", "VectorStoreFactory"]

Self = TypeVar("Self", bound="AsyncPGVectorStore")


class AsyncPGVectorStore:
    """A pgvector-backed vector store for asyncio code.

    ``AsyncPGVectorStore({"dimensions": 768, ...})``, ``AsyncPGVectorStore(dimensions=768)`` or
    ``AsyncPGVectorStore(StoreConfig(...))``; then ``await store.initialize()`` (or
    ``async with``) and ``await store.close()``. Every operation is scoped to ``domain_id``.
    """

    def __init__(
        self, config: StoreConfig | Mapping[str, Any] | None = None, /, **options: Any
    ) -> None:
        if isinstance(config, StoreConfig):
            config = config.replace(**options) if options else config
        else:
            config = StoreConfig.from_mapping(config, **options)
        self._ctx = StoreContext(config)
        self._session = Session(config)
        self._indexes = IndexManager(self._ctx, self._session)
        self._reader = Reader(self._ctx, self._session, self._indexes)
        self._writer = Writer(self._ctx, self._session, self._indexes.after_write)
        self._strategies = Strategies(self._ctx, self._session, self._reader)
        self._tuner = Tuner(self._ctx, self._session, self._indexes)

    def __repr__(self) -> str:
        c = self._ctx.config
        state = "open" if self._session.is_open else "closed"
        return (
            f"<AsyncPGVectorStore {c.schema}.{c.table_name} {c.vector_type}({c.dimensions}) "
            f"{c.metric} domain={c.domain_id!r} {state}>"
        )

    @property
    def config(self) -> StoreConfig:
        return self._ctx.config

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool (codecs registered), for queries of your own."""
        return self._session.raw_pool

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self: Self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @translated
    async def initialize(self) -> None:
        """Open the pool; create the extension, schema and table (when configured) or verify them.

        All DDL runs in one transaction under advisory locks, so any number of processes may
        initialize the same new table at once.
        """
        if self._session.is_open:
            return
        bootstrap = await self._session.bootstrap_connection()
        try:
            extension_schema, index_due = await prepare_schema(bootstrap, self._ctx, self._indexes)
        finally:
            await bootstrap.close()
        await self._session.open(extension_schema, self._indexes.desired_session())
        if index_due:
            self._indexes.wanted = True
            self._indexes.kick()

    async def close(self) -> None:
        """Close the pool (the sync store also stops its event-loop thread). Safe to call twice.

        A background index build still running is cancelled: a concurrent build left half done
        is an INVALID index, which the next start-up (or create_index) repairs.
        """
        await self._indexes.cancel_background()
        await self._session.close()

    # -- writes --------------------------------------------------------------------------------

    @translated
    async def add_vectors(
        self,
        vectors: Any,
        ids: Sequence[Any] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        contents: Sequence[str | None] | None = None,
        document_ids: Sequence[str | None] | None = None,
        chunk_indexes: Sequence[int | None] | None = None,
    ) -> list[Any]:
        """Insert or replace rows by id; returns the ids, in input order.

        The whole call is validated before anything is written, and written in one statement:
        all rows or none. A repeated id within one call keeps its last row. Missing ids are
        generated (uuid4 for uuid and text ids, the column's sequence for bigint).
        """
        return await self._writer.add_vectors(
            vectors, ids, metadata, contents, document_ids, chunk_indexes
        )

    @translated
    async def update_metadata(
        self,
        ids: Sequence[Any],
        metadatas: Sequence[Mapping[str, Any]],
        *,
        merge: bool = False,
    ) -> int:
        """Replace (or with ``merge=True``, shallow-merge into) the metadata of stored rows.

        Returns how many rows were updated; ids that are not stored are skipped.
        """
        return await self._writer.update_metadata(ids, metadatas, merge)

    @translated
    async def delete_vectors(self, ids: Sequence[Any]) -> int:
        """Delete rows by id; returns how many were deleted."""
        return await self._writer.delete_vectors(ids)

    @translated
    async def delete(self, filter: Mapping[str, Any]) -> int:
        """Delete the rows matching a (non-empty) filter; returns how many. See ``clear()``."""
        return await self._writer.delete(filter)

    @translated
    async def clear(self) -> int:
        """Delete every row of this store's domain; returns how many."""
        return await self._writer.clear()

    @translated
    async def ingest(
        self,
        data: Any,
        *,
        ids: Sequence[Any] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        contents: Sequence[str | None] | None = None,
        document_ids: Sequence[str | None] | None = None,
        chunk_indexes: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        progress: bool | IngestProgressCallback | None = None,
        atomic: bool = False,
        connections: int = 2,
    ) -> IngestResult:
        """Upsert many rows by binary COPY, in batches; see :mod:`pgvs.ingest` for how.

        ``data`` is either

        - a 2-D numpy array of vectors (or a list of vectors), with the other columns as parallel
          sequences in ``ids`` / ``metadata`` / ``contents`` / ``document_ids`` /
          ``chunk_indexes`` (a ``numpy.memmap`` is read batch by batch); or
        - an iterable or async iterable of records, each a dict (keys ``id``, ``vector`` (or
          ``embedding``), ``metadata``, ``content``, ``document_id``, ``chunk_index``), a tuple
          in that order (``(id, vector)`` up to all six), or a :class:`pgvs.Record`. A sync
          iterable is read in a worker thread, so a generator may block (read files, call an
          embedding API) without stalling the writes; it must not rely on running in the
          caller's thread. (The sync store's ``aingest`` pulls an async iterable on the
          caller's loop.)

        Missing ids are generated as in ``add_vectors`` (uuid4, or the column's sequence for
        bigint); give ids to make a re-run idempotent. Within a batch a repeated id keeps its
        last row; across batches the later batch wins. At most a few batches are held in memory.

        ``batch_size``: rows per batch and transaction (default: ~6 MiB of vectors, 2042 rows at
        768-d; at most 500 when the table has an HNSW or IVFFlat index; the first default batch
        is a quarter, so the server starts sooner). ``progress``: a callable receiving an
        :class:`~pgvs.results.IngestProgress` after every committed batch (it may be a coroutine
        function), or True for a tqdm bar. ``atomic=True`` writes every batch in one transaction
        (all rows or none; one connection). ``connections``: batches in flight at once, each on
        its own pooled connection (1: no overlap).

        Returns an :class:`~pgvs.results.IngestResult`. A failure once rows started flowing
        raises :class:`~pgvs.errors.IngestError` naming the batch and its rows, the committed
        batches and rows written, ``from`` the cause (a ValidationError for a bad row, found
        before its batch is sent; a ConnectionLostError, ...). Bad arguments raise
        ValidationError or ConfigurationError before anything runs.
        """
        result = await run_ingest(
            self._ctx,
            self._session,
            data,
            ingest_columns(ids, metadata, contents, document_ids, chunk_indexes),
            batch_size=batch_size,
            progress=progress,
            atomic=atomic,
            connections=connections,
        )
        self._indexes.after_write()
        return result

    # -- reads ---------------------------------------------------------------------------------

    @translated
    @retried_read
    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many rows (matching ``filter``) this store's domain holds."""
        return await self._reader.count(filter)

    @translated
    @retried_read
    async def get_vectors(self, ids: Sequence[Any], include_metadata: bool = True) -> list[Record]:
        """Rows by id, aligned with ``ids``; a missing id gives a Record with ``found == False``.

        Each :class:`~pgvs.results.Record` is a tuple ``(vector, metadata)`` with more
        attributes (``id``, ``content``, ``document_id``, ``chunk_index``).
        """
        return await self._reader.get_vectors(ids, include_metadata)

    @translated
    @retried_read
    async def search(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[SearchResult]:
        """The ``k`` nearest rows to ``query``, nearest first, as SearchResults.

        Each :class:`~pgvs.results.SearchResult` is a tuple ``(id, score, metadata)`` with more
        attributes (``distance``, ``content``, ``document_id``, ``chunk_index``, ``vector``).
        Without options: one round trip, no transaction, the distance computed once, vectors
        only when asked. ``min_score`` drops hits scoring below it (the rest of the top k).
        ``ef_search`` (HNSW) / ``probes`` (IVFFlat) override the store's values for this call;
        ``exact=True`` bypasses the vector index (exact results). A filtered search uses
        pgvector's iterative index scans, so it returns ``k`` rows when ``k`` rows match.
        """
        return await self._reader.search(
            query,
            k,
            filter,
            include_metadata,
            include_vectors,
            min_score,
            ef_search,
            probes,
            exact,
        )

    @translated
    @retried_read
    async def search_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[list[SearchResult]]:
        """``search`` for many queries in one statement; one result list per query, in order."""
        return await self._reader.search_batch(
            queries,
            k,
            filter,
            include_metadata,
            include_vectors,
            min_score,
            ef_search,
            probes,
            exact,
        )

    @translated
    @retried_read
    async def explain_search(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        analyze: bool = False,
    ) -> SearchExplanation:
        """The plan of the exact SQL ``search()`` would run (with the same SET LOCALs).

        ``EXPLAIN (FORMAT JSON)``, or ``EXPLAIN (ANALYZE, FORMAT JSON)`` with ``analyze=True``
        (which runs the search). ``uses_vector_index`` says whether an HNSW/IVFFlat index serves
        the ordering.
        """
        return await self._reader.explain_search(
            query, k, filter, ef_search, probes, exact, analyze
        )

    # -- search strategies ---------------------------------------------------------------------

    @translated
    @retried_read
    async def text_search(
        self,
        text: str,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
    ) -> list[SearchResult]:
        """Full-text search of the content: the ``k`` best matches by ``ts_rank_cd``.

        Needs ``text_search`` in the config. ``text`` is web-search syntax (``"exact phrase"``,
        ``or``, ``-excluded``); any string is safe, none raises a tsquery syntax error. With
        ``text_identifiers`` (default) ``.`` and ``_`` separate words on both sides, so
        ``torch.nanmean`` and ``grid_sample`` are found by their names and their parts.
        Results carry the rank as ``score`` and ``text_rank``; ``distance`` is NaN.
        """
        return await self._strategies.text_search(
            text, k, filter, include_metadata, include_vectors
        )

    @translated
    @retried_read
    async def hybrid_search(
        self,
        query: Any,
        text: str,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        fusion: Literal["rrf", "weighted"] = "rrf",
        rrf_k: float = 60,
        vector_weight: float = 1.0,
        text_weight: float = 1.0,
        candidates: int | None = None,
        ef_search: int | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
    ) -> list[SearchResult]:
        """Vector and full-text search fused in one SQL statement.

        Both legs take ``candidates`` rows (default ``max(50, 5 * k)``) under the same tenant
        and ``filter``; the vector leg runs as ``search()`` would (its index, iterative scans
        when filtered, ``ef_search``). ``fusion="rrf"`` sums ``weight / (rrf_k + rank)`` per
        leg (reciprocal rank fusion); ``"weighted"`` sums ``weight * score`` with each leg's
        scores min-max normalised. Results carry the fused ``score``, the exact ``distance``
        to ``query``, and ``vector_rank`` / ``text_rank`` (None where a leg missed the row).
        """
        return await self._strategies.hybrid_search(
            query,
            text,
            k,
            filter,
            fusion,
            rrf_k,
            vector_weight,
            text_weight,
            candidates,
            ef_search,
            include_metadata,
            include_vectors,
        )

    @translated
    @retried_read
    async def mmr_search(
        self,
        query: Any,
        k: int = 4,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
    ) -> list[SearchResult]:
        """Maximal marginal relevance: ``k`` rows that are near ``query`` and unlike each other.

        The ``fetch_k`` nearest rows come with their vectors in one round trip; the selection
        runs in numpy (cosine similarity): ``lambda_mult=1`` is plain nearest order, ``0``
        maximal diversity. Results are in the order chosen, with their distances and scores.
        """
        return await self._strategies.mmr_search(
            query, k, fetch_k, lambda_mult, filter, include_metadata, include_vectors
        )

    @translated
    @retried_read
    async def centroid(
        self, *, ids: Sequence[Any] | None = None, filter: Mapping[str, Any] | None = None
    ) -> npt.NDArray[Any] | None:
        """The mean vector of the rows given by ``ids`` and/or ``filter`` (all rows of the domain
        without either), computed on the server with pgvector's ``avg()``; None when no row
        matches."""
        return await self._strategies.centroid(ids, filter)

    # -- vector indexes ------------------------------------------------------------------------

    @translated
    async def create_index(
        self,
        index_type: str | None = None,
        params: Mapping[str, int] | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        domain: str | None = None,
        name: str | None = None,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """Build the store's vector index (``"hnsw"`` or ``"ivfflat"``; default: the config's).

        Safe to call from many processes at once: builders take turns under an advisory lock
        and the catalog decides, so exactly one index is built. An existing valid index is kept;
        an INVALID one is dropped and rebuilt. ``params``: ``m``/``ef_construction`` (HNSW) or
        ``lists`` (IVFFlat; default rows/1000, sqrt(rows) past a million rows). Parameters are
        compared with pgvector's defaults filled in (HNSW m=16, ef_construction=64; IVFFlat
        lists=100): asking for those on an index built without them is not an error.
        ``concurrently=True`` builds without blocking writes (slower). ``progress``: a callback
        taking :class:`~pgvs.results.IndexProgress` samples, or True for a tqdm progress bar.

        ``where`` (a filter document) and/or ``domain`` (a tenant id) make a **partial index**
        over the matching rows only: a small graph of its own for a hot filter or a big tenant.
        ``where`` takes what PostgreSQL's planner can reason about: equality, ``$in``, ranges
        (``$gt``/``$gte``/``$lt``/``$lte``/``$between``), ``$exists``, ``{"@column": None}``,
        ``$and`` and ``$or`` of equalities on one key; anything else is a FilterError naming the
        operator. A predicate no row matches yet is logged as a warning and built anyway. The
        index is named after its predicate's digest unless ``name`` is given; a store may have
        several. Searches whose filter (and tenant) implies a partial index's predicate use it
        (``explain_search`` says which), with no iterative scan when the filter says no more.
        """
        return await self._indexes.create_index(
            index_type,
            params,
            where=where,
            domain=domain,
            name=name,
            concurrently=concurrently,
            maintenance_work_mem=maintenance_work_mem,
            max_parallel_maintenance_workers=max_parallel_maintenance_workers,
            progress=progress,
        )

    @translated
    async def drop_index(self, name: str | None = None, *, concurrently: bool = False) -> bool:
        """Drop the store's vector index(es), or the vector index ``name``; True when one was.

        Without ``name``: the store's full index(es); partial indexes stay (drop each by name,
        see ``list_indexes()``). ``name`` must be a vector index of this store's table: nothing
        else is ever dropped (False otherwise). A background build of this store is cancelled
        first. Automatic creation does not rebuild a dropped full index in this store object; a
        new store (a restart) with ``auto_create_index`` would.
        """
        return await self._indexes.drop_index(name, concurrently=concurrently)

    @translated
    async def reindex(
        self,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """Rebuild the store's vector index in place (``REINDEX INDEX [CONCURRENTLY]``).

        The partial indexes pgvs built are rebuilt too, each with its own predicate. Repairs an
        INVALID index too. Returns the new status; when there is no index, returns
        the (missing) status and does nothing.
        """
        return await self._indexes.reindex(
            concurrently=concurrently,
            maintenance_work_mem=maintenance_work_mem,
            max_parallel_maintenance_workers=max_parallel_maintenance_workers,
            progress=progress,
        )

    @translated
    @retried_read
    async def index_status(self) -> IndexStatus:
        """The store's vector index as the catalog sees it: exists, valid, type, params, size.

        The configured type's index when it exists, else another index this store built, else a
        status with ``exists=False``.
        """
        return await self._indexes.index_status()

    @translated
    @retried_read
    async def list_indexes(self) -> list[IndexStatus]:
        """Every vector index (HNSW or IVFFlat) of the store's table, full ones first.

        Each :class:`~pgvs.results.IndexStatus` has its validity, type, params, size and, for
        a partial index, its ``predicate`` (as PostgreSQL writes it) and the ``where`` /
        ``domain`` it was created with (None when pgvs did not build it). Also refreshes which
        partial indexes this store's searches may use (one built by another process is seen
        from here on).
        """
        return await self._indexes.list_indexes()

    @translated
    async def wait_for_index(self, timeout: float | None = None) -> IndexStatus:
        """Wait for this store's automatic index build (if one is running) and return the status.

        Raises the build's error if it failed, and QueryTimeoutError after ``timeout`` seconds
        (the build goes on).
        """
        return await self._indexes.wait_for_index(timeout)

    @translated
    async def tune(
        self,
        *,
        target_recall: float = 0.95,
        k: int = 10,
        queries: Any = None,
        sample: int = 200,
        filter: Mapping[str, Any] | None = None,
        max_seconds: float | None = None,
        progress: TuneProgress | None = None,
        apply: bool = False,
    ) -> TuneReport:
        """Measure which ``hnsw.ef_search`` (or ``ivfflat.probes``) gives ``target_recall``.

        Recall@``k`` is measured on this store's own data against an exact scan run on the same
        server (index scans off), for ``queries`` (vectors, as for ``search_batch``) or, by
        default, ``sample`` stored vectors drawn at random (the same ones on every call while
        the table is unchanged), each excluded from its own answers. The setting is swept
        upward by doubling, then bisected, until the smallest setting whose mean recall reaches
        the target is bracketed; every point records mean and p05 recall and the p50 and p95
        latency of one search's round trip. The vector index is forced while measuring (a small
        table's planner may prefer an exact scan, which a larger one would not). With a
        ``filter`` (or a tenant store) the filtered path is tuned on that filter, iterative
        scans included, and the sample is drawn from the matching rows.

        Returns a :class:`~pgvs.results.TuneReport`: ``print(report)`` shows the curve and the
        choice; ``report.plot("tune.png")`` draws it (``pip install 'pgvs[plot]'``). When no
        setting reaches the target, ``report.reachable`` is False and ``report.hint`` says how to
        rebuild the index. ``max_seconds``: once it has passed, the sweep stops after the
        setting being measured and returns the best so far with ``report.complete`` False.
        ``progress``: called with each measured :class:`~pgvs.results.TunePoint` (it may be a
        coroutine function).

        ``apply=True`` makes ``report.setting`` (when the target is out of reach: the best one
        measured) the default of every store that opens this table from now on, in any process: it is kept as a comment on the vector index (so dropping
        or rebuilding the index with other parameters discards it) and read at ``initialize()``.
        A store's configured ``ef_search``/``probes`` still take precedence, and a call's
        ``search(..., ef_search=...)`` overrides either. Stores already open elsewhere keep
        their value until they reopen; running ``tune(apply=True)`` again replaces it.

        Raises ValidationError for ``target_recall`` outside (0, 1], ``k`` < 1, a ``sample``
        larger than the rows (matching the filter), or empty ``queries``; ConfigurationError
        when the store has no valid vector index (exact search already has recall 1.0).
        """
        return await self._tuner.tune(
            target_recall=target_recall,
            k=k,
            queries=queries,
            sample=sample,
            filter=filter,
            max_seconds=max_seconds,
            progress=progress,
            apply=apply,
        )

    # -- monitoring ----------------------------------------------------------------------------

    @translated
    async def stats(self, *, top_queries: int = 10) -> StoreStats:
        """What the store holds and how the server treats it, as a typed
        :class:`~pgvs.results.StoreStats`.

        Rows per domain (exact counts: every domain's, the 100 largest by name, for a store
        without ``domain_id``; only its own for a tenant's store), the table's heap, TOAST and
        index sizes, every index of the table (method, validity, operator class, parameters,
        size, scans), the settings in force on the store's connections (``hnsw.ef_search``,
        ``maintenance_work_mem``, ``shared_buffers``, ``jit``, ...), live and dead tuples and
        the last (auto)vacuum and analyze, the pool (size, idle, in use, callers waiting), the
        pgvector and server versions, and the ``top_queries`` statements naming the table from
        ``pg_stat_statements`` by total time (None, with ``top_queries_note`` saying why, when
        that extension is not installed or not readable; ``0`` skips it). The counts scan the
        table: a few seconds per ten million rows.
        """
        return await read_stats(self._ctx, self._session, top_queries)


class VectorStoreFactory:
    """``VectorStoreFactory().create(backend="pgvector", dimensions=768, ...)``."""

    backends = ("pgvector",)

    def create(self, backend: str = "pgvector", **options: Any) -> AsyncPGVectorStore:
        if backend not in self.backends:
            raise ConfigurationError(
                f"unknown backend {backend!r}; available: {', '.join(self.backends)}"
            )
        return AsyncPGVectorStore(options)
