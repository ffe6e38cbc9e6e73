"""AsyncPGVectorStore: the async core, on an asyncpg pool with pgvs's binary codecs.

The pure parts live elsewhere: SQL in :mod:`pgvs._statements`, row checks in :mod:`pgvs._rows`,
filters in :mod:`pgvs.filters`. This module only sequences them with I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import struct
from collections.abc import Callable, Coroutine, Mapping, Sequence, Sized
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

import asyncpg
import numpy as np

from . import _rows
from . import indexes as _ix
from ._schema_check import schema_problems
from ._statements import Statements
from .codecs import register_vector
from .config import StoreConfig
from .errors import (
    ConfigurationError,
    DatabaseError,
    ExtensionMissingError,
    SchemaMismatchError,
    StoreClosedError,
    ValidationError,
    redact_dsn,
    translate_error,
)
from .filters import CompiledFilter, FilterColumn, FilterTarget, compile_filter
from .indexes import IndexProgress, IndexStatus, SearchExplanation
from .results import Record, SearchResult

if TYPE_CHECKING:
    from .ingest import IngestProgress, IngestResult

__all__ = [
    "AsyncPGVectorStore",
    "IndexProgress",
    "IndexStatus",
    "ProgressCallback",
    "SearchExplanation",
    "VectorStoreFactory",
]

#: Called with samples of a running index build (phase and percent).
ProgressCallback = Callable[[IndexProgress], None]

logger = logging.getLogger("pgvs")

P = ParamSpec("P")
R = TypeVar("R")
Self = TypeVar("Self", bound="AsyncPGVectorStore")

_EXTENSION_LOCK = "pgvs:extension:vector"
# Distinct (k, columns) plain-search statements kept; asyncpg's per-connection statement cache
# (100 by default) should hold them all.
_PLAIN_SEARCH_STATEMENTS = 64
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

    The store never leaves session state behind on a pooled connection (per-call settings are
    ``SET LOCAL`` inside transactions, advisory locks taken on the pool are transaction-scoped;
    index builds hold theirs on a dedicated connection), so the default ``RESET ALL``-style reset
    would only add a round trip to every checkout. It would also undo the store-level query
    settings, which are startup parameters of these connections (see indexes.session_settings).
    """


# Seconds between samples of pg_stat_progress_create_index while a build reports progress.
_PROGRESS_INTERVAL = 0.5
# Seconds between attempts to take the index-build lock when waiting for another builder.
_LOCK_POLL = 0.2
# Seconds an automatic build waits after a failure before writes may trigger it again.
_AUTO_RETRY_DELAY = 60.0


class _ProgressBar:
    """``progress=True``: a tqdm bar (tqdm is optional: ``pip install 'pgvs[progress]'``)."""

    def __init__(self, description: str) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            raise ConfigurationError(
                "progress=True needs tqdm", hint="pip install 'pgvs[progress]', or pass a callback."
            ) from exc
        self._bar = tqdm(total=100.0, desc=description, unit="%", leave=True)

    def __call__(self, sample: IndexProgress) -> None:
        self._bar.set_postfix_str(sample.phase, refresh=False)
        if sample.percent is not None:
            self._bar.n = round(sample.percent, 1)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValidationError(f"k must be a positive integer, got {k!r}")


