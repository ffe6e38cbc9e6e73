"""AsyncPGVectorStore: the async core, on an asyncpg pool with pgvs's binary codecs.

The pure parts live elsewhere: SQL in :mod:`pgvs._statements`, row checks in :mod:`pgvs._rows`,
filters in :mod:`pgvs.filters`. This module only sequences them with I/O.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import struct
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast

import asyncpg
import numpy as np

from . import _rows
from ._schema_check import schema_problems
from ._statements import Statements
from .codecs import register_vector
from .config import StoreConfig
from .errors import (
    ConfigurationError,
    ExtensionMissingError,
    SchemaMismatchError,
    StoreClosedError,
    ValidationError,
    redact_dsn,
    translate_error,
)
from .filters import CompiledFilter, FilterColumn, FilterTarget, compile_filter
from .results import Record, SearchResult

__all__ = ["AsyncPGVectorStore", "VectorStoreFactory"]

logger = logging.getLogger("pgvs")

P = ParamSpec("P")
R = TypeVar("R")
Self = TypeVar("Self", bound="AsyncPGVectorStore")

_EXTENSION_LOCK = "pgvs:extension:vector"
_VECTOR_HEADER = struct.Struct(">HH")
_FILTER_KINDS: dict[str, Literal["text", "integer", "timestamptz", "uuid"]] = {
    "document_id": "text",
    "chunk_index": "integer",
    "content": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}


def _translated(
    operation: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Route every exception of a public coroutine through :func:`translate_error`."""

    def decorate(
        method: Callable[P, Coroutine[Any, Any, R]],
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except Exception as exc:
                translated = translate_error(exc, operation=operation)
                if translated is exc:
                    raise
                raise translated from exc

        return wrapper

    return decorate


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo.

    The store never leaves session state behind (settings are ``SET LOCAL`` inside transactions,
    advisory locks are transaction-scoped), so the default ``RESET ALL``-style reset would only
    add a round trip to every checkout.
    """


def _score_function(metric: str, dimensions: int) -> Callable[[float], float]:
    if metric in ("cosine", "jaccard"):
        return lambda distance: 1.0 - distance
    if metric == "inner_product":
        # pgvector's <#> is the negative inner product; the score is the product itself.
        return lambda distance: -distance
    if metric == "hamming":
        return lambda distance: 1.0 - distance / dimensions
    return lambda distance: 1.0 / (1.0 + distance)


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
            self._config = config.replace(**options) if options else config
        else:
            self._config = StoreConfig.from_mapping(config, **options)
        self._sql = Statements(self._config)
        self._domain = self._config.domain_id or ""
        self._has_domain = self._sql.has("domain_id")
        self._score = _score_function(self._config.metric, self._config.dimensions)
        self._pool: asyncpg.Pool | None = None
        self._extension_schema: str | None = None
        self._filter_target = self._build_filter_target()
        self._search_sql: dict[tuple[bool, bool], str] = {}
        self._dense = self._config.vector_type in ("vector", "halfvec")

    def __repr__(self) -> str:
        c = self._config
        state = "open" if self._pool is not None else "closed"
        return (
            f"<AsyncPGVectorStore {c.schema}.{c.table_name} {c.vector_type}({c.dimensions}) "
            f"{c.metric} domain={c.domain_id!r} {state}>"
        )

    @property
    def config(self) -> StoreConfig:
        return self._config

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool (codecs registered), for queries of your own."""
        if self._pool is None:
            raise StoreClosedError(
                "the store is not initialized", hint="Call `await store.initialize()` first."
            )
        return self._pool

    def _build_filter_target(self) -> FilterTarget:
        columns: dict[str, FilterColumn] = {}
        id_kind: Literal["text", "integer", "uuid"] = {
            "uuid": "uuid",
            "text": "text",
            "bigint": "integer",
        }[self._config.id_type]  # type: ignore[assignment]
        columns["id"] = FilterColumn(self._sql.col("id"), id_kind)
        for logical, kind in _FILTER_KINDS.items():
            if self._sql.has(logical):
                columns[logical] = FilterColumn(self._sql.col(logical), kind)
        return FilterTarget(metadata_sql=self._sql.col("metadata"), columns=columns)

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

    async def _resolve_dsn(self) -> str:
        dsn = self._config.resolved_connection_string()
        if dsn:
            return dsn
        try:
            from .server import ensure_default_server
        except ImportError as exc:  # pragma: no cover - server.py has no hard imports
            raise ConfigurationError("no connection_string and no DATABASE_URL") from exc
        try:
            return await asyncio.to_thread(ensure_default_server)
        except RuntimeError as exc:
            raise ConfigurationError(
                "no connection_string or DATABASE_URL is set and the embedded server could not "
                f"start: {exc}",
                hint="Set DATABASE_URL, pass connection_string, or pip install 'pgvs[embedded]'.",
            ) from exc

    @_translated("initialize")
    async def initialize(self) -> None:
        """Open the pool; create the extension, schema and table (when configured) or verify them.

        All DDL runs in one transaction under advisory locks, so any number of processes may
        initialize the same new table at once.
        """
        if self._pool is not None:
            return
        dsn = await self._resolve_dsn()
        logger.debug("connecting to %s", redact_dsn(dsn))
        bootstrap = await asyncpg.connect(dsn, timeout=self._config.command_timeout or 60)
        try:
            self._extension_schema = await self._prepare_schema(bootstrap)
        finally:
            await bootstrap.close()
        self._pool = await asyncpg.create_pool(
            dsn,
            min_size=self._config.pool_min_size,
            max_size=self._config.pool_max_size,
            command_timeout=self._config.command_timeout,
            init=self._init_connection,
            reset=_keep_session,
        )

    async def _init_connection(self, connection: asyncpg.Connection) -> None:
        await register_vector(connection, schema=self._extension_schema, numpy=True)
        await connection.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=_encode_jsonb,
            decoder=json.loads,
            format="text",
        )

    async def _prepare_schema(self, connection: asyncpg.Connection) -> str:
        sql = self._sql
        async with connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _EXTENSION_LOCK
            )
            extension_schema = await connection.fetchval(
                "SELECT n.nspname FROM pg_extension e "
                "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
            )
            if extension_schema is None:
                extension_schema = await self._create_extension(connection)
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", sql.lock_key()
            )
            exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", sql.table_text)
            if not exists:
                if not self._config.auto_create_table:
                    raise SchemaMismatchError(
                        f"table {sql.table} does not exist",
                        hint="Create it, or set auto_create_table=True to let pgvs create it.",
                    )
                schema_known = await connection.fetchval(
                    "SELECT true FROM pg_namespace WHERE nspname = $1", self._config.schema
                )
                if not schema_known:
                    from ._sql import quote_ident

                    await connection.execute(
                        f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self._config.schema)}"
                    )
                for statement in sql.create_table():
                    await connection.execute(statement)
                logger.info("created table %s", sql.table)
            await self._verify_table(connection)
        return cast(str, extension_schema)

    async def _create_extension(self, connection: asyncpg.Connection) -> str:
        try:
            async with connection.transaction():  # a savepoint: a refusal must not hide the cause
                await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ExtensionMissingError(
                "the vector extension is not installed and this role may not create it",
                hint="Run `CREATE EXTENSION vector;` as a superuser or the database owner.",
            ) from exc
        except asyncpg.UndefinedFileError as exc:
            raise ExtensionMissingError(
                "pgvector is not installed on this PostgreSQL server",
                hint="Install pgvector on the server (https://github.com/pgvector/pgvector), "
                "then run `CREATE EXTENSION vector;`.",
            ) from exc
        schema = await connection.fetchval(
            "SELECT n.nspname FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
        return cast(str, schema)

    async def _verify_table(self, connection: asyncpg.Connection) -> None:
        rows = await connection.fetch(self._sql.COLUMNS_QUERY, self._sql.table_text)
        columns = {row["attname"]: (row["typname"], row["atttypmod"], row["shown"]) for row in rows}
        keys = [
            tuple(row["columns"])
            for row in await connection.fetch(self._sql.UNIQUE_KEYS_QUERY, self._sql.table_text)
        ]
        problems = schema_problems(self._config, columns, keys)
        if problems:
            raise SchemaMismatchError(
                f"table {self._sql.table} does not match the store's configuration:\n- "
                + "\n- ".join(problems),
                hint="Fix the table, or change dimensions / vector_type / id_type / columns.",
            )

    async def close(self) -> None:
        """Close the pool. Safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- helpers -------------------------------------------------------------------------------

    def _compile(self, filter: Mapping[str, Any] | None, first_param: int) -> CompiledFilter:
        return compile_filter(filter, self._filter_target, first_param=first_param)

    def _domain_args(self) -> list[Any]:
        return [self._domain] if self._has_domain else []

    def _ids(self, ids: Sequence[Any]) -> list[Any]:
        return _rows.validate_ids(ids, self._config.id_type)

    def _query_value(self, query: Any) -> Any:
        """Check one query vector and return its wire value."""
        if not self._dense:
            value = self._coerce_vector(query)
            size = getattr(value, "dim", None) or getattr(value, "length", None)
            if size != self._config.dimensions:
                raise ValidationError(
                    f"query has {size} dimensions, the store expects {self._config.dimensions}"
                )
            return value.to_binary()
        half = self._config.vector_type == "halfvec"
        if (
            not half
            and isinstance(query, np.ndarray)
            and query.ndim == 1
            and query.dtype == np.float32
            and query.shape[0] == self._config.dimensions
            and np.isfinite(query.sum(dtype=np.float64))
        ):
            return _VECTOR_HEADER.pack(query.shape[0], 0) + query.astype(">f4").tobytes()
        matrix = _rows.vectors_to_matrix([query], self._config.dimensions, half=half, what="query")
        return _rows.encode_matrix(matrix, half=half)[0]

    def _coerce_vector(self, item: Any) -> Any:
        from .types import Bit, SparseVector

        kind = Bit if self._config.vector_type == "bit" else SparseVector
        if isinstance(item, kind):
            return item
        if kind is SparseVector and isinstance(item, Mapping):
            return SparseVector(item, self._config.dimensions)
        return kind(item)

    def _prepare(
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
            self._config,
            vectors,
            ids=ids,
            metadata=metadata,
            contents=contents,
            document_ids=document_ids,
            chunk_indexes=chunk_indexes,
            generated_ids=generated_ids,
            encode_vector=lambda item: self._coerce_vector(item),
        )

    def _row_to_result(
        self, row: asyncpg.Record, with_metadata: bool, with_vector: bool
    ) -> SearchResult:
        distance = float(row["distance"])
        if with_metadata:
            get = row.get
            return SearchResult(
                row["id"],
                self._score(distance),
                row["metadata"],
                distance,
                get("content"),
                get("document_id"),
                get("chunk_index"),
                row["embedding"] if with_vector else None,
            )
        return SearchResult(
            row["id"],
            self._score(distance),
            None,
            distance,
            vector=row["embedding"] if with_vector else None,
        )

    # -- writes --------------------------------------------------------------------------------

    @_translated("add_vectors")
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
        pool = self.pool
        generated: list[Any] | None = None
        if ids is None:
            count = len(vectors)
            if self._config.id_type == "bigint":
                rows = await pool.fetch(
                    self._sql.next_ids(), self._sql.table_text, self._config.column("id"), count
                )
                generated = [row[0] for row in rows]
            else:
                import uuid

                generated = [str(uuid.uuid4()) for _ in range(count)]
        prepared = self._prepare(
            vectors, ids, metadata, contents, document_ids, chunk_indexes, generated
        )
        if not prepared.ids:
            return []
        arrays = [prepared.columns[name] for name in self._sql.payload_names]
        await pool.execute(self._sql.upsert(), *self._domain_args(), *arrays)
        return prepared.ids

    @_translated("update_metadata")
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
        checked = self._ids(ids)
        if len(metadatas) != len(checked):
            raise ValidationError(
                f"metadatas has {len(metadatas)} entries but there are {len(checked)} ids"
            )
        documents = [_rows.encode_json(meta, row) for row, meta in enumerate(metadatas)]
        last: dict[Any, str] = dict(zip(checked, documents, strict=True))
        status = await self.pool.execute(
            self._sql.update_metadata(),
            *self._domain_args(),
            list(last),
            list(last.values()),
            merge,
        )
        return int(status.split()[-1])

    @_translated("delete_vectors")
    async def delete_vectors(self, ids: Sequence[Any]) -> int:
        """Delete rows by id; returns how many were deleted."""
        checked = self._ids(ids)
        status = await self.pool.execute(self._sql.delete_ids(), *self._domain_args(), checked)
        return int(status.split()[-1])

    @_translated("delete")
    async def delete(self, filter: Mapping[str, Any]) -> int:
        """Delete the rows matching a (non-empty) filter; returns how many. See ``clear()``."""
        if not filter:
            raise ValidationError(
                "delete() needs a non-empty filter", hint="Use clear() to delete every row."
            )
        compiled = self._compile(filter, self._sql.first_param())
        status = await self.pool.execute(
            self._sql.delete_where(compiled.sql), *self._domain_args(), *compiled.params
        )
        return int(status.split()[-1])

    @_translated("clear")
    async def clear(self) -> int:
        """Delete every row of this store's domain; returns how many."""
        status = await self.pool.execute(self._sql.delete_where("TRUE"), *self._domain_args())
        return int(status.split()[-1])

    # -- reads ---------------------------------------------------------------------------------

    @_translated("count")
    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many rows (matching ``filter``) this store's domain holds."""
        compiled = self._compile(filter, self._sql.first_param())
        value = await self.pool.fetchval(
            self._sql.count_where(compiled.sql), *self._domain_args(), *compiled.params
        )
        return int(value)

    @_translated("get_vectors")
    async def get_vectors(self, ids: Sequence[Any], include_metadata: bool = True) -> list[Record]:
        """Rows by id, aligned with ``ids``; a missing id gives a Record with ``found == False``."""
        checked = self._ids(ids)
        if not checked:
            return []
        rows = await self.pool.fetch(
            self._sql.get(include_metadata), *self._domain_args(), list(dict.fromkeys(checked))
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

    @_translated("search")
    async def search(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
    ) -> list[SearchResult]:
        """The ``k`` nearest rows to ``query``, nearest first, as SearchResults.

        One round trip: no transaction, the distance computed once, vectors only when asked.
        ``min_score`` drops hits scoring below it (the rest of the top k).
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValidationError(f"k must be a positive integer, got {k!r}")
        value = self._query_value(query)
        if filter:
            compiled = self._compile(filter, self._sql.search_params_start())
            sql = self._sql.search(
                condition=compiled.sql,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
            )
            params: Sequence[Any] = compiled.params
        else:
            key = (include_metadata, include_vectors)
            sql = self._search_sql.get(key) or self._search_sql.setdefault(
                key,
                self._sql.search(
                    condition=None,
                    include_metadata=include_metadata,
                    include_vectors=include_vectors,
                ),
            )
            params = ()
        if self._has_domain:
            rows = await self.pool.fetch(sql, value, k, self._domain, *params)
        else:
            rows = await self.pool.fetch(sql, value, k, *params)
        results = [self._row_to_result(row, include_metadata, include_vectors) for row in rows]
        if min_score is not None:
            results = [hit for hit in results if hit.score >= min_score]
        return results

    @_translated("search_batch")
    async def search_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
    ) -> list[list[SearchResult]]:
        """``search`` for many queries in one statement; one result list per query, in order."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValidationError(f"k must be a positive integer, got {k!r}")
        if self._dense:
            half = self._config.vector_type == "halfvec"
            matrix = _rows.vectors_to_matrix(queries, self._config.dimensions, half=half)
            values: list[Any] = _rows.encode_matrix(matrix, half=half)
        else:
            values = [self._query_value(query) for query in queries]
        if not values:
            return []
        compiled = self._compile(filter, self._sql.search_params_start())
        sql = self._sql.search_batch(
            condition=compiled.sql if filter else None,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
        )
        rows = await self.pool.fetch(
            sql, values, k, *self._domain_args(), *(compiled.params if filter else ())
        )
        grouped: list[list[SearchResult]] = [[] for _ in values]
        for row in rows:
            hit = self._row_to_result(row, include_metadata, include_vectors)
            if min_score is None or hit.score >= min_score:
                grouped[row["ord"] - 1].append(hit)
        return grouped


def _encode_jsonb(value: Any) -> str:
    # Values pgvs sends are JSON text already (validated by _rows / compiled by filters);
    # other objects (from users' own queries on store.pool) are serialised strictly.
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=False)


class VectorStoreFactory:
    """``VectorStoreFactory().create(backend="pgvector", dimensions=768, ...)``."""

    backends = ("pgvector",)

    def create(self, backend: str = "pgvector", **options: Any) -> AsyncPGVectorStore:
        if backend not in self.backends:
            raise ConfigurationError(
                f"unknown backend {backend!r}; available: {', '.join(self.backends)}"
            )
        return AsyncPGVectorStore(options)
