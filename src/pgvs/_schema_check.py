"""Does an existing table fit the store's configuration? Pure: the catalog rows come in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .config import StoreConfig

__all__ = ["schema_problems"]

# Column types (pg_type.typname) each logical column accepts.
_ACCEPTED: dict[str, frozenset[str]] = {
    "content": frozenset({"text", "varchar", "bpchar"}),
    "document_id": frozenset({"text", "varchar", "bpchar"}),
    "domain_id": frozenset({"text", "varchar", "bpchar"}),
    "chunk_index": frozenset({"int2", "int4", "int8"}),
    "created_at": frozenset({"timestamptz", "timestamp"}),
    "updated_at": frozenset({"timestamptz", "timestamp"}),
    "metadata": frozenset({"jsonb"}),
    "content_tsv": frozenset({"tsvector"}),
}
_ID_TYPES = {
    "uuid": frozenset({"uuid"}),
    "text": frozenset({"text", "varchar"}),
    "bigint": frozenset({"int8", "int4"}),
}


def schema_problems(
    config: StoreConfig,
    columns: Mapping[str, tuple[str, int, str]],
    unique_keys: Sequence[Sequence[str]],
) -> list[str]:
    """Every way the table (``columns``: name -> (typname, atttypmod, shown type)) misfits.

    ``unique_keys`` lists the column sets of the table's valid unique indexes: the upsert's
    conflict target must be one of them.
    """
    problems: list[str] = []
    for logical in (
        "id",
        "embedding",
        "metadata",
        "content",
        "domain_id",
        "document_id",
        "chunk_index",
        "created_at",
        "updated_at",
        "content_tsv",
    ):
        real = config.column(logical)
        if real is None or (logical == "content_tsv" and config.text_search is None):
            continue
        if real not in columns:
            problems.append(
                f"column {real!r} (for {logical}) is missing"
                + (
                    ""
                    if logical in ("id", "embedding", "metadata")
                    else "; with auto_create_table=True initialize() adds it, keeping the rows"
                    if logical == "content_tsv"
                    else f"; map it to None in columns if the table has no {logical}"
                )
            )
            continue
        typname, typmod, shown = columns[real]
        if logical == "embedding":
            if typname != config.vector_type:
                problems.append(
                    f"column {real!r} is {shown}, the store expects "
                    f"{config.vector_type}({config.dimensions})"
                )
            elif typmod != config.dimensions:
                problems.append(
                    f"column {real!r} is {shown} but dimensions={config.dimensions}"
                    if typmod > 0
                    else f"column {real!r} is {shown} without a fixed dimension; indexes need "
                    f"one: ALTER TABLE ... ALTER COLUMN {real} TYPE "
                    f"{config.vector_type}({config.dimensions})"
                )
        elif logical == "id":
            if typname not in _ID_TYPES[config.id_type]:
                problems.append(
                    f"column {real!r} is {shown}, not usable as id_type={config.id_type!r}"
                )
        elif typname not in _ACCEPTED[logical]:
            problems.append(
                f"column {real!r} (for {logical}) is {shown}; expected one of "
                f"{', '.join(sorted(_ACCEPTED[logical]))}"
            )
    target = sorted(
        name for name in (config.column("domain_id"), config.column("id")) if name is not None
    )
    if config.column("id") in columns and not any(sorted(key) == target for key in unique_keys):
        problems.append(
            f"no unique index on ({', '.join(target)}), which upserts need as their conflict target"
        )
    return problems
