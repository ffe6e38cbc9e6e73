"""The async store and its parts; the only package that awaits the database.

- ``core``: :class:`AsyncPGVectorStore`, the public API, composed of the parts below.
- ``_context``: what a store knows without I/O (config, SQL, query values, result rows).
- ``_session``: the pool, dedicated connections, ``SET LOCAL`` transactions.
- ``_bootstrap``: extension, schema, table and first index at ``initialize()``.
- ``_writes`` / ``_reads``: row writes; counts, gets and searches.
- ``_index_manager``: index builds (locks, progress, the automatic build) and query defaults,
  on ``_index_catalog`` (reads, query defaults), ``_index_ops`` (builds), ``_index_builds``.
- ``_ingest`` / ``_ingest_pipeline`` / ``_ingest_writer`` / ``_ingest_sources``: bulk upserts by
  binary COPY.
- ``_replicas``: reads routed to read replicas (read-your-writes); ``_tenancy``: tenant
  partitions and the Citus table.
"""

from __future__ import annotations

from .core import AsyncPGVectorStore, ProgressCallback, VectorStoreFactory

__all__ = ["AsyncPGVectorStore", "ProgressCallback", "VectorStoreFactory"]