def _ingest_threshold() -> int:
    from .ingest import INGEST_THRESHOLD

    return INGEST_THRESHOLD


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
        self._search_sql: dict[tuple[int, bool, bool], str] = {}
        self._dense = self._config.vector_type in ("vector", "halfvec")
        self._query_shape = (self._config.dimensions,)
        self._dsn: str | None = None
        # Query settings: the store-level ones are startup parameters of the pool's connections;
        # a search leaves the one-round-trip path only when it needs more (see _needs_settings).
        # (Computed at initialize(), from the config and the index found; see _refresh_session.)
        self._session_settings: dict[str, str] = {}
        self._base_ef = _ix.DEFAULT_EF_SEARCH
        self._index_lists: int | None = None  # lists of the store's IVFFlat index, if any
        self._rows_per_result = (
            self._sql.rerank_factor if self._config.index_quantization != "none" else 1
        )
        # A store of an explicit domain shares its table with other tenants: every search is
        # filtered (by domain), so it gets the iterative-scan settings of filtered searches.
        self._tenant = self._config.domain_id is not None and self._has_domain
        # Whether pgvs manages a vector index here (configured, or one of its indexes exists):
        # ANN-only settings and pgvs's query defaults apply then.
        self._ann = self._config.index_type != "none"
        self._iterative = True  # the server's pgvector has iterative scans (set at initialize)
        self._sparse_limit = (
            _ix.SPARSEVEC_HNSW_MAX_NONZERO
            if self._config.vector_type == "sparsevec" and self._config.index_type == "hnsw"
            else None
        )
        # Automatic index creation (one background task at a time per store).
        self._index_task: asyncio.Task[None] | None = None
        self._index_wanted = False
        self._index_recheck = False
        self._index_retry_at = 0.0
        self._index_error: BaseException | None = None

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
            self._extension_schema, index_due = await self._prepare_schema(bootstrap)
        finally:
            await bootstrap.close()
        self._session_settings = self._desired_session()
        self._base_ef = int(self._session_settings.get("hnsw.ef_search", _ix.DEFAULT_EF_SEARCH))
        self._pool = await asyncpg.create_pool(
            dsn,
            min_size=self._config.pool_min_size,
            max_size=self._config.pool_max_size,
            command_timeout=self._config.command_timeout,
            init=self._init_connection,
            reset=_keep_session,
            server_settings=self._session_settings or None,
        )
        self._dsn = dsn
        if index_due:
            self._index_wanted = True
            self._kick_index()

    async def _init_connection(self, connection: asyncpg.Connection) -> None:
        await register_vector(connection, schema=self._extension_schema, numpy=True)
        await connection.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=_encode_jsonb,
            decoder=json.loads,
            format="text",
        )

    async def _prepare_schema(self, connection: asyncpg.Connection) -> tuple[str, bool]:
        """Extension, schema, table (and an HNSW index on an empty table), in one transaction.

        Returns the extension's schema and whether an automatic index build is due (it then
        runs in the background, never in initialize()).
        """
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
            version = await connection.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
            # Iterative index scans (and their settings) arrived in pgvector 0.8.0; an older
            # server would reject the unknown hnsw.* settings.
            self._iterative = _ix.version_tuple(str(version)) >= (0, 8, 0)
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
            index_due = await self._initial_index(connection)
        return cast(str, extension_schema), index_due

    async def _initial_index(self, connection: asyncpg.Connection) -> bool:
        """At start-up, inside the schema transaction: is the configured index there and valid?

        An HNSW index on an empty table is built right here (instant). Everything else (a
        populated table, IVFFlat, an INVALID index to repair) is left to the background task:
        returns True when that is due.
        """
        c = self._config
        statuses = await self._read_statuses(connection)
        self._note_statuses(statuses)
        if c.index_type == "none" or not c.auto_create_index:
            return False
        status = statuses[0]  # the configured type's index
        if status.usable:
            return False
        if status.exists:
            logger.warning(
                "vector index %s on %s is INVALID (an interrupted CREATE INDEX CONCURRENTLY?) "
                "and is never used by queries; pgvs will rebuild it in the background",
                status.name,
                self._sql.table,
            )
            return True
        if c.index_type != "hnsw":
            return True
        # The build lock, transaction-scoped here: no pgvs builder elsewhere may be creating the
        # same index (two concurrent CREATE INDEX IF NOT EXISTS of one name can fail).
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", self._sql.index_lock_key()
        )
        if not locked or await connection.fetchval(self._sql.has_rows()):
            return True
        spec = self._index_spec("hnsw", None, rows=0)
        for name, value in self._build_settings(None, None):
            await connection.execute("SELECT set_config($1, $2, true)", name, value)
        await connection.execute(spec.create_sql(self._sql.table, concurrently=False))
        self._ann = True
        logger.info("created %s index %s on %s", spec.index_type, spec.name, self._sql.table)
        return False

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
        """Close the pool. Safe to call twice.

        A background index build still running is cancelled: a concurrent build left half done
        is an INVALID index, which the next start-up (or create_index) repairs.
        """
        task, self._index_task = self._index_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
            and type(query) is np.ndarray
            and query.dtype == np.float32
            and query.shape == self._query_shape
        ):
            # The codec's fast path validates (finite values) and encodes in one pass.
            return query
        matrix = _rows.vectors_to_matrix([query], self._config.dimensions, half=half, what="query")
        return matrix[0] if not half else _rows.encode_matrix(matrix, half=True)[0]

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
            encode_vector=self._coerce_checked,
        )

    def _coerce_checked(self, item: Any) -> Any:
        value = self._coerce_vector(item)
        limit = self._sparse_limit
        if limit is not None and value.nnz > limit:
            # Re-raised by _rows with the row number (as "row N: vector has ...").
            raise ValueError(
                f"has {value.nnz} non-zero elements; an HNSW index on sparsevec takes at most "
                f"{limit} (keep the {limit} largest weights, or use index_type='none')"
            )
        return value

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
        if isinstance(vectors, Sized) and len(vectors) >= _ingest_threshold():
            # Large calls take the binary-COPY path: same validation, same contract (one
            # transaction, ids in input order), measured faster from 500 rows up.
            from .ingest import upsert_all

            written = await upsert_all(
                self, vectors, ids, metadata, contents, document_ids, chunk_indexes
            )
            self._after_write()
            return written
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
        self._after_write()
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

    @_translated("ingest")
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
        progress: bool | Callable[[IngestProgress], Any] | None = None,
        atomic: bool = False,
        connections: int = 2,
    ) -> IngestResult:
        """Bulk upsert by binary COPY in atomic batches; see :func:`pgvs.ingest.ingest`."""
        from .ingest import ingest

        result = await ingest(
            self,
            data,
            ids=ids,
            metadata=metadata,
            contents=contents,
            document_ids=document_ids,
            chunk_indexes=chunk_indexes,
            batch_size=batch_size,
            progress=progress,
            atomic=atomic,
            connections=connections,
        )
        self._after_write()
        return result

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

    def _check_query_options(self, ef_search: int | None, probes: int | None) -> None:
        for name, value, high in (
            ("ef_search", ef_search, _ix.MAX_EF_SEARCH),
            ("probes", probes, 32768),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high
            ):
                raise ValidationError(f"{name} must be an integer from 1 to {high}, got {value!r}")

    def _plan_query(
        self,
        k: int,
        filter: Mapping[str, Any] | None,
        ef_search: int | None,
        probes: int | None,
        exact: bool,
    ) -> _ix.QueryPlan:
        self._check_query_options(ef_search, probes)
        return _ix.search_settings(
            self._config,
            k=k,
            filtered=bool(filter) or self._tenant,
            ann=self._ann,
            session=self._session_settings,
            iterative=self._iterative,
            ef_search=ef_search,
            probes=probes,
            exact=exact,
        )

    async def _fetch_with_settings(
        self, settings: Sequence[tuple[str, str]], sql: str, *args: Any
    ) -> list[asyncpg.Record]:
        """``sql`` in a transaction that first applies ``settings`` with SET LOCAL (without
        settings: a plain pool fetch, one round trip).

        Three round trips (BEGIN + SET LOCALs as one message, the query, COMMIT). SET LOCAL
        ends with the transaction, so nothing reaches the next user of the pooled connection;
        a connection whose transaction could not be ended is terminated, never reused.
        """
        if not settings:
            return await self.pool.fetch(sql, *args)
        async with self.pool.acquire() as connection:
            try:
                await connection.execute(_ix.set_local_sql(settings))
                rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
            except asyncio.CancelledError:
                connection.terminate()
                raise
            except BaseException:
                try:
                    await connection.execute("ROLLBACK")
                except BaseException:
                    connection.terminate()
                raise
            await connection.execute("COMMIT")
            return rows

    def _search_statement(
        self,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        include_vectors: bool,
        resort: bool,
    ) -> tuple[str, Sequence[Any]]:
        if filter:
            compiled = self._compile(filter, self._sql.search_params_start())
            sql = self._sql.search(
                condition=compiled.sql,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
                resort=resort,
            )
            return sql, compiled.params
        sql = self._sql.search(
            condition=None,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
            resort=resort,
        )
        return sql, ()

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
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[SearchResult]:
        """The ``k`` nearest rows to ``query``, nearest first, as SearchResults.

        Without options: one round trip, no transaction, the distance computed once, vectors only
        when asked. ``min_score`` drops hits scoring below it (the rest of the top k).
        ``ef_search`` (HNSW) / ``probes`` (IVFFlat) override the store's values for this call;
        ``exact=True`` bypasses the vector index (exact results). A filtered search uses
        pgvector's iterative index scans, so it returns ``k`` rows when ``k`` rows match.
        """
        _check_k(k)
        value = self._query_value(query)
        if (
            filter
            or exact
            or ef_search is not None
            or probes is not None
            or self._tenant
            or (self._ann and k * self._rows_per_result > self._base_ef)
        ):
            plan = self._plan_query(k, filter, ef_search, probes, exact)
            sql, params = self._search_statement(
                filter, include_metadata, include_vectors, plan.resort
            )
            args = (value, k, *self._domain_args(), *params)
            rows = await self._fetch_with_settings(plan.settings, sql, *args)
        else:
            # The hot path: a precomputed statement per (k, columns), one pool.fetch.
            key = (k, include_metadata, include_vectors)
            cached = self._search_sql.get(key)
            if cached is not None:
                sql = cached
            else:
                sql = self._sql.search_plain(
                    k, include_metadata=include_metadata, include_vectors=include_vectors
                )
                if len(self._search_sql) < _PLAIN_SEARCH_STATEMENTS:
                    self._search_sql[key] = sql
            if self._has_domain:
                rows = await self.pool.fetch(sql, value, self._domain)
            else:
                rows = await self.pool.fetch(sql, value)
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
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[list[SearchResult]]:
        """``search`` for many queries in one statement; one result list per query, in order."""
        _check_k(k)
        if self._dense:
            half = self._config.vector_type == "halfvec"
            matrix = _rows.vectors_to_matrix(queries, self._config.dimensions, half=half)
            values: list[Any] = _rows.encode_matrix(matrix, half=half)
        else:
            values = [self._query_value(query) for query in queries]
        if not values:
            return []
        plan = self._plan_query(k, filter, ef_search, probes, exact)
        compiled = self._compile(filter, self._sql.search_params_start())
        sql = self._sql.search_batch(
            condition=compiled.sql if filter else None,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
        )
        args = (values, k, *self._domain_args(), *(compiled.params if filter else ()))
        rows = await self._fetch_with_settings(plan.settings, sql, *args)
        grouped: list[list[SearchResult]] = [[] for _ in values]
        for row in rows:
            hit = self._row_to_result(row, include_metadata, include_vectors)
            if min_score is None or hit.score >= min_score:
                grouped[row["ord"] - 1].append(hit)
        return grouped

    @_translated("explain_search")
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
        _check_k(k)
        value = self._query_value(query)
        plan = self._plan_query(k, filter, ef_search, probes, exact)
        sql, params = self._search_statement(filter, True, False, plan.resort)
        args = (value, k, *self._domain_args(), *params)
        options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
        async with self.pool.acquire() as connection:
            try:
                await connection.execute(_ix.set_local_sql(plan.settings))
                document = await connection.fetchval(f"EXPLAIN ({options}) {sql}", *args)
                names = [
                    row["name"]
                    for row in await connection.fetch(
                        self._sql.VECTOR_INDEXES_QUERY, self._sql.table_text
                    )
                ]
            finally:
                # Read-only: rolling back ends the SET LOCALs (and EXPLAIN ANALYZE's work).
                try:
                    await connection.execute("ROLLBACK")
                except BaseException:
                    connection.terminate()
                    raise
        tree = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        used = _ix.uses_index(tree, names)
        return SearchExplanation(
            sql=sql,
            settings=plan.settings,
            plan=tree,
            uses_vector_index=used is not None,
            index_name=used,
        )

    # -- vector indexes ------------------------------------------------------------------------

    def _index_spec(
        self, index_type: str, params: Mapping[str, Any] | None, *, rows: int
    ) -> _ix.IndexSpec:
        return _ix.index_spec(
            self._config,
            name=self._sql.index_name(index_type),
            column_sql=self._sql.col("embedding"),
            index_type=index_type,
            params=params,
            rows=rows,
        )

    def _build_settings(
        self, maintenance_work_mem: str | int | None, max_parallel_maintenance_workers: int | None
    ) -> list[tuple[str, str]]:
        """Per-build settings: the call's, else the store's; validated as config keys."""
        checked = self._config
        if maintenance_work_mem is not None or max_parallel_maintenance_workers is not None:
            overrides: dict[str, Any] = {}
            if maintenance_work_mem is not None:
                overrides["maintenance_work_mem"] = maintenance_work_mem
            if max_parallel_maintenance_workers is not None:
                overrides["max_parallel_maintenance_workers"] = max_parallel_maintenance_workers
            checked = checked.replace(**overrides)
        return _ix.build_settings(
            checked.maintenance_work_mem, checked.max_parallel_maintenance_workers
        )

    async def _read_statuses(self, connection: Any) -> list[IndexStatus]:
        """The status of every index name this store may own, the configured type's first."""
        names = self._sql.index_names()
        rows = await connection.fetch(self._sql.INDEX_STATUS_QUERY, self._sql.table_text, names)
        by_name = {row["name"]: row for row in rows}
        statuses = []
        for name in names:
            row = by_name.get(name)
            if row is None:
                statuses.append(IndexStatus(name=name, exists=False))
                continue
            statuses.append(
                IndexStatus(
                    name=name,
                    exists=True,
                    valid=bool(row["valid"]),
                    index_type=row["method"],
                    params=_ix.parse_reloptions(row["reloptions"]),
                    size_bytes=int(row["size_bytes"]),
                    opclass=row["opclass"],
                    definition=row["definition"],
                    building=bool(row["building"]),
                )
            )
        return statuses

    def _note_statuses(self, statuses: Sequence[IndexStatus]) -> None:
        """Remember what the query defaults depend on: an index exists, IVFFlat's lists."""
        if any(status.exists for status in statuses):
            self._ann = True
        self._index_lists = next(
            (
                int(status.params.get("lists", 100))  # pgvector's default lists
                for status in statuses
                if status.exists and status.index_type == "ivfflat"
            ),
            None,
        )

    def _desired_session(self) -> dict[str, str]:
        return _ix.session_settings(self._config, managed=self._ann, lists=self._index_lists)

    async def _refresh_session(self, connection: Any) -> None:
        """Re-read the store's indexes; when the query defaults change, new pool connections get
        them (as startup parameters) and the open ones are replaced as they come back."""
        self._note_statuses(await self._read_statuses(connection))
        settings = self._desired_session()
        pool = self._pool
        if settings == self._session_settings or pool is None:
            return
        self._session_settings = settings
        self._base_ef = int(settings.get("hnsw.ef_search", _ix.DEFAULT_EF_SEARCH))
        pool.set_connect_args(
            self._dsn,
            command_timeout=self._config.command_timeout,
            server_settings=settings or None,
        )
        await pool.expire_connections()

    async def _status_named(self, connection: Any, name: str) -> IndexStatus:
        for status in await self._read_statuses(connection):
            if status.name == name:
                return status
        raise AssertionError(name)  # pragma: no cover - index_names() lists every name

    async def _connect_dedicated(self) -> asyncpg.Connection:
        """A connection outside the pool, for work that outlives a statement timeout or holds a
        session-level lock (index builds). No command timeout: builds may take hours."""
        self.pool  # noqa: B018 - raises StoreClosedError when not initialized
        assert self._dsn is not None
        connection = await asyncpg.connect(self._dsn, timeout=self._config.command_timeout or 60)
        # Builds speak through notices (pgvector's "hnsw graph no longer fits into
        # maintenance_work_mem after N tuples" is advice worth seeing): pass them to the log.
        connection.add_log_listener(_log_server_message)
        return connection

    async def _lock_builds(self, connection: asyncpg.Connection, *, wait: bool) -> bool:
        """Take the table's index-build lock (session level) on ``connection``.

        Waiting polls ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a
        session blocked inside a statement holds a snapshot, which a concurrent
        ``CREATE INDEX CONCURRENTLY`` (the lock holder's) waits for: a deadlock.
        """
        key = self._sql.index_lock_key()
        while True:
            if await connection.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key
            ):
                return True
            if not wait:
                return False
            await asyncio.sleep(_LOCK_POLL)

    async def _execute_build(
        self,
        connection: asyncpg.Connection,
        statement: str,
        *,
        concurrently: bool,
        settings: Sequence[tuple[str, str]],
        progress: ProgressCallback | bool | None,
        description: str,
    ) -> None:
        """Run one CREATE INDEX / REINDEX with its settings, reporting progress if asked.

        Without CONCURRENTLY the statement runs in a transaction and the settings are
        ``SET LOCAL``. CONCURRENTLY cannot run in a transaction block, so the settings are
        session-level on this dedicated connection and reset right after.
        """
        bar = _ProgressBar(description) if progress is True else None
        callback: ProgressCallback | None = bar if bar is not None else progress or None  # type: ignore[assignment]

        async def build() -> None:
            if concurrently:
                for name, value in settings:
                    await connection.execute("SELECT set_config($1, $2, false)", name, value)
                try:
                    await connection.execute(statement)
                finally:
                    for name, _ in settings:
                        await connection.execute(f"RESET {name}")  # a fixed setting name
                return
            async with connection.transaction():
                for name, value in settings:
                    await connection.execute("SELECT set_config($1, $2, true)", name, value)
                await connection.execute(statement)

        try:
            if callback is None:
                await build()
            else:
                await self._watch_build(connection.get_server_pid(), build(), callback)
        finally:
            if bar is not None:
                bar.close()

    async def _watch_build(
        self, pid: int, build: Coroutine[Any, Any, None], callback: ProgressCallback
    ) -> None:
        """Run ``build`` while sampling its progress from another connection (the pool)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.ensure_future(build)
        last: IndexProgress | None = None
        report: ProgressCallback | None = callback

        def emit(sample: IndexProgress) -> None:
            nonlocal report
            if report is None:
                return
            try:
                report(sample)
            except Exception:  # a broken callback must not abort (or leak into) the build
                logger.exception("index progress callback failed; no more progress reports")
                report = None

        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_PROGRESS_INTERVAL)
                if task.done():
                    break
                row = await self.pool.fetchrow(self._sql.PROGRESS_QUERY, pid)
                sample = _ix.progress_from_row(row, loop.time() - started)
                if sample is not None and sample.percent is not None:
                    # pgvector reports heap blocks before it knows the tuple total, so the
                    # raw ratio can fall when it switches counters: never report going back.
                    floor = last.percent if last is not None and last.percent is not None else 0.0
                    sample = dataclasses.replace(sample, percent=max(sample.percent, floor))
                if sample is not None and sample != last:
                    emit(sample)
                    last = sample
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        emit(IndexProgress("done", 100.0, elapsed=loop.time() - started))

    async def _build(
        self,
        index_type: str,
        params: Mapping[str, Any] | None,
        *,
        concurrently: bool,
        wait: bool,
        settings: Sequence[tuple[str, str]],
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus | None:
        """Make the index of ``index_type`` exist and be valid; the catalog decides, under the lock.

        ``wait=False`` (automatic builds) gives up when another builder holds the lock (None).
        An existing valid index is kept (with explicit, different ``params`` that is an error);
        an INVALID one is reported, dropped and rebuilt, never kept.
        """
        self._index_spec(index_type, params, rows=0)  # refuse impossible requests before I/O
        name = self._sql.index_name(index_type)
        connection = await self._connect_dedicated()
        try:
            if not await self._lock_builds(connection, wait=wait):
                return None
            status = await self._status_named(connection, name)
            if status.usable:
                self._ann = True
                await self._refresh_session(connection)
                wanted = _ix.check_index_params(index_type, params or {})
                different = {k: v for k, v in wanted.items() if status.params.get(k) != v}
                if params is not None and different:
                    raise ConfigurationError(
                        f"index {name} exists with {dict(status.params)}, not {different}",
                        hint="drop_index() first to rebuild it with other parameters.",
                    )
                return status
            if status.exists:
                if status.building:
                    # Not a pgvs builder (they hold the lock we hold): leave its build alone.
                    raise DatabaseError(
                        f"index {name} is being built by another session outside pgvs",
                        hint="Wait for that build to finish, or cancel it, then retry.",
                    )
                logger.warning(
                    "vector index %s on %s is INVALID (an interrupted concurrent build?); "
                    "dropping and rebuilding it",
                    name,
                    self._sql.table,
                )
                await connection.execute(self._sql.drop_index(name, concurrently=concurrently))
            rows = 0
            if index_type == "ivfflat" and "lists" not in (
                params if params is not None else self._config.index_params
            ):
                rows = int(await connection.fetchval(self._sql.count_all()))
            spec = self._index_spec(index_type, params, rows=rows)
            logger.info("building %s index %s on %s", index_type, name, self._sql.table)
            await self._execute_build(
                connection,
                spec.create_sql(self._sql.table, concurrently=concurrently),
                concurrently=concurrently,
                settings=settings,
                progress=progress,
                description=f"{index_type} index",
            )
            status = await self._status_named(connection, name)
            if not status.usable:
                raise DatabaseError(
                    f"index {name} was built but is not valid",
                    hint="Check the server log; reindex() or drop_index() and retry.",
                )
            self._ann = True
            await self._refresh_session(connection)
            return status
        except BaseException:
            await self._abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

    async def _abandon(self, connection: asyncpg.Connection) -> None:
        """End a dedicated connection whose build was interrupted (cancelled, or an error).

        Closing the socket alone does not stop the server: a backend busy building an index
        only notices a vanished client when it next writes to it, after the build. So the build
        is cancelled explicitly, from the pool, and the session ends (its lock with it). A
        concurrent build interrupted so leaves an INVALID index, which the next build repairs.
        """
        pid = connection.get_server_pid()
        connection.terminate()
        pool = self._pool
        if pool is None:
            return
        cancel = asyncio.ensure_future(pool.execute("SELECT pg_cancel_backend($1)", pid))
        try:
            await asyncio.shield(cancel)  # a second cancellation must not stop this one
        except Exception as exc:  # the build's own error matters more than this one
            logger.debug("could not cancel the index build of backend %s: %s", pid, exc)

    def _after_write(self) -> None:
        """Every write path calls this once its rows are committed: while the automatic index is
        still due, it starts a cheap check in the background. It never waits for a build."""
        if self._index_wanted:
            self._kick_index()

    def _kick_index(self) -> None:
        """Start (or ask for another pass of) the automatic build; never waits for it."""
        task = self._index_task
        if task is not None and not task.done():
            self._index_recheck = True
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._index_retry_at:
            return
        self._index_task = loop.create_task(
            self._auto_index(), name=f"pgvs-index-{self._config.table_name}"
        )

    async def _auto_index(self) -> None:
        """The background task: check, and build when due, until the index is valid or a check
        finds nothing to do (another pass runs if writes came in meanwhile)."""
        try:
            while True:
                self._index_recheck = False
                if await self._auto_index_once():
                    self._index_wanted = False
                    self._index_error = None
                    return
                if not self._index_recheck:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate_error(exc, operation="create_index")
            self._index_error = error
            self._index_retry_at = asyncio.get_running_loop().time() + _AUTO_RETRY_DELAY
            logger.warning("automatic index build on %s failed: %s", self._sql.table, error)

    async def _auto_index_once(self) -> bool:
        c = self._config
        status = await self._status_named(self.pool, self._sql.index_name(c.index_type))
        if status.usable:
            self._ann = True
            await self._refresh_session(self.pool)  # built by another process, perhaps
            return True
        if status.building:
            return False  # someone is on it; a later write checks again
        if c.index_type == "ivfflat" and not status.exists:
            rows = await self.pool.fetchval(self._sql.rows_at_least(), c.min_rows_for_index)
            if rows < c.min_rows_for_index:
                return False
        built = await self._build(
            c.index_type,
            None,
            concurrently=True,  # the table is live: never block its writers
            wait=False,
            settings=self._build_settings(None, None),
        )
        return built is not None and built.usable

    @_translated("create_index")
    async def create_index(
        self,
        index_type: str | None = None,
        params: Mapping[str, int] | None = None,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """Build the store's vector index (``"hnsw"`` or ``"ivfflat"``; default: the config's).

        Safe to call from many processes at once: builders take turns under an advisory lock
        and the catalog decides, so exactly one index is built. An existing valid index is kept;
        an INVALID one is dropped and rebuilt. ``params``: ``m``/``ef_construction`` (HNSW) or
        ``lists`` (IVFFlat; default rows/1000, sqrt(rows) past a million rows).
        ``concurrently=True`` builds without blocking writes (slower). ``progress``: a callback
        taking :class:`IndexProgress` samples, or True for a tqdm progress bar.
        """
        chosen = index_type if index_type is not None else self._config.index_type
        if chosen == "none":
            raise ConfigurationError(
                "create_index() needs an index type: this store's index_type is 'none'",
                hint="Pass 'hnsw' or 'ivfflat'.",
            )
        settings = self._build_settings(maintenance_work_mem, max_parallel_maintenance_workers)
        status = await self._build(
            chosen,
            params,
            concurrently=concurrently,
            wait=True,
            settings=settings,
            progress=progress,
        )
        assert status is not None  # wait=True always ends with a status or an error
        if chosen == self._config.index_type:
            self._index_wanted = False
        return status

    @_translated("drop_index")
    async def drop_index(self, *, concurrently: bool = False) -> bool:
        """Drop the store's vector index(es); True when one was dropped.

        A background build of this store is cancelled first. Automatic creation does not rebuild
        it in this store object; a new store (a restart) with ``auto_create_index`` would.
        """
        task, self._index_task = self._index_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._index_wanted = False
        connection = await self._connect_dedicated()
        try:
            await self._lock_builds(connection, wait=True)
            dropped = False
            for status in await self._read_statuses(connection):
                if status.exists:
                    await connection.execute(
                        self._sql.drop_index(status.name, concurrently=concurrently)
                    )
                    logger.info("dropped index %s", status.name)
                    dropped = True
            self._ann = self._config.index_type != "none"
            await self._refresh_session(connection)
            return dropped
        finally:
            await connection.close()

    @_translated("reindex")
    async def reindex(
        self,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        """Rebuild the store's vector index in place (``REINDEX INDEX [CONCURRENTLY]``).

        Repairs an INVALID index too. Returns the new status; when there is no index, returns
        the (missing) status and does nothing.
        """
        settings = self._build_settings(maintenance_work_mem, max_parallel_maintenance_workers)
        connection = await self._connect_dedicated()
        try:
            await self._lock_builds(connection, wait=True)
            statuses = [s for s in await self._read_statuses(connection) if s.exists]
            if not statuses:
                return (await self._read_statuses(connection))[0]
            for status in statuses:
                if status.building:
                    raise DatabaseError(
                        f"index {status.name} is being built by another session outside pgvs",
                        hint="Wait for that build to finish, or cancel it, then retry.",
                    )
                await self._execute_build(
                    connection,
                    self._sql.reindex(status.name, concurrently=concurrently),
                    concurrently=concurrently,
                    settings=settings,
                    progress=progress,
                    description=f"reindex {status.index_type}",
                )
            await self._refresh_session(connection)
            return await self._status_named(connection, statuses[0].name)
        except BaseException:
            await self._abandon(connection)
            raise
        finally:
            if not connection.is_closed():
                await connection.close()

    @_translated("index_status")
    async def index_status(self) -> IndexStatus:
        """The store's vector index as the catalog sees it: exists, valid, type, params, size.

        The configured type's index when it exists, else another index this store built, else a
        status with ``exists=False``.
        """
        statuses = await self._read_statuses(self.pool)
        return next((status for status in statuses if status.exists), statuses[0])

    @_translated("wait_for_index")
    async def wait_for_index(self, timeout: float | None = None) -> IndexStatus:
        """Wait for this store's automatic index build (if one is running) and return the status.

        Raises the build's error if it failed, and QueryTimeoutError after ``timeout`` seconds
        (the build goes on).
        """
        task = self._index_task
        if task is not None and not task.done():
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if self._index_error is not None:
            raise self._index_error
        return await self.index_status()


def _log_server_message(connection: Any, message: Any) -> None:
    severity = getattr(message, "severity", "NOTICE")
    text = str(getattr(message, "message", message))
    hint = getattr(message, "hint", None)
    level = logging.WARNING if severity == "WARNING" else logging.INFO
    logger.log(level, "server %s: %s%s", severity, text, f" ({hint})" if hint else "")


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
