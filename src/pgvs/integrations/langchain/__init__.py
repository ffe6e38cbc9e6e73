"""LangChain: :class:`PGVSVectorStore`, a ``langchain_core`` VectorStore on the pgvs store.

``pip install 'pgvs[langchain]'``; ``import pgvs`` never imports LangChain.

**One object, two routes.** Sync methods run on pgvs' sync facade (:class:`pgvs.PGVectorStore`,
which owns an event loop in a thread of its own, so they work inside Jupyter or an ASGI worker
too); async methods await pgvs' async core (:class:`pgvs.AsyncPGVectorStore`) on the caller's
loop, with no thread hop. Both are created lazily, on the first call of their kind, because an
asyncpg pool belongs to the loop it was opened on: the facade's pool to its thread's loop, and one
core per caller loop (a core whose loop has been closed, e.g. after ``asyncio.run`` returned, is
dropped and the next loop gets a new one; its connections can then only be abandoned, which
Python may report as unclosed-socket ResourceWarnings). ``close()`` / ``aclose()`` (or ``with`` /
``async with``) close them all; in async code prefer ``aclose()``, which closes the current
loop's pool gracefully. Query embeddings are computed with ``embed_query`` on the sync route and
``aembed_query`` on the async one.

**Writes** are upserts by id, all rows or none: ``add_embeddings`` (precomputed vectors),
``add_texts`` and ``add_documents`` write up to ``bulk_threshold`` rows in one statement and more
through pgvs' binary-COPY ``ingest`` in one transaction (``atomic=False``: batch by batch). A bad
row is a :class:`~pgvs.errors.ValidationError` naming it (inside an ``IngestError`` on the COPY
path), raised before anything is written.

**Ids.** LangChain ids are strings. With a dict config that does not set ``id_type`` the table
gets ``text`` ids, so any string is an id; ``uuid`` tables take UUID strings and ``bigint``
tables decimal strings (anything else is refused on write, naming the row, and simply not found by
``get_by_ids`` / ``delete``). Missing ids are generated (uuid4). Ids come back as ``str``.

**Scores.** ``similarity_search_with_score`` returns pgvector's distance (lower is nearer: ``1 -
cosine`` for cosine, the negative inner product for inner_product), as langchain-postgres does;
``similarity_search_with_relevance_scores`` maps it into [0, 1] per metric (or through
``relevance_score_fn``).

**Search options** (keyword arguments of the similarity searches, i.e. retriever
``search_kwargs``): ``filter`` in pgvs' filter language (docs/filters.md), ``ef_search``,
``probes``, ``exact``; with a config that sets ``text_search``, ``hybrid=True`` (or a dict of
``hybrid_search`` options: ``fusion``, ``rrf_k``, ``vector_weight``, ``text_weight``,
``candidates``) fuses vector and full-text search, ``text=`` giving other keywords than the query.

**Existing langchain-postgres tables.** :func:`langchain_postgres_config` maps pgvs onto the v2
layout (``PGEngine.init_vectorstore_table``) after one migration, see its docstring.
"""

from ._rules import LANGCHAIN_POSTGRES_COLUMNS, langchain_postgres_config
from ._store import PGVSVectorStore

__all__ = ["LANGCHAIN_POSTGRES_COLUMNS", "PGVSVectorStore", "langchain_postgres_config"]
