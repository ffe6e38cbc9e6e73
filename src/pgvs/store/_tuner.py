"""Tuner: ``store.tune()``, the measuring half (the pure half is :mod:`pgvs.tuning`).

Everything runs on one pooled connection, in read-only transactions that are rolled back: the
ground truth with index scans off, then one transaction per setting of the sweep with that
setting, the filtered path's settings and the vector index forced, each search timed alone (its
statement's round trip: what a search costs once the setting is the store's default). With
``apply=True`` the chosen setting becomes a comment on the index, which every store opening the
table reads at ``initialize()`` (:meth:`IndexManager.load_tuned`); with ``partition_by``, on the
tenant's partition's own index, which only that tenant's stores read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .. import indexes as ix
from .. import tuning
from .._sql import qualified
from ..errors import ConfigurationError, ValidationError
from ..planning import QueryPlan, search_settings, set_local_sql
from ..results import IndexStatus, TunePoint, TuneReport
from ._context import StoreContext
from ._index_manager import IndexManager
from ._query_log import QueryLog
from ._session import Session, logger, scope

__all__ = ["TuneProgress", "Tuner"]

#: Called with each measured setting (may be a coroutine function).
TuneProgress = Callable[[TunePoint], Any]

Truth = list[tuple[Any, float]]  # (id, distance), nearest first
# The table's DDL advisory lock (:mod:`._bootstrap`, :mod:`._tenancy`): $1 = its lock key.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


@contextlib.asynccontextmanager
async def _read_only(
    connection: PoolConnectionProxy[asyncpg.Record],
    settings: Sequence[tuple[str, str]],
    domain: str | None,
) -> AsyncIterator[None]:
    """A transaction with ``settings`` as SET LOCAL, rolled back at the end: nothing it set
    reaches the next user of the pooled connection, and a connection whose transaction could not
    be ended is terminated, never reused. ``domain``: the tenant row-level security admits
    (``session.pool.domain``; outside a scoped transaction the policy admits no row)."""
    await connection.execute(set_local_sql(settings))
    try:
        await scope(connection, domain)
        yield
    except asyncio.CancelledError:
        connection.terminate()
        raise
    finally:
        if not connection.is_closed():
            try:
                await connection.execute("ROLLBACK")
            except BaseException:
                connection.terminate()
                raise


class Tuner:
    def __init__(
        self, ctx: StoreContext, session: Session, indexes: IndexManager, log: QueryLog
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.indexes = indexes
        self.log = log

    async def tune(
        self,
        *,
        target_recall: float,
        k: int,
        queries: Any,
        sample: int,
        filter: Mapping[str, Any] | None,
        max_seconds: float | None,
        progress: TuneProgress | None,
        apply: bool,
    ) -> TuneReport:
        """AsyncPGVectorStore.tune."""
        tuning.check_tune_arguments(target_recall, k, sample, max_seconds)
        if apply and self.ctx.config.partition_by is not None and self.ctx.config.domain_id is None:
            # A tenant's setting goes on its partition's own index. A store without domain_id
            # searches the '' domain's partition, but reads every tenant's stats and drops any
            # tenant: its apply=True would look like the whole table's. Refused before the sweep.
            raise ConfigurationError(
                "tune(apply=True) on a store with partition_by='domain' persists a tenant's "
                "setting on its own partition's index, and this store has no domain_id: it "
                "measures the '' domain's partition only, so its setting is no other tenant's",
                hint="Open a store with the tenant's domain_id and tune that (every tenant's "
                "partition keeps its own setting); for the '' domain, give its stores "
                "ef_search=report.setting. See docs/scale.md.",
            )
        if progress is not None and not callable(progress):
            raise ValidationError(
                f"progress must be None or a callable, got {type(progress).__name__}"
            )
        started = time.perf_counter()
        ctx = self.ctx
        condition = ctx.compile(filter, ctx.sql.search_params_start())  # bad filters fail here
        status = await self._index()
        parameter = tuning.PARAMETERS[str(status.index_type)]
        sampled = queries is None
        logged = isinstance(queries, str)
        if logged and queries != "recent":
            raise ValidationError(
                f'queries must be query vectors, None (sample stored rows) or "recent" (the '
                f"query log), got {queries!r}"
            )
        if sampled:
            async with self.session.pool.acquire() as connection:
                values, own_ids = await self._sample(connection, filter, sample)
        else:
            values = ctx.query_values(await self.log.recent() if logged else queries)
            own_ids = [None] * len(values)
            if not values:
                raise ValidationError("queries is empty: give at least one query vector")
        # A sparse or bit store's sampled row is its own query and finds itself first: one more
        # row per search, dropped from both answers. (Dense samples are new points: _sample.)
        rows = k + 1 if any(own is not None for own in own_ids) else k
        lists = int(status.params.get("lists", 100)) if status.index_type == "ivfflat" else None
        low, high = tuning.knob_range(
            parameter, rows_per_query=rows * ctx.rows_per_result, lists=lists
        )
        filtered = bool(filter) or ctx.tenant
        params = (*ctx.domain_args(), *condition.params)
        search_sql = ctx.sql.search(
            condition=condition.sql if filter else None,
            include_metadata=False,
            include_vectors=False,
            # As search() would: an iterative scan's rows (a filtered search's) are re-sorted.
            # Whether one runs does not depend on the setting, which is never below the rows.
            resort=self._plan(parameter, low, rows, filtered).resort,
        )
        deadline = None if max_seconds is None else started + max_seconds
        sweep = tuning.Sweep(float(target_recall), low, high)
        points: list[TunePoint] = []
        complete = True
        async with self.session.pool.acquire() as connection:
            truths, exact_ms = await self._exact(connection, values, own_ids, rows, filter)
            if not any(truths):  # every recall would read 1.0: nothing was there to miss
                matching = " matching the filter" if filter else ""
                raise ValidationError(
                    f"no query has an exact answer: no stored row{matching} is visible to this "
                    "store's searches (but a sampled row itself), so there is no recall to "
                    "measure",
                    hint="Tune once this store's domain holds rows (a store without domain_id "
                    "works in the '' domain).",
                )
            while (setting := sweep.next()) is not None:
                # At least one setting is measured, so a deadline still gives a best-so-far.
                if points and deadline is not None and time.perf_counter() >= deadline:
                    complete = False
                    break
                settings = self._settings(parameter, setting, rows, filtered)
                if not points:
                    await self._check_index_used(
                        connection, settings, search_sql, values[0], rows, params
                    )
                point = await self._measure(
                    connection,
                    setting,
                    settings,
                    search_sql,
                    (values, own_ids, truths),
                    rows,
                    k,
                    params,
                )
                sweep.record(setting, point.recall)
                points.append(point)
                if progress is not None:
                    outcome = progress(point)
                    if inspect.isawaitable(outcome):
                        await outcome
        report = tuning.build_report(
            parameter=parameter,
            index_type=str(status.index_type),
            target_recall=float(target_recall),
            k=k,
            queries=len(values),
            sampled=sampled,
            filtered=filtered,
            points=points,
            sweep=sweep,
            exact_p50_ms=tuning.quantile(exact_ms, 0.5),
            complete=complete,
            elapsed_seconds=time.perf_counter() - started,
            quantized=ctx.rows_per_result > 1,
        )
        if logged:
            report = dataclasses.replace(report, logged=True)
        if apply and report.setting is not None:
            await self._persist(status, report)
            report = dataclasses.replace(report, applied=True)
        return report

    async def _index(self) -> IndexStatus:
        status = await self.indexes.index_status()
        if not status.usable or status.index_type not in tuning.PARAMETERS:
            what = "is not valid yet" if status.exists else "does not exist"
            raise ConfigurationError(
                f"tune() needs a vector index, and this store's ({status.name}) {what}: without "
                "one every search is an exact scan, whose recall is already 1.0",
                hint="create_index() (or wait_for_index() for the automatic build), then tune.",
            )
        return status

    async def _sample(
        self,
        connection: PoolConnectionProxy[asyncpg.Record],
        filter: Mapping[str, Any] | None,
        sample: int,
    ) -> tuple[list[Any], list[Any]]:
        """Queries made from ``sample`` stored rows (matching ``filter``), the same ones on every
        call, and the id each must leave out of its answers (None: none).

        Dense rows become points off the index, as far from their row as it is from its nearest
        other row (:func:`pgvs.tuning.held_out_queries`); a sparse or bit row stays the query
        (no direction to move it in) and leaves itself out of its answers. The nearest other row
        only sets a scale, so the vector index finds it (forced, as a large table's planner
        would choose; an iterative scan goes past the row itself and the filter's misses):
        an exact scan per row would double the tuning's exact work.
        """
        ctx = self.ctx
        compiled = ctx.compile(filter, ctx.sql.first_param())
        # On the connection the caller holds: a second one from the pool would wait forever
        # (until acquire_timeout) on a pool of one.
        async with _read_only(connection, (), self.session.pool.domain):
            available = int(
                await connection.fetchval(
                    ctx.sql.count_where(compiled.sql), *ctx.domain_args(), *compiled.params
                )
            )
        if sample > available:
            where = "rows match the filter" if filter else "rows are stored"
            raise ValidationError(
                f"sample={sample} is larger than the table: only {available} {where}",
                hint="Pass a smaller sample, or your own query vectors as queries=.",
            )
        domain = ctx.sql.col("domain_id") if ctx.has_domain else None
        sql = tuning.sample_sql(
            ctx.sql.table,
            ctx.sql.col("id"),
            ctx.sql.id_select,
            ctx.sql.col("embedding"),
            ctx.sql.operator,
            tuning.domain_where(domain, 1, compiled.sql),
            compiled.next_param,
        )
        plan = search_settings(
            ctx.config,
            k=1,
            filtered=True,  # the neighbour is not the row itself: a filter on the id
            ann=True,
            session=self.session.settings,
            iterative=self.indexes.iterative,
        )
        forced = (*plan.settings, *tuning.FORCE_INDEX_SETTINGS)
        async with _read_only(connection, forced, self.session.pool.domain):
            found = await connection.fetch(
                sql, *ctx.domain_args(), *compiled.params, tuning.SAMPLE_SEED, sample
            )
        if not ctx.dense:
            return [ctx.query_value(r["embedding"]) for r in found], [r["id"] for r in found]
        rows = [r["embedding"] for r in found]
        near = [r["embedding"] if r["neighbour"] is None else r["neighbour"] for r in found]
        moved = tuning.held_out_queries(rows, near, angular=ctx.cosine, seed=tuning.SAMPLE_SEED)
        return ctx.query_values(moved), [None] * len(found)

    def _settings(
        self, parameter: str, setting: int, rows: int, filtered: bool
    ) -> list[tuple[str, str]]:
        """What a search at ``setting`` runs with: the store's plan for it (iterative scans when
        filtered), the setting itself, and the vector index forced."""
        settings = dict(self._plan(parameter, setting, rows, filtered).settings)
        settings[parameter] = str(setting)
        settings.update(tuning.FORCE_INDEX_SETTINGS)
        return list(settings.items())

    def _plan(self, parameter: str, setting: int, rows: int, filtered: bool) -> QueryPlan:
        hnsw = parameter == "hnsw.ef_search"
        return search_settings(
            self.ctx.config,
            k=rows,
            filtered=filtered,
            ann=True,
            session=self.session.settings,
            ef_search=setting if hnsw else None,
            probes=None if hnsw else setting,
            iterative=self.indexes.iterative,
        )

    async def _exact(
        self,
        connection: PoolConnectionProxy[asyncpg.Record],
        values: Sequence[Any],
        own_ids: Sequence[Any],
        rows: int,
        filter: Mapping[str, Any] | None,
    ) -> tuple[list[Truth], list[float]]:
        """Every query's exact answer (index scans off) and the exact scan's latencies."""
        ctx = self.ctx
        condition = ctx.compile(filter, ctx.sql.search_params_start())
        distance = f"{ctx.sql.col('embedding')} {ctx.sql.operator} $1::{ctx.sql.query_cast}"
        domain = ctx.sql.col("domain_id") if ctx.has_domain else None
        sql = tuning.exact_sql(
            ctx.sql.table,
            ctx.sql.id_select,
            distance,
            tuning.domain_where(domain, 3, condition.sql),
        )
        filtered = bool(filter) or ctx.tenant
        plan = search_settings(ctx.config, k=rows, filtered=filtered, ann=True, exact=True)
        params = (*ctx.domain_args(), *condition.params)
        truths: list[Truth] = []
        latencies: list[float] = []
        async with _read_only(connection, plan.settings, self.session.pool.domain):
            for value, own in zip(values, own_ids, strict=True):
                begun = time.perf_counter()
                found = await connection.fetch(sql, value, rows, *params)
                latencies.append((time.perf_counter() - begun) * 1000)
                truths.append([(r["id"], float(r["distance"])) for r in found if r["id"] != own])
        return truths, latencies

    async def _check_index_used(
        self,
        connection: PoolConnectionProxy[asyncpg.Record],
        settings: Sequence[tuple[str, str]],
        sql: str,
        value: Any,
        rows: int,
        params: Sequence[Any],
    ) -> None:
        """Refuse to measure a plan that bypasses the vector index: its recall would say
        nothing about the setting."""
        ctx = self.ctx
        async with _read_only(connection, settings, self.session.pool.domain):
            document = await connection.fetchval(
                f"EXPLAIN (FORMAT JSON) {sql}", value, rows, *params
            )
            names = [
                row["name"]
                for row in await connection.fetch(ctx.sql.VECTOR_INDEXES_QUERY, ctx.sql.table_text)
            ]
        tree = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        if ix.uses_index(tree, names) is None:
            raise ConfigurationError(
                "the vector index does not serve this store's searches even when forced, so "
                "its settings cannot be tuned",
                hint="Check explain_search(); a filter on another index may be taking over.",
            )

    async def _measure(
        self,
        connection: PoolConnectionProxy[asyncpg.Record],
        setting: int,
        settings: Sequence[tuple[str, str]],
        sql: str,
        queries: tuple[Sequence[Any], Sequence[Any], Sequence[Truth]],
        rows: int,
        k: int,
        params: Sequence[Any],
    ) -> TunePoint:
        """Every query (value, own id, exact answer) at one setting: its recall@k and its
        statement's round trip. ``rows``: as many as the exact answers asked for."""
        recalls: list[float | None] = []
        latencies: list[float] = []
        values, own_ids, truths = queries
        async with _read_only(connection, settings, self.session.pool.domain):
            for value, own, truth in zip(values, own_ids, truths, strict=True):
                begun = time.perf_counter()
                found = await connection.fetch(sql, value, rows, *params)
                latencies.append((time.perf_counter() - begun) * 1000)
                hits = [(r["id"], float(r["distance"])) for r in found if r["id"] != own]
                recalls.append(tuning.recall_at_k(hits, truth, k))
        return tuning.measure_point(setting, recalls, latencies)

    async def _persist(self, status: IndexStatus, report: TuneReport) -> None:
        """Make ``report.setting`` the default of every store on this index: a comment on the
        index (read at initialize()), and this store's pool right away. With ``partition_by``
        the index is this tenant's partition's own (the graph that was measured): every store
        of this tenant reads it, no other tenant's does."""
        pool = self.session.pool
        comment = tuning.tuned_comment(report)
        schema = self.ctx.config.schema
        if self.ctx.config.partition_by is None:
            statement = await pool.fetchval(
                tuning.COMMENT_INDEX_SQL, qualified(schema, status.name), comment
            )
            await pool.execute(statement)
        else:
            # Under the table's DDL lock, as a partition is created and dropped: the index
            # found is the one commented, not one of a partition dropped (and made again) since.
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(_LOCK, self.ctx.sql.lock_key())
                found = await self.indexes.partition_indexes(connection, [status.name])
                if not found:
                    raise ConfigurationError(
                        f"this store's domain's partition of {self.ctx.sql.table} (and its "
                        "index) was dropped while tune() measured it: nothing was persisted",
                        hint="Tune again once the tenant holds rows.",
                    )
                statement = await connection.fetchval(
                    tuning.COMMENT_INDEX_SQL, qualified(schema, found[0]["name"]), comment
                )
                await connection.execute(statement)
        await self.indexes.refresh_session(pool)
        configured = (
            self.ctx.config.ef_search
            if report.parameter == "hnsw.ef_search"
            else self.ctx.config.probes
        )
        if configured is not None:
            tenant = f" of domain {self.ctx.domain!r}" if self.ctx.config.partition_by else ""
            logger.warning(
                "%s = %s is now the default of stores%s on %s, but this store's configuration "
                "sets %s, which takes precedence here",
                report.parameter,
                report.setting,
                tenant,
                self.ctx.sql.table,
                configured,
            )
