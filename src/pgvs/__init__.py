"""pgvs: PostgreSQL + pgvector as a fast, safe, complete vector store.

The wire types and codecs import without numpy; the stores (which use numpy) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .codecs import register_vector
from .errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    ExtensionMissingError,
    FilterError,
    IngestError,
    PermissionDeniedError,
    PGVSError,
    PoolTimeoutError,
    QueryCanceledError,
    QueryTimeoutError,
    SchemaMismatchError,
    StoreClosedError,
    ValidationError,
)
from .types import Bit, HalfVector, SparseVector, Vector

if TYPE_CHECKING:
    from .config import StoreConfig
    from .results import (
        IndexProgress,
        IndexStatus,
        Record,
        SearchExplanation,
        SearchResult,
        TuneReport,
    )
    from .store import AsyncPGVectorStore, VectorStoreFactory
    from .sync import PGVectorStore

__version__ = "0.1.0"

_LAZY = {
    "AsyncPGVectorStore": "pgvs.store",
    "VectorStoreFactory": "pgvs.store",
    "PGVectorStore": "pgvs.sync",
    "StoreConfig": "pgvs.config",
    "SearchResult": "pgvs.results",
    "Record": "pgvs.results",
    "IndexStatus": "pgvs.results",
    "IndexProgress": "pgvs.results",
    "SearchExplanation": "pgvs.results",
    "TuneReport": "pgvs.results",
}

__all__ = [
    "AsyncPGVectorStore",
    "Bit",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseError",
    "ExtensionMissingError",
    "FilterError",
    "HalfVector",
    "IndexProgress",
    "IndexStatus",
    "IngestError",
    "PGVSError",
    "PGVectorStore",
    "PermissionDeniedError",
    "PoolTimeoutError",
    "QueryCanceledError",
    "QueryTimeoutError",
    "Record",
    "SchemaMismatchError",
    "SearchExplanation",
    "SearchResult",
    "SparseVector",
    "StoreClosedError",
    "StoreConfig",
    "TuneReport",
    "ValidationError",
    "Vector",
    "VectorStoreFactory",
    "register_vector",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pgvs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
