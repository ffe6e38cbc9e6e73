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
    IngestResult,
    Record,
    SearchExplanation,
    SearchResult,
)
from ._bootstrap import prepare_schema
from ._context import StoreContext
from ._index_api import IndexMethods
from ._index_manager import IndexManager
from ._ingest import ingest_columns, run_ingest
from ._load_build import load_then_build
from ._query_log import QueryLog
from ._reads import Reader
from ._replicas import ReadParts, ReadRouting, Replicas, noted_write
from ._session import Session, retried_read
from ._strategies import Strategies
from ._tenancy import Tenancy, is_missing_partition
from ._tuner import Tuner
from ._writes import Writer

__all__ = ["AsyncPGVectorStore", "ProgressCallback", "VectorStoreFactory"]

Self = TypeVar("Self", bound="AsyncPGVectorStore")


class AsyncPGVectorStore(IndexMethods):
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
        self._query_log = QueryLog(self._ctx, self._session)
        self._reader = Reader(self._ctx, self._session, self._indexes, self._query_log)
        self._writer = Writer(self._ctx, self._session, self._indexes.after_write)
        self._strategies = Strategies(self._ctx, self._session, self._reader)
        self._tuner = Tuner(self._ctx, self._session, self._indexes, self._query_log)
        self._tenancy = Tenancy(self._ctx, self._session, self._indexes.refresh_tuned)
        primary = ReadParts(self._session, self._reader, self._strategies)
        self._replicas = Replicas(self._ctx, primary, self._indexes)

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
    def read_routing(self) -> ReadRouting:
        """Where reads went: replica and primary counts, read-your-writes waits (``read_replicas``)."""
        return self._replicas.routing()

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
        await self._query_log.close()
        await self._replicas.close()
        await self._session.close()

    # -- writes --------------------------------------------------------------------------------

    @translated
    @noted_write
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
        await self._tenancy.ensure_partition()
        try:
            return await self._writer.add_vectors(
                vectors, ids, metadata, contents, document_ids, chunk_indexes
            )
        except Exception as exc:  # the partition was dropped since: nothing was written
            if not is_missing_partition(exc):
                raise
            self._tenancy.partition_lost()
            await self._tenancy.ensure_partition()
        return await self._writer.add_vectors(
            vectors, ids, metadata, contents, document_ids, chunk_indexes
        )

    @translated
    @noted_write
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
    @noted_write
    async def delete_vectors(self, ids: Sequence[Any]) -> int:
        """Delete rows by id; returns how many were deleted."""
        return await self._writer.delete_vectors(ids)

    @translated
    @noted_write
    async def delete(self, filter: Mapping[str, Any]) -> int:
        """Delete the rows matching a (non-empty) filter; returns how many. See ``clear()``."""
        return await self._writer.delete(filter)

    @translated
    @noted_write
    async def clear(self) -> int:
        """Delete every row of this store's domain; returns how many."""
        return await self._writer.clear()

    @translated
    @noted_write
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
        build_after_load: bool | None = None,
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

        Into an empty table, the store's HNSW index is built once after the load (sized to fit
        in memory; see :mod:`._load_build`): ``ingest`` returns with it valid. That needs
        ``auto_create_index`` (a crash before the build leaves it to the next start-up) or
        ``build_after_load=True`` (the caller restores it then); False never drops it.
        ``IngestResult.index_note`` says why it was not built after the load.
        """
        # Checked every call (one short transaction): an ingest cannot be retried row-exactly
        # the way add_vectors is when the partition was dropped since this store made it.
        await self._tenancy.ensure_partition(check=True)
        result = await load_then_build(
            self._indexes,
            lambda: run_ingest(
                self._ctx,
                self._session,
                data,
                ingest_columns(ids, metadata, contents, document_ids, chunk_indexes),
                batch_size=batch_size,
                progress=progress,
                atomic=atomic,
                connections=connections,
            ),
            build_after_load=build_after_load,
        )
        self._indexes.after_write()
        return result

    # -- reads ---------------------------------------------------------------------------------

    @translated
    @retried_read
    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many rows (matching ``filter``) this store's domain holds."""
        return await self._replicas.read(lambda parts: parts.reader.count(filter))

    @translated
    @retried_read
    async def get_vectors(self, ids: Sequence[Any], include_metadata: bool = True) -> list[Record]:
        """Rows by id, aligned with ``ids``; a missing id gives a Record with ``found == False``.

        Each :class:`~pgvs.results.Record` is a tuple ``(vector, metadata)`` with more
        attributes (``id``, ``content``, ``document_id``, ``chunk_index``).
        """
        return await self._replicas.read(
            lambda parts: parts.reader.get_vectors(ids, include_metadata)
        )

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
        args = (query, k, filter, include_metadata, include_vectors, min_score, ef_search)
        if not self._replicas.enabled:  # the hot path: no routing frame
            return await self._reader.search(*args, probes, exact)
        return await self._replicas.read(lambda parts: parts.reader.search(*args, probes, exact))

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
        return await self._replicas.read(
            lambda parts: parts.reader.search_batch(
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
        return await self._replicas.read(
            lambda parts: parts.reader.explain_search(
                query, k, filter, ef_search, probes, exact, analyze
            )
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
        return await self._replicas.read(
            lambda parts: parts.strategies.text_search(
                text, k, filter, include_metadata, include_vectors
            )
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
        return await self._replicas.read(
            lambda parts: parts.strategies.hybrid_search(
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
        return await self._replicas.read(
            lambda parts: parts.strategies.mmr_search(
                query, k, fetch_k, lambda_mult, filter, include_metadata, include_vectors
            )
        )

    @translated
    @retried_read
    async def centroid(
        self, *, ids: Sequence[Any] | None = None, filter: Mapping[str, Any] | None = None
    ) -> npt.NDArray[Any] | None:
        """The mean vector of the rows given by ``ids`` and/or ``filter`` (all rows of the domain
        without either), computed on the server with pgvector's ``avg()``; None when no row
        matches."""
        return await self._replicas.read(lambda parts: parts.strategies.centroid(ids, filter))

    # -- tenants -------------------------------------------------------------------------------

    @translated
    @noted_write
    async def drop_domain(self, domain: str) -> bool:
        """Remove every row of tenant ``domain``: with ``partition_by="domain"`` a DROP of its
        partition (O(1)); otherwise a DELETE of its rows. True when it had a partition (rows).
        Its entries in the query log (``query_log``) are deleted too."""
        dropped = await self._tenancy.drop_domain(domain)
        await self._query_log.forget(domain)
        return dropped


class VectorStoreFactory:
    """``VectorStoreFactory().create(backend="pgvector", dimensions=768, ...)``."""

    backends = ("pgvector",)

    def create(self, backend: str = "pgvector", **options: Any) -> AsyncPGVectorStore:
        if backend not in self.backends:
            raise ConfigurationError(
                f"unknown backend {backend!r}; available: {', '.join(self.backends)}"
            )
        return AsyncPGVectorStore(options)
