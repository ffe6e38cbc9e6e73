"""Reader: counts, gets and vector searches, each planned once and run in the fewest round trips.

A search without options is one pool fetch of a statement precomputed per (k, columns). Anything
that needs more than the pool's session defaults (a filter, a tenant, exact search, per-call
``ef_search``/``probes``, more candidates than ``ef_search`` yields) gets a
:class:`~pgvs.planning.QueryPlan` and runs with its ``SET LOCAL`` settings in a transaction.

A filtered search whose filter (and tenant) implies a partial index's predicate carries that
predicate as literal SQL (see :mod:`pgvs.partial`), so the planner can prove the index applies;
when the predicate says all the filter says, the search is just the predicate: no parameters,
no iterative scan, no settings (one round trip again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import indexes as ix
from ..partial import Route
from ..planning import QueryPlan, search_settings, set_local_sql
from ..results import Record, SearchExplanation, SearchResult
from ._context import StoreContext, check_k, check_query_options
from ._index_manager import IndexManager
from ._query_log import QueryLog
from ._session import Session, SqlBegun, end_failed, scope

__all__ = ["Reader"]

# Distinct (k, columns) plain-search statements kept; asyncpg's per-connection statement cache
# (100 by default) should hold them all.
_PLAIN_SEARCH_STATEMENTS = 64


def _with_route(
    condition: str | None, params: Sequence[Any], route: Route | None
) -> tuple[str | None, Sequence[Any]]:
    """A search's condition and parameters with a partial index's predicate added (the literal
    SQL pgvs.partial wrote through _sql.quote_literal): alone when it covers the filter."""
    if route is None:
        return condition, params
    if route.covered:
        return route.predicate_sql, ()
    return (f"{condition} AND {route.predicate_sql}" if condition else route.predicate_sql), params


class Reader:
    def __init__(
        self,
        ctx: StoreContext,
        session: Session,
        indexes: IndexManager,
        log: QueryLog | None = None,
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.indexes = indexes
        # Where searches record their queries (query_log); None when the store keeps none.
        self.log = log if log is not None and log.enabled else None
        self._plain_sql: dict[tuple[int, bool, bool], str] = {}

    def answered(self, value: Any) -> None:
        """Log a query once its search has been answered: a try that failed (and may be
        retried, here or on the primary after a replica) is not logged, so no query counts
        twice and no refused one counts at all."""
        if self.log is not None:
            self.log.record(value)

    async def count(self, filter: Mapping[str, Any] | None) -> int:
        ctx = self.ctx
        compiled = ctx.compile(filter, ctx.sql.first_param())
        value = await self.session.pool.fetchval(
            ctx.sql.count_where(compiled.sql), *ctx.domain_args(), *compiled.params
        )
        return int(value)

    async def get_vectors(self, ids: Sequence[Any], include_metadata: bool) -> list[Record]:
        ctx = self.ctx
        checked = ctx.ids(ids)
        if not checked:
            return []
        rows = await self.session.pool.fetch(
            ctx.sql.get(include_metadata), *ctx.domain_args(), list(dict.fromkeys(checked))
        )
        by_id = {row["id"]: row for row in rows}
        records = []
        for key in checked:
            row = by_id.get(key)
            if row is None:
                records.append(Record(key, None, None))
            elif include_metadata:
                get = row.get
                records.append(
                    Record(
                        key,
                        row["embedding"],
                        row["metadata"],
                        get("content"),
                        get("document_id"),
                        get("chunk_index"),
                    )
                )
            else:
                records.append(Record(key, row["embedding"], None))
        return records

    # -- planning ------------------------------------------------------------------------------

    def plan(
        self,
        k: int,
        filter: Mapping[str, Any] | None,
        ef_search: int | None,
        probes: int | None,
        exact: bool,
        route: Route | None = None,
    ) -> QueryPlan:
        check_query_options(ef_search, probes)
        indexes = self.indexes
        # A covering partial index holds only matching rows: nothing for an iterative scan to do.
        covered = route is not None and route.covered
        if route is not None and probes is None and self.ctx.config.probes is None:
            probes = route.probes  # an IVFFlat partial index: sqrt of its own lists
        return search_settings(
            self.ctx.config,
            k=k,
            filtered=(bool(filter) or self.ctx.tenant) and not covered,
            ann=indexes.ann,
            session=self.session.settings,
            iterative=indexes.iterative,
            ef_search=ef_search,
            probes=probes,
            exact=exact,
        )

    def _needs_plan(
        self,
        k: int,
        filter: Mapping[str, Any] | None,
        ef_search: int | None,
        probes: int | None,
        exact: bool,
    ) -> bool:
        """Whether a search may need settings beyond the pool's defaults. When False,
        :meth:`plan` would return no settings; this is its cheap pre-check for the hot path."""
        return bool(
            filter
            or exact
            or ef_search is not None
            or probes is not None
            or self.ctx.tenant
            or (self.indexes.ann and k * self.ctx.rows_per_result > self.session.base_ef)
        )

    def statement(
        self,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        include_vectors: bool,
        resort: bool,
        route: Route | None = None,
    ) -> tuple[str, Sequence[Any]]:
        sql = self.ctx.sql
        compiled = self.ctx.compile(filter, sql.search_params_start()) if filter else None
        condition, params = _with_route(
            compiled.sql if compiled else None, compiled.params if compiled else (), route
        )
        text = sql.search(
            condition=condition,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
            resort=resort,
        )
        return text, params

    def _plain_statement(self, k: int, include_metadata: bool, include_vectors: bool) -> str:
        key = (k, include_metadata, include_vectors)
        cached = self._plain_sql.get(key)
        if cached is not None:
            return cached
        sql = self.ctx.sql.search_plain(
            k, include_metadata=include_metadata, include_vectors=include_vectors
        )
        if len(self._plain_sql) < _PLAIN_SEARCH_STATEMENTS:
            self._plain_sql[key] = sql
        return sql

    # -- searches ------------------------------------------------------------------------------

    async def search(
        self,
        query: Any,
        k: int,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        include_vectors: bool,
        min_score: float | None,
        ef_search: int | None,
        probes: int | None,
        exact: bool,
    ) -> list[SearchResult]:
        check_k(k)
        ctx = self.ctx
        value = ctx.query_value(query)
        if self._needs_plan(k, filter, ef_search, probes, exact):
            route = None if exact else self.indexes.route(filter)
            plan = self.plan(k, filter, ef_search, probes, exact, route)
            sql, params = self.statement(
                filter, include_metadata, include_vectors, plan.resort, route
            )
            args = (value, k, *ctx.domain_args(), *params)
            rows = await self.session.fetch_with_settings(plan.settings, sql, *args)
        else:
            sql = self._plain_statement(k, include_metadata, include_vectors)
            fetch = self.session.pool.fetch
            if ctx.has_domain:
                rows = await fetch(sql, value, ctx.domain)
            else:
                rows = await fetch(sql, value)
        self.answered(value)
        to_result = ctx.row_to_result
        results = [to_result(row, include_metadata, include_vectors) for row in rows]
        if min_score is not None:
            results = [hit for hit in results if hit.score >= min_score]
        return results

    async def search_batch(
        self,
        queries: Any,
        k: int,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        include_vectors: bool,
        min_score: float | None,
        ef_search: int | None,
        probes: int | None,
        exact: bool,
    ) -> list[list[SearchResult]]:
        check_k(k)
        ctx = self.ctx
        values = ctx.query_values(queries)
        if not values:
            return []
        route = None if exact else self.indexes.route(filter)
        plan = self.plan(k, filter, ef_search, probes, exact, route)
        compiled = ctx.compile(filter, ctx.sql.search_params_start())
        condition, params = _with_route(
            compiled.sql if filter else None, compiled.params if filter else (), route
        )
        sql = ctx.sql.search_batch(
            condition=condition,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
        )
        args = (values, k, *ctx.domain_args(), *params)
        rows = await self.session.fetch_with_settings(plan.settings, sql, *args)
        if self.log is not None:
            self.log.record_many(values)  # (as answered(), for each)
        grouped: list[list[SearchResult]] = [[] for _ in values]
        for row in rows:
            hit = ctx.row_to_result(row, include_metadata, include_vectors)
            if min_score is None or hit.score >= min_score:
                grouped[row["ord"] - 1].append(hit)
        return grouped

    async def explain_search(
        self,
        query: Any,
        k: int,
        filter: Mapping[str, Any] | None,
        ef_search: int | None,
        probes: int | None,
        exact: bool,
        analyze: bool,
    ) -> SearchExplanation:
        check_k(k)
        ctx = self.ctx
        value = ctx.query_value(query)
        route = None if exact else self.indexes.route(filter)
        plan = self.plan(k, filter, ef_search, probes, exact, route)
        sql, params = self.statement(filter, True, False, plan.resort, route)
        args = (value, k, *ctx.domain_args(), *params)
        options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
        async with self.session.pool.acquire() as connection:
            # Read-only: rolling back ends the SET LOCALs (and EXPLAIN ANALYZE's work).
            ending = SqlBegun(connection)
            try:
                await connection.execute(set_local_sql(plan.settings))
                await scope(connection, self.session.pool.domain)
                document = await connection.fetchval(f"EXPLAIN ({options}) {sql}", *args)
                names = [
                    row["name"]
                    for row in await connection.fetch(
                        ctx.sql.VECTOR_INDEXES_QUERY, ctx.sql.table_text
                    )
                ]
            except BaseException as exc:
                await end_failed(connection, ending, exc)
                raise
            await ending.rollback()
        tree = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        used = ix.uses_index(tree, names)
        return SearchExplanation(
            sql=sql,
            settings=plan.settings,
            plan=tree,
            uses_vector_index=used is not None,
            index_name=used,
            partial_index=route.name if route is not None else None,
        )
