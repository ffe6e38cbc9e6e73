"""The LangChain integration's pure half: configs, id conversion, scores, option checks.

No I/O and no LangChain import: what :class:`PGVSVectorStore` decides before it calls the store.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ...config import StoreConfig
from ...errors import ConfigurationError, ValidationError

__all__ = [
    "CONSTRUCTOR_OPTIONS",
    "HYBRID_OPTIONS",
    "LANGCHAIN_POSTGRES_COLUMNS",
    "SEARCH_OPTIONS",
    "WRITE_OPTIONS",
    "check_options",
    "ids_for_lookup",
    "ids_for_write",
    "langchain_postgres_config",
    "relevance_fn",
    "store_config",
]

# langchain-postgres v2's table (PGEngine.init_vectorstore_table defaults): `langchain_id uuid
# PRIMARY KEY, content text NOT NULL, embedding vector(n) NOT NULL, langchain_metadata json`.
LANGCHAIN_POSTGRES_COLUMNS: Mapping[str, str | None] = {
    "id": "langchain_id",
    "content": "content",
    "embedding": "embedding",
    "metadata": "langchain_metadata",
    "domain_id": None,
    "document_id": None,
    "chunk_index": None,
    "created_at": None,
    "updated_at": None,
}

SEARCH_OPTIONS = frozenset({"filter", "hybrid", "text", "ef_search", "probes", "exact"})
HYBRID_OPTIONS = frozenset({"fusion", "rrf_k", "vector_weight", "text_weight", "candidates"})
WRITE_OPTIONS = frozenset({"bulk", "atomic"})
CONSTRUCTOR_OPTIONS = frozenset({"relevance_score_fn", "bulk_threshold"})


def langchain_postgres_config(
    table_name: str, dimensions: int, *, schema: str = "public", **options: Any
) -> StoreConfig:
    """A config for a table made by langchain-postgres' ``PGEngine.init_vectorstore_table``.

    Their defaults: ``langchain_id`` (uuid), ``content``, ``embedding``, ``langchain_metadata``.
    That metadata column is ``json``; pgvs filters and writes need ``jsonb``, so migrate it once:
    ``ALTER TABLE t ALTER COLUMN langchain_metadata TYPE jsonb USING langchain_metadata::jsonb``
    (langchain-postgres reads and writes the table as before). Extra ``metadata_columns`` they
    created are left alone (they must be nullable or have defaults for pgvs' inserts); a
    hybrid-search ``tsvector NOT NULL`` column is not written by pgvs, so drop its NOT NULL or do
    not use that table's hybrid search. Other options (``id_type``, ``columns``, ...) override.
    """
    settings: dict[str, Any] = {
        "table_name": table_name,
        "schema": schema,
        "dimensions": dimensions,
        "id_type": "uuid",
        "auto_create_table": False,
        **options,
    }
    settings["columns"] = {**LANGCHAIN_POSTGRES_COLUMNS, **dict(options.get("columns", {}))}
    return StoreConfig.from_mapping(settings)


def store_config(
    config: StoreConfig | Mapping[str, Any], options: Mapping[str, Any]
) -> StoreConfig:
    if isinstance(config, StoreConfig):
        return config.replace(**options) if options else config
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"config must be a pgvs config dict or a StoreConfig, got {type(config).__name__}"
        )
    merged = {**dict(config), **options}
    # LangChain ids are arbitrary strings: a table pgvs creates for LangChain stores text ids.
    merged.setdefault("id_type", "text")
    return StoreConfig.from_mapping(merged)


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 or math.isnan(value) else min(value, 1.0)


def relevance_fn(config: StoreConfig) -> Callable[[float], float]:
    metric, dims = config.metric, config.dimensions
    if metric == "cosine":  # cosine similarity; opposite vectors are 0, not negative
        return lambda distance: _clamp(1.0 - distance)
    if metric == "inner_product":  # pgvector's <#> is the negative inner product
        return lambda distance: _clamp(-distance)
    if metric == "euclidean":  # LangChain's convention (unit vectors are sqrt(2) apart at most)
        return lambda distance: _clamp(1.0 - distance / math.sqrt(2))
    if metric == "hamming":
        return lambda distance: _clamp(1.0 - distance / dims)
    if metric == "jaccard":
        return lambda distance: _clamp(1.0 - distance)
    return lambda distance: 1.0 / (1.0 + distance)  # l1


def check_options(kind: str, given: Iterable[str], valid: frozenset[str]) -> None:
    unknown = sorted(set(given) - valid)
    if unknown:
        raise ValidationError(
            f"unknown {kind} option(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(valid))}"
        )


def ids_for_write(id_type: str, ids: Sequence[str | None] | None, count: int) -> list[Any] | None:
    """The store ids of ``count`` rows to write; None lets a bigint column number them."""
    if ids is None:
        if id_type == "bigint":
            return None
        ids = [None] * count
    elif len(ids) != count:
        raise ValidationError(f"ids has {len(ids)} entries for {count} texts")
    out: list[Any] = []
    for row, value in enumerate(ids):
        if value is None:
            if id_type == "bigint":
                raise ValidationError(
                    f"row {row}: id is None; a bigint table numbers rows only when no id "
                    "is given for any of them"
                )
            out.append(str(uuid.uuid4()) if id_type == "text" else uuid.uuid4())
        elif id_type != "text" and isinstance(value, str):
            # Parsed here so the ids returned are the ones stored (a UUID's canonical form).
            try:
                out.append(int(value) if id_type == "bigint" else uuid.UUID(value))
            except ValueError:
                raise ValidationError(
                    f"row {row}: id {value!r} is not a valid {id_type} (the table's id type)"
                ) from None
        else:
            out.append(value)  # pgvs checks it, naming the row
    return out


def ids_for_lookup(id_type: str, ids: Iterable[Any]) -> list[Any]:
    """The store ids among ``ids``: one the column cannot hold is not stored, so it is skipped
    (LangChain's contract for missing ids) rather than refused."""
    out: list[Any] = []
    for value in ids:
        try:
            if id_type == "uuid":
                out.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
            elif id_type == "bigint":
                number = int(value)
                if -(2**63) <= number < 2**63:
                    out.append(number)
            elif isinstance(value, str) and value and "\x00" not in value:
                out.append(value)
        except (TypeError, ValueError):
            continue
    return out
