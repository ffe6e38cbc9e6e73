"""The index half of AsyncPGVectorStore's public API: vector indexes, tuning and monitoring.

A base class of :class:`~pgvs.store.core.AsyncPGVectorStore` (kept apart so that neither file
outgrows one screenful of purpose); it holds no state of its own and reaches the store's parts
through the attributes ``AsyncPGVectorStore.__init__`` sets. The sync facade generator reads its
public coroutines like the core's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import translated
from ..progress import ProgressCallback
from ..results import IndexStatus, StoreStats, TuneReport
from ._context import StoreContext
from ._index_manager import IndexManager
from ._session import Session, retried_read
from ._stats import read_stats
from ._tenancy import Tenancy
from ._tuner import TuneProgress, Tuner

__all__ = ["IndexMethods"]


class IndexMethods:
    """Index lifecycle, ``tune`` and ``stats`` of the async store."""

    _ctx: StoreContext
    _session: Session
    _indexes: IndexManager
    _tuner: Tuner
    _tenancy: Tenancy

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
        self._tenancy.check_index_operation(
            "create_index", concurrently=concurrently, partial=where is not None or bool(domain)
        )
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
        self._tenancy.check_index_operation("drop_index", concurrently=concurrently)
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
        self._tenancy.check_index_operation("reindex", concurrently=concurrently)
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
        default, queries made from ``sample`` stored vectors drawn at random (the same ones on
        every call while the table is unchanged). A stored vector is too easy a query (the
        search walks to its own node, linked to its neighbours), so each is moved off the
        index: by the distance (cosine: the angle) to its nearest other row, in a random
        direction, as a new vector from the same data typically lies (on glove50, sift5k and
        torchdocs this chooses what rows left out of the index build choose, within sampling
        noise: README, "Tuning recall"). Sparse and bit rows stay as they are, each left out of its own answers. Queries
        *unlike* the stored rows (questions against passages, another source) can need a much
        larger setting: pass a few hundred of them as ``queries``, or ``queries="recent"`` for
        the newest ones this store's searches were given (a store opened with ``query_log=N``
        keeps them, for every process, in a table beside the store's). The setting is swept
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
        measured) the default of every store that opens this table from now on, in any
        process: it is kept as a comment on the vector index (so dropping or rebuilding the
        index with other parameters discards it) and read at ``initialize()``.
        A store's configured ``ef_search``/``probes`` still take precedence, and a call's
        ``search(..., ef_search=...)`` overrides either. Stores already open elsewhere keep
        their value until they reopen; running ``tune(apply=True)`` again replaces it. With
        ``partition_by`` it is the tenant's: kept on its partition's own index, read by that
        domain's stores only, dropped with the partition.

        Raises ValidationError for ``target_recall`` outside (0, 1], ``k`` < 1, a ``sample``
        larger than the rows (matching the filter), empty ``queries``, ``"recent"`` with no
        query log or an empty one, or no row to find; ConfigurationError when the store has no
        valid vector index (exact search already has recall 1.0), or for ``apply=True`` with
        ``partition_by`` on a store without ``domain_id``.
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
        index sizes (with ``partition_by``: summed over the partitions, and ``partitions`` per
        partition), every index of the table (method, validity, operator class, parameters,
        size, scans), the settings in force on the store's connections (``hnsw.ef_search``,
        ``maintenance_work_mem``, ``shared_buffers``, ``jit``, ...), live and dead tuples and
        the last (auto)vacuum and analyze, the pool (size, idle, in use, callers waiting), the
        pgvector and server versions, and the ``top_queries`` statements naming the table from
        ``pg_stat_statements`` by total time (None, with ``top_queries_note`` saying why, when
        that extension is not installed or not readable; ``0`` skips it). The counts scan the
        table: a few seconds per ten million rows.
        """
        return await read_stats(self._ctx, self._session, top_queries)
