"""StoreContext: what one store knows without I/O, shared by all of its parts.

The configuration and its SQL, the tenant, how query values are checked and encoded, how rows
become results. Everything here is decided from the config at construction and never awaits
(httpx's ``BaseClient`` plays this part under its two clients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import asyncpg
import numpy as np

from .. import _rows
from .._statements import Statements
from ..config import StoreConfig
from ..errors import ValidationError
from ..filters import CompiledFilter, FilterColumn, FilterTarget, compile_filter
from ..indexes import MAX_EF_SEARCH, SPARSEVEC_HNSW_MAX_NONZERO
from ..results import SearchResult

__all__ = ["StoreContext", "check_k"]

_FILTER_KINDS: dict[str, Literal["text", "integer", "timestamptz", "uuid"]] = {
    "document_id": "text",
    "chunk_index": "integer",
    "content": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
_MAX_PROBES = 32768  # pgvector's bound on ivfflat.probes (and lists)


def check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValidationError(f"k must be a positive integer, got {k!r}")


def check_query_options(ef_search: int | None, probes: int | None) -> None:
    for name, value, high in (
        ("ef_search", ef_search, MAX_EF_SEARCH),
        ("probes", probes, _MAX_PROBES),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high
        ):
            raise ValidationError(f"{name} must be an integer from 1 to {high}, got {value!r}")


def _score_function(metric: str, dimensions: int) -> Callable[[float], float]:
    if metric in ("cosine", "jaccard"):
        return lambda distance: 1.0 - distance
    if metric == "inner_product":
        # pgvector's <#> is the negative inner product; the score is the product itself.
        return lambda distance: -distance
    if metric == "hamming":
        return lambda distance: 1.0 - distance / dimensions
    return lambda distance: 1.0 / (1.0 + distance)


class StoreContext:
    """The I/O-free half of a store (one per store; immutable once built)."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.sql = Statements(config)
        self.domain = config.domain_id or ""
        self.has_domain = self.sql.has("domain_id")
        # A store of an explicit domain shares its table with other tenants: every search is
        # filtered (by domain), so it gets the iterative-scan settings of filtered searches.
        # Not with partition_by: the tenant's partition (and its index) holds its rows only, so
        # its searches are plain ones (one round trip, no settings).
        self.tenant = (
            config.domain_id is not None and self.has_domain and config.partition_by is None
        )
        self.dense = config.vector_type in ("vector", "halfvec")
        self.half = config.vector_type == "halfvec"
        self.query_shape = (config.dimensions,)
        self.score = _score_function(config.metric, config.dimensions)
        self.normalize = config.normalize
        self.cosine = config.metric == "cosine"
        # normalize + cosine runs pgvector's <#> (the negative inner product, -cos for unit
        # vectors): results still report cosine, so 1 + d is the cosine distance.
        self.ip_for_cosine = config.search_metric != config.metric
        self.filter_target = self._filter_target()
        # Rows a quantized index yields per result before the exact re-rank.
        self.rows_per_result = config.candidates_per_result
        self.sparse_limit = (
            SPARSEVEC_HNSW_MAX_NONZERO
            if config.vector_type == "sparsevec" and config.index_type == "hnsw"
            else None
        )

    def _filter_target(self) -> FilterTarget:
        id_kind: Literal["text", "integer", "uuid"] = {
            "uuid": "uuid",
            "text": "text",
            "bigint": "integer",
        }[self.config.id_type]  # type: ignore[assignment]
        columns = {"id": FilterColumn(self.sql.col("id"), id_kind)}
        for logical, kind in _FILTER_KINDS.items():
            if self.sql.has(logical):
                columns[logical] = FilterColumn(self.sql.col(logical), kind)
        return FilterTarget(metadata_sql=self.sql.col("metadata"), columns=columns)

    # -- arguments -----------------------------------------------------------------------------

    def compile(self, filter: Mapping[str, Any] | None, first_param: int) -> CompiledFilter:
        return compile_filter(filter, self.filter_target, first_param=first_param)

    def domain_args(self) -> list[Any]:
        """The bind value of the statements' ``$1`` domain predicate, when the table has one."""
        return [self.domain] if self.has_domain else []

    def ids(self, ids: Sequence[Any]) -> list[Any]:
        return _rows.validate_ids(ids, self.config.id_type)

    def query_value(self, query: Any) -> Any:
        """Check one query vector and return its wire value."""
        if not self.dense:
            value = self.coerce_vector(query)
            size = getattr(value, "dim", None) or getattr(value, "length", None)
            if size != self.config.dimensions:
                raise ValidationError(
                    f"query has {size} dimensions, the store expects {self.config.dimensions}"
                )
            return value.to_binary()
        if (
            not self.half
            and not self.normalize
            and type(query) is np.ndarray
            and query.dtype == np.float32
            and query.shape == self.query_shape
            and (not self.cosine or query.any())
        ):
            # The codec's fast path validates (finite values) and encodes in one pass.
            return query
        matrix = _rows.vectors_to_matrix(
            [query], self.config.dimensions, half=self.half, what="query"
        )
        matrix = _rows.directed(self.config, matrix, what="query")
        return matrix[0] if not self.half else _rows.encode_matrix(matrix, half=True)[0]

    def query_values(self, queries: Any) -> list[Any]:
        if self.dense:
            matrix = _rows.vectors_to_matrix(queries, self.config.dimensions, half=self.half)
            matrix = _rows.directed(self.config, matrix, what="query")
            return list(_rows.encode_matrix(matrix, half=self.half))
        return [self.query_value(query) for query in queries]

    def coerce_vector(self, item: Any) -> Any:
        """A sparse or bit row as its pgvs type (dense rows are checked as a matrix instead)."""
        from ..types import Bit, SparseVector

        kind = Bit if self.config.vector_type == "bit" else SparseVector
        if isinstance(item, kind):
            return item
        if kind is SparseVector and isinstance(item, Mapping):
            return SparseVector(item, self.config.dimensions)
        return kind(item)

    def coerce_checked(self, item: Any) -> Any:
        """:meth:`coerce_vector` plus what the store's index accepts (every write path)."""
        value = self.coerce_vector(item)
        limit = self.sparse_limit
        if limit is not None and value.nnz > limit:
            # Re-raised by _rows with the row number (as "row N: vector has ...").
            raise ValueError(
                f"has {value.nnz} non-zero elements; an HNSW index on sparsevec takes at most "
                f"{limit} (keep the {limit} largest weights, or use index_type='none')"
            )
        return value

    def prepare(
        self,
        vectors: Any,
        ids: Sequence[Any] | None,
        metadata: Sequence[Any] | None,
        contents: Sequence[Any] | None,
        document_ids: Sequence[Any] | None,
        chunk_indexes: Sequence[Any] | None,
        generated_ids: Sequence[Any] | None,
    ) -> _rows.PreparedRows:
        return _rows.prepare_rows(
            self.config,
            vectors,
            ids=ids,
            metadata=metadata,
            contents=contents,
            document_ids=document_ids,
            chunk_indexes=chunk_indexes,
            generated_ids=generated_ids,
            encode_vector=self.coerce_checked,
        )

    # -- results -------------------------------------------------------------------------------

    def row_to_result(
        self, row: asyncpg.Record, with_metadata: bool, with_vector: bool
    ) -> SearchResult:
        distance = float(row["distance"])
        if self.ip_for_cosine:
            distance += 1.0
        if with_metadata:
            get = row.get
            return SearchResult(
                row["id"],
                self.score(distance),
                row["metadata"],
                distance,
                get("content"),
                get("document_id"),
                get("chunk_index"),
                row["embedding"] if with_vector else None,
            )
        return SearchResult(
            row["id"],
            self.score(distance),
            None,
            distance,
            vector=row["embedding"] if with_vector else None,
        )
