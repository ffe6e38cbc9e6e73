"""PGVSVectorStore: the LangChain VectorStore interface, sync and async, on one pgvs store.

Every operation is prepared once (checks, ids, options: :mod:`._rules`) as a coroutine function of
the async core, then run on the sync or the async route (:mod:`._routes`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ...config import StoreConfig
from ...errors import ConfigurationError, ValidationError
from ...results import SearchResult
from ...store import AsyncPGVectorStore
from ...sync import PGVectorStore
from ._routes import Routes
from ._rules import (
    CONSTRUCTOR_OPTIONS,
    HYBRID_OPTIONS,
    SEARCH_OPTIONS,
    WRITE_OPTIONS,
    check_options,
    ids_for_lookup,
    ids_for_write,
    relevance_fn,
    store_config,
)

__all__ = ["PGVSVectorStore"]

VST = TypeVar("VST", bound="PGVSVectorStore")


def _documents(hits: Sequence[SearchResult]) -> list[Document]:
    return [
        Document(page_content=hit.content or "", metadata=hit.metadata or {}, id=str(hit.id))
        for hit in hits
    ]


class PGVSVectorStore(VectorStore):
    """A LangChain VectorStore on a pgvs table; see :mod:`pgvs.integrations.langchain`.

    ``PGVSVectorStore(embeddings, {"dimensions": 768, "table_name": "docs", ...})`` (or a
    :class:`~pgvs.config.StoreConfig`; pgvs config keys may also come as keywords). No I/O until
    the first call. ``relevance_score_fn`` replaces the metric's distance-to-relevance map;
    ``add_*`` calls with more than ``bulk_threshold`` rows go through pgvs' binary-COPY
    ``ingest`` (in one transaction, like the smaller calls' single statement).
    """

    def __init__(
        self,
        embeddings: Embeddings,
        config: StoreConfig | Mapping[str, Any],
        /,
        *,
        relevance_score_fn: Callable[[float], float] | None = None,
        bulk_threshold: int = 1000,
        **options: Any,
    ) -> None:
        self._embeddings = embeddings
        self._config = store_config(config, options)
        self._relevance = relevance_score_fn or relevance_fn(self._config)
        if isinstance(bulk_threshold, bool) or not isinstance(bulk_threshold, int):
            raise ConfigurationError(f"bulk_threshold must be an integer, got {bulk_threshold!r}")
        self.bulk_threshold = bulk_threshold
        self._routes = Routes(self._config, type(self).__name__)

    def __repr__(self) -> str:
        c = self._config
        return f"<PGVSVectorStore {c.schema}.{c.table_name} {c.vector_type}({c.dimensions})>"

    @property
    def embeddings(self) -> Embeddings:
        return self._embeddings

    @property
    def config(self) -> StoreConfig:
        return self._config

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return self._relevance

    # -- the two routes (see ._routes) ---------------------------------------------------------

    def sync_store(self) -> PGVectorStore:
        """The sync facade, created and initialized on first use (``count()``, ``clear()``, ...)."""
        return self._routes.sync_store()

    async def async_store(self) -> AsyncPGVectorStore:
        """The async core of the running loop, created and initialized on first use."""
        return await self._routes.async_store()

    def __enter__(self: VST) -> VST:
        self._routes.sync_store()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self: VST) -> VST:
        await self._routes.async_store()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the facade and every loop's pool. Safe to call twice. In async code prefer
        ``aclose()``: the running loop's pool can only be closed in a task from here."""
        self._routes.close()

    async def aclose(self) -> None:
        """Close every pool: the running loop's gracefully, the facade's on its own thread."""
        await self._routes.aclose()

    # -- writes --------------------------------------------------------------------------------

    def _prepare_write(
        self,
        texts: Iterable[str],
        embeddings: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        ids: Sequence[str | None] | None,
        kwargs: Mapping[str, Any],
    ) -> Callable[[AsyncPGVectorStore], Awaitable[list[str]]]:
        check_options("add", kwargs, WRITE_OPTIONS)
        contents = list(texts)
        count = len(contents)
        if len(embeddings) != count:
            raise ValidationError(f"embeddings has {len(embeddings)} vectors for {count} texts")
        if metadatas is not None and len(metadatas) != count:
            raise ValidationError(f"metadatas has {len(metadatas)} entries for {count} texts")
        for row, text in enumerate(contents):
            if not isinstance(text, str):
                raise ValidationError(
                    f"row {row}: text must be a string, got {type(text).__name__}"
                )
        metadata = [dict(m) if m else {} for m in metadatas] if metadatas else [{}] * count
        store_ids = ids_for_write(self._config.id_type, ids, count)
        bulk = kwargs.get("bulk")
        if bulk is None:
            bulk = count > self.bulk_threshold
        if bulk and store_ids is not None:
            # Lists of floats go to ingest as they are: its batches read them natively
            # (pgvs._speedups.float32_rows), as fast as a converted matrix.
            matrix = embeddings

            # One transaction by default: a bad row leaves nothing written, as in add_vectors,
            # and a re-run cannot duplicate the rows whose ids were generated.
            atomic = bool(kwargs.get("atomic", True))

            async def ingest(core: AsyncPGVectorStore) -> list[str]:
                await core.ingest(
                    matrix, ids=store_ids, metadata=metadata, contents=contents, atomic=atomic
                )
                return [str(i) for i in store_ids]

            return ingest

        async def add(core: AsyncPGVectorStore) -> list[str]:
            if not count:
                return []
            written = await core.add_vectors(
                embeddings, ids=store_ids, metadata=metadata, contents=contents
            )
            return [str(i) for i in written]

        return add

    def add_embeddings(
        self,
        texts: Iterable[str],
        embeddings: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Store texts with precomputed embeddings (a list of vectors or an ``(n, d)`` array).

        Upsert by id; returns the ids. All rows or none: more than ``bulk_threshold`` rows (or
        ``bulk=True``) go through binary COPY in one transaction, fewer in one statement. A bad
        row raises :class:`~pgvs.errors.ValidationError` naming it (wrapped in an
        :class:`~pgvs.errors.IngestError` on the COPY path) before anything is written.
        ``atomic=False`` lets the COPY path commit batch by batch, two batches in flight on two
        connections (faster when the server has cores to spare); a failure then names the
        committed batches, and only a re-run with the same ``ids`` is an exact upsert of them.
        """
        return self._routes.run(self._prepare_write(texts, embeddings, metadatas, ids, kwargs))

    async def aadd_embeddings(
        self,
        texts: Iterable[str],
        embeddings: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """The coroutine twin of :meth:`add_embeddings`."""
        return await self._routes.arun(
            self._prepare_write(texts, embeddings, metadatas, ids, kwargs)
        )

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` (``embed_documents``) and store them; see :meth:`add_embeddings`."""
        contents = list(texts)
        vectors = self._embeddings.embed_documents(contents) if contents else []
        return self.add_embeddings(contents, vectors, metadatas, ids, **kwargs)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` (``aembed_documents``) and store them; see :meth:`add_embeddings`."""
        contents = list(texts)
        vectors = await self._embeddings.aembed_documents(contents) if contents else []
        return await self.aadd_embeddings(contents, vectors, metadatas, ids, **kwargs)

    def _prepare_delete(
        self, ids: Sequence[str] | None, kwargs: Mapping[str, Any]
    ) -> Callable[[AsyncPGVectorStore], Awaitable[bool]] | None:
        check_options("delete", kwargs, frozenset({"filter"}))
        filter = kwargs.get("filter")
        if ids is None and not filter:
            return None
        keys = None if ids is None else ids_for_lookup(self._config.id_type, ids)

        async def delete(core: AsyncPGVectorStore) -> bool:
            if keys:
                await core.delete_vectors(keys)
            if filter:
                await core.delete(filter)
            return True

        return delete

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by ids and/or ``filter=`` (pgvs filter); ids that are not stored are ignored.

        True when done; False (nothing deleted) with neither, as langchain-postgres: deleting
        everything is ``sync_store().clear()``.
        """
        work = self._prepare_delete(ids, kwargs)
        return False if work is None else self._routes.run(work)

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """The coroutine twin of :meth:`delete`."""
        work = self._prepare_delete(ids, kwargs)
        return False if work is None else await self._routes.arun(work)

    # -- reads ---------------------------------------------------------------------------------

    def _prepare_get(
        self, ids: Sequence[str]
    ) -> Callable[[AsyncPGVectorStore], Awaitable[list[Document]]]:
        keys = ids_for_lookup(self._config.id_type, ids)

        async def get(core: AsyncPGVectorStore) -> list[Document]:
            if not keys:
                return []
            records = await core.get_vectors(keys)
            return [
                Document(page_content=r.content or "", metadata=r.metadata or {}, id=str(r.id))
                for r in records
                if r.found
            ]

        return get

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids``, in that order; missing ids are skipped."""
        return self._routes.run(self._prepare_get(ids))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The coroutine twin of :meth:`get_by_ids`."""
        return await self._routes.arun(self._prepare_get(ids))

    def _prepare_search(
        self, vector: Any, query: str | None, k: int, kwargs: Mapping[str, Any]
    ) -> Callable[[AsyncPGVectorStore], Awaitable[list[SearchResult]]]:
        check_options("search", kwargs, SEARCH_OPTIONS)
        filter = kwargs.get("filter")
        hybrid = kwargs.get("hybrid")
        text = kwargs.get("text")
        # An options dict asks for hybrid search even when empty; keywords of their own imply it.
        if isinstance(hybrid, Mapping) or bool(hybrid) or text is not None:
            options = dict(hybrid) if isinstance(hybrid, Mapping) else {}
            check_options("hybrid", options, HYBRID_OPTIONS)
            if kwargs.get("probes") is not None or kwargs.get("exact"):
                raise ValidationError("hybrid search takes ef_search, not probes or exact")
            keywords = text if text is not None else query
            if keywords is None:
                raise ValidationError("hybrid search by vector needs text= (the keywords)")
            if self._config.text_search is None:
                raise ConfigurationError(
                    "hybrid search needs full text: set text_search (e.g. 'english') in the config"
                )

            async def hybrid_search(core: AsyncPGVectorStore) -> list[SearchResult]:
                return await core.hybrid_search(
                    vector, keywords, k, filter=filter, ef_search=kwargs.get("ef_search"), **options
                )

            return hybrid_search

        async def search(core: AsyncPGVectorStore) -> list[SearchResult]:
            return await core.search(
                vector,
                k,
                filter=filter,
                ef_search=kwargs.get("ef_search"),
                probes=kwargs.get("probes"),
                exact=bool(kwargs.get("exact", False)),
            )

        return search

    def similarity_search_with_score_by_vector(
        self, embedding: Sequence[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest to ``embedding`` with their distances (lower is nearer)."""
        hits = self._routes.run(self._prepare_search(embedding, None, k, kwargs))
        return list(zip(_documents(hits), (hit.distance for hit in hits), strict=True))

    async def asimilarity_search_with_score_by_vector(
        self, embedding: Sequence[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The coroutine twin of :meth:`similarity_search_with_score_by_vector`."""
        hits = await self._routes.arun(self._prepare_search(embedding, None, k, kwargs))
        return list(zip(_documents(hits), (hit.distance for hit in hits), strict=True))

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest to ``query`` with their distances; options in the module docstring."""
        vector = self._embeddings.embed_query(query)
        hits = self._routes.run(self._prepare_search(vector, query, k, kwargs))
        return list(zip(_documents(hits), (hit.distance for hit in hits), strict=True))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The coroutine twin of :meth:`similarity_search_with_score`."""
        vector = await self._embeddings.aembed_query(query)
        hits = await self._routes.arun(self._prepare_search(vector, query, k, kwargs))
        return list(zip(_documents(hits), (hit.distance for hit in hits), strict=True))

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents nearest to ``query``; options in the module docstring."""
        vector = self._embeddings.embed_query(query)
        return _documents(self._routes.run(self._prepare_search(vector, query, k, kwargs)))

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The coroutine twin of :meth:`similarity_search`."""
        vector = await self._embeddings.aembed_query(query)
        return _documents(await self._routes.arun(self._prepare_search(vector, query, k, kwargs)))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents nearest to ``embedding`` (a list or numpy vector)."""
        return _documents(self._routes.run(self._prepare_search(embedding, None, k, kwargs)))

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The coroutine twin of :meth:`similarity_search_by_vector`."""
        return _documents(await self._routes.arun(self._prepare_search(embedding, None, k, kwargs)))

    def _prepare_mmr(
        self, vector: Any, k: int, fetch_k: int, lambda_mult: float, kwargs: Mapping[str, Any]
    ) -> Callable[[AsyncPGVectorStore], Awaitable[list[SearchResult]]]:
        check_options("MMR", kwargs, frozenset({"filter"}))
        filter = kwargs.get("filter")

        async def mmr(core: AsyncPGVectorStore) -> list[SearchResult]:
            return await core.mmr_search(
                vector, k, fetch_k=max(fetch_k, k), lambda_mult=lambda_mult, filter=filter
            )

        return mmr

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents near ``embedding`` and unlike each other, among the ``fetch_k``
        nearest (pgvs' ``mmr_search``; ``lambda_mult=1`` is plain nearest order)."""
        work = self._prepare_mmr(embedding, k, fetch_k, lambda_mult, kwargs)
        return _documents(self._routes.run(work))

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """The coroutine twin of :meth:`max_marginal_relevance_search_by_vector`."""
        work = self._prepare_mmr(embedding, k, fetch_k, lambda_mult, kwargs)
        return _documents(await self._routes.arun(work))

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search_by_vector` of ``embed_query(query)``."""
        vector = self._embeddings.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """The coroutine twin of :meth:`max_marginal_relevance_search`."""
        vector = await self._embeddings.aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    # -- construction from data ----------------------------------------------------------------

    @classmethod
    def _split_options(
        cls, kwargs: dict[str, Any]
    ) -> tuple[StoreConfig | dict[str, Any], dict[str, Any]]:
        config = kwargs.pop("config", None)
        fields = set(StoreConfig.field_names())
        constructor = {key: kwargs.pop(key) for key in list(kwargs) if key in CONSTRUCTOR_OPTIONS}
        settings = {key: kwargs.pop(key) for key in list(kwargs) if key in fields}
        check_options("from_texts", kwargs, frozenset())
        if isinstance(config, StoreConfig):
            return (config.replace(**settings) if settings else config), constructor
        return {**dict(config or {}), **settings}, constructor

    @staticmethod
    def _with_dimensions(
        config: StoreConfig | dict[str, Any], vectors: Sequence[Sequence[float]]
    ) -> StoreConfig | dict[str, Any]:
        if isinstance(config, StoreConfig) or "dimensions" in config:
            return config
        if not vectors:
            raise ConfigurationError("dimensions is required when there are no texts to embed")
        return {**config, "dimensions": len(vectors[0])}

    @classmethod
    def from_texts(
        cls: type[VST],
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> VST:
        """A store (config from ``config=`` and/or pgvs keywords; ``dimensions`` defaults to the
        embeddings' length) holding ``texts``. Close it when done (``with`` works)."""
        config, options = cls._split_options(kwargs)
        vectors = embedding.embed_documents(list(texts)) if texts else []
        store = cls(embedding, cls._with_dimensions(config, vectors), **options)
        try:
            store.add_embeddings(texts, vectors, metadatas, ids)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    async def afrom_texts(
        cls: type[VST],
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> VST:
        """The coroutine twin of :meth:`from_texts`; the store's async pool is on this loop."""
        config, options = cls._split_options(kwargs)
        vectors = await embedding.aembed_documents(list(texts)) if texts else []
        store = cls(embedding, cls._with_dimensions(config, vectors), **options)
        try:
            await store.aadd_embeddings(texts, vectors, metadatas, ids)
        except BaseException:
            await store.aclose()
            raise
        return store
