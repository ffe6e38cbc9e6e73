"""Strategies: text, hybrid and MMR search, and centroids, on the store's connections.

The SQL and the ranking maths are pure and live in :mod:`pgvs.search`; this part validates the
arguments (all before any I/O), plans the vector leg like ``search()`` (same index, same
iterative scans when filtered) and runs one statement per call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _rows
from ..errors import ConfigurationError
from ..results import SearchResult
from ..search.ranking import check_hybrid, check_mmr, mmr_select
from ..search.statements import Fusion, SearchStatements
from ..search.text import check_text, require_text_search
from ._context import StoreContext, check_k
from ._reads import Reader
from ._session import Session

__all__ = ["Strategies"]


class Strategies:
    def __init__(self, ctx: StoreContext, session: Session, reader: Reader) -> None:
        self.ctx = ctx
        self.session = session
        self.reader = reader
        self.statements = SearchStatements(ctx.sql)

    def _require_dense(self, method: str) -> None:
        if not self.ctx.dense:
            raise ConfigurationError(
                f"{method}() works on dense vectors; this store's vector_type is "
                f"{self.ctx.config.vector_type!r}",
                hint="Use search() on sparsevec and bit stores.",
            )

    async def text_search(
        self,
        text: str,
        k: int,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        include_vectors: bool,
    ) -> list[SearchResult]:
        ctx = self.ctx
        require_text_search(ctx.config, "text_search")
        check_k(k)
        text = check_text(text)
        compiled = ctx.compile(filter, ctx.sql.search_params_start()) if filter else None
        statement = self.statements.text_search(
            condition=compiled.sql if compiled else None,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
        )
        args = (text, k, *ctx.domain_args(), *(compiled.params if compiled else ()))
        rows = await self.session.pool.fetch(statement, *args)
        results = []
        for rank, row in enumerate(rows, start=1):
            get = row.get
            results.append(
                SearchResult(
                    row["id"],
                    float(row["score"]),
                    get("metadata"),
                    math.nan,
                    get("content"),
                    get("document_id"),
                    get("chunk_index"),
                    get("embedding"),
                    text_rank=rank,
                )
            )
        return results

    async def hybrid_search(
        self,
        query: Any,
        text: str,
        k: int,
        filter: Mapping[str, Any] | None,
        fusion: Fusion,
        rrf_k: float,
        vector_weight: float,
        text_weight: float,
        candidates: int | None,
        ef_search: int | None,
        include_metadata: bool,
        include_vectors: bool,
    ) -> list[SearchResult]:
        ctx = self.ctx
        require_text_search(ctx.config, "hybrid_search")
        check_k(k)
        text = check_text(text)
        per_leg = check_hybrid(
            k=k,
            fusion=fusion,
            rrf_k=rrf_k,
            vector_weight=vector_weight,
            text_weight=text_weight,
            candidates=candidates,
        )
        value = ctx.query_value(query)
        plan = self.reader.plan(per_leg, filter, ef_search, None, False)
        first = ctx.sql.search_params_start()
        compiled = ctx.compile(filter, first) if filter else None
        vector_leg = ctx.sql.search(
            condition=compiled.sql if compiled else None,
            include_metadata=False,
            include_vectors=False,
            resort=plan.resort,
        )
        statement = self.statements.hybrid_search(
            vector_leg=vector_leg,
            condition=compiled.sql if compiled else None,
            first_extra=compiled.next_param if compiled else first,
            fusion=fusion,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
        )
        args = (
            value,
            per_leg,
            *ctx.domain_args(),
            *(compiled.params if compiled else ()),
            text,
            k,
            float(vector_weight),
            float(text_weight),
            *((float(rrf_k),) if fusion == "rrf" else ()),
        )
        rows = await self.session.fetch_with_settings(plan.settings, statement, *args)
        self.reader.answered(value)
        results = []
        for row in rows:
            hit = ctx.row_to_result(row, include_metadata, include_vectors)
            hit.score = float(row["score"])
            hit.vector_rank = row["vector_rank"]
            hit.text_rank = row["text_rank"]
            results.append(hit)
        return results

    async def mmr_search(
        self,
        query: Any,
        k: int,
        fetch_k: int,
        lambda_mult: float,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        include_vectors: bool,
    ) -> list[SearchResult]:
        ctx = self.ctx
        self._require_dense("mmr_search")
        check_k(k)
        check_mmr(k, fetch_k, lambda_mult)
        value = ctx.query_value(query)
        query_vector = _rows.vectors_to_matrix(
            [query], ctx.config.dimensions, half=False, what="query"
        )[0]
        plan = self.reader.plan(fetch_k, filter, None, None, False)
        statement, params = self.reader.statement(filter, True, True, plan.resort)
        args = (value, fetch_k, *ctx.domain_args(), *params)
        rows = await self.session.fetch_with_settings(plan.settings, statement, *args)
        self.reader.answered(value)
        if not rows:
            return []
        vectors: npt.NDArray[Any] = np.stack([np.asarray(row["embedding"]) for row in rows])
        chosen = mmr_select(query_vector, vectors, k, float(lambda_mult))
        return [ctx.row_to_result(rows[i], include_metadata, include_vectors) for i in chosen]

    async def centroid(
        self, ids: Sequence[Any] | None, filter: Mapping[str, Any] | None
    ) -> npt.NDArray[Any] | None:
        ctx = self.ctx
        self._require_dense("centroid")
        document: dict[str, Any] = dict(filter) if filter else {}
        if ids is not None:
            checked = ctx.ids(ids)
            if not checked:
                return None
            by_id = {"@id": {"$in": checked}}  # '@': the id column, not a metadata key
            document = {"$and": [document, by_id]} if document else by_id
        compiled = ctx.compile(document or None, ctx.sql.first_param())
        statement = self.statements.centroid(compiled.sql if document else None)
        value = await self.session.pool.fetchval(statement, *ctx.domain_args(), *compiled.params)
        return None if value is None else np.asarray(value)
