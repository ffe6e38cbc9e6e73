"""``pgvs init``, ``count``, ``get`` and ``delete``: a store's table and its rows."""

from __future__ import annotations

import uuid
from typing import Any

import click

from ..config import METRIC_ALIASES, StoreConfig
from ..errors import ConfigurationError
from ..store.core import AsyncPGVectorStore
from ._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CommandError,
    StoreArgs,
    json_option,
    metric_choice,
    parse_filter,
    run_async,
    store_options,
)
from ._output import emit_json, print_pairs, print_table, short
from ._target import COMMENT_STATEMENT, comment_for, connect, describe, open_store, resolve_dsn

__all__ = ["count", "delete", "get", "init", "typed_ids"]


def typed_ids(store: AsyncPGVectorStore, ids: tuple[str, ...]) -> list[Any]:
    """Ids from the command line, as the table's id type wants them (else a usage error)."""
    id_type = store.config.id_type
    if id_type == "text":
        return list(ids)
    convert: Any = int if id_type == "bigint" else uuid.UUID
    for value in ids:
        try:
            convert(value)
        except ValueError:
            raise CommandError(
                f"{value!r} is not an id of this table (its ids are {id_type})", code=EXIT_USAGE
            ) from None
    return [int(value) for value in ids] if id_type == "bigint" else list(ids)


@click.command()
@store_options
@click.option("--dimensions", "-d", type=int, required=True, help="length of the embeddings")
@click.option("--metric", type=metric_choice(), default="cosine", show_default=True)
@click.option(
    "--vector-type",
    type=click.Choice(["vector", "halfvec", "bit", "sparsevec"]),
    default="vector",
    show_default=True,
)
@click.option(
    "--id-type", type=click.Choice(["uuid", "text", "bigint"]), default="uuid", show_default=True
)
@click.option(
    "--text-search",
    metavar="CONFIG",
    default=None,
    help="keep a full-text index of the content (a pg_ts_config name: english, simple, ...)",
)
@click.option(
    "--index",
    "index_type",
    type=click.Choice(["hnsw", "ivfflat", "none"]),
    default="hnsw",
    show_default=True,
    help="vector index of a new table (HNSW is built now; IVFFlat needs rows: "
    "`pgvs index create` after ingest)",
)
@json_option
def init(
    store: StoreArgs,
    dimensions: int,
    metric: str,
    vector_type: str,
    id_type: str,
    text_search: str | None,
    index_type: str,
    as_json: bool,
) -> int:
    """Create a store's table, or verify an existing one fits these options.

    On an existing table --text-search adds the full-text column and its index (a one-time
    rewrite of the table that keeps every row); nothing else is changed.
    """
    return run_async(
        _init(store, dimensions, metric, vector_type, id_type, text_search, index_type, as_json)
    )


async def _init(
    args: StoreArgs,
    dimensions: int,
    metric: str,
    vector_type: str,
    id_type: str,
    text_search: str | None,
    index_type: str,
    as_json: bool,
) -> int:
    dsn = resolve_dsn(args.dsn)
    connection = await connect(dsn)
    try:
        existing = await describe(connection, args.schema, args.table)
    finally:
        await connection.close()
    metric = METRIC_ALIASES.get(metric.lower(), metric.lower())
    if existing is not None and existing.metric is not None and existing.metric != metric:
        raise CommandError(
            f"{args.schema}.{args.table} exists with metric {existing.metric}, not {metric}",
            hint="Pass --metric to match, or use another --table.",
        )
    try:
        config = StoreConfig(
            dimensions=dimensions,
            connection_string=dsn,
            metric=metric,  # type: ignore[arg-type]
            vector_type=vector_type,  # type: ignore[arg-type]
            schema=args.schema,
            table_name=args.table,
            id_type=id_type,  # type: ignore[arg-type]
            domain_id=args.domain,
            text_search=text_search,
            index_type=index_type,  # type: ignore[arg-type]
            # An HNSW index on a new (empty) table is built inside initialize(); anything else
            # would be a background build that this short-lived command would cut short.
            auto_create_index=existing is None and index_type == "hnsw",
            pool_min_size=1,
            pool_max_size=2,
        )
    except ConfigurationError as exc:
        raise CommandError(Exception.__str__(exc), code=EXIT_USAGE, hint=exc.hint) from None
    async with AsyncPGVectorStore(config) as created:
        if existing is None:
            # What the catalog cannot tell later without a vector index: the metric.
            async with created.pool.acquire() as conn:
                statement = await conn.fetchval(
                    COMMENT_STATEMENT, args.schema, args.table, comment_for(config.metric)
                )
                await conn.execute(statement)
        rows = await created.count()
        status = await created.index_status()
    report = {
        "table": f"{args.schema}.{args.table}",
        "created": existing is None,
        "column": f"{vector_type}({dimensions})",
        "metric": config.metric,
        "id_type": id_type,
        "text_search": text_search or (existing.text_search if existing else None),
        "index": status.index_type if status.exists else None,
        "rows": rows,
    }
    if as_json:
        emit_json(report)
        return 0
    verb = "created" if existing is None else "verified"
    click.echo(f"{verb} {report['table']}")
    print_pairs(
        None,
        [
            (key, "none" if value is None else value)
            for key, value in report.items()
            if key not in ("table", "created")
        ],
    )
    if existing is None and index_type == "ivfflat":
        click.echo("IVFFlat needs rows to train on: run `pgvs index create` after ingest.")
    return 0


@click.command()
@store_options
@click.option("--filter", "filter_text", metavar="JSON", help="count only matching rows")
@json_option
def count(store: StoreArgs, filter_text: str | None, as_json: bool) -> int:
    """How many rows the store (or its --domain) holds, optionally matching --filter."""
    where = parse_filter(filter_text)

    async def go() -> int:
        async with open_store(store) as opened:
            return await opened.count(where)

    number = run_async(go())
    if as_json:
        emit_json({"count": number})
    else:
        click.echo(f"{number}")
    return 0


@click.command()
@store_options
@click.argument("ids", nargs=-1, required=True)
@click.option("--vectors", "with_vectors", is_flag=True, help="show the vectors too")
@json_option
def get(store: StoreArgs, ids: tuple[str, ...], with_vectors: bool, as_json: bool) -> int:
    """Rows by id. Exit 1 when an id is not stored."""

    async def go() -> list[Any]:
        async with open_store(store) as opened:
            return await opened.get_vectors(typed_ids(opened, ids))

    records = run_async(go())
    found = [
        {
            "id": record.id if record.found else wanted,
            "found": record.found,
            "content": record.content,
            "metadata": record.metadata,
            "document_id": record.document_id,
            "chunk_index": record.chunk_index,
            **({"vector": record.vector} if with_vectors else {}),
        }
        for wanted, record in zip(ids, records, strict=True)
    ]
    if as_json:
        emit_json(found)
    else:
        columns = ["id", "found", "content", "metadata", "document", "chunk"]
        rows = [
            [
                row["id"],
                "yes" if row["found"] else "NO",
                short(row["content"], 50),
                short(row["metadata"], 50),
                row["document_id"],
                row["chunk_index"],
            ]
            for row in found
        ]
        if with_vectors:
            columns.append("vector")
            for row, record in zip(rows, found, strict=True):
                row.append(short(record["vector"], 40))
        print_table(None, columns, rows)
    return 0 if all(row["found"] for row in found) else EXIT_FAILURE


@click.command()
@store_options
@click.option("--filter", "filter_text", metavar="JSON", help="delete the rows matching it")
@click.option("--id", "ids", multiple=True, metavar="ID", help="delete this id (repeatable)")
@click.option("--dry-run", is_flag=True, help="only count what would be deleted")
@json_option
def delete(
    store: StoreArgs, filter_text: str | None, ids: tuple[str, ...], dry_run: bool, as_json: bool
) -> int:
    """Delete rows by --filter (a non-empty JSON filter) or by --id."""
    where = parse_filter(filter_text)
    if (where is None) == (not ids):
        raise CommandError("give either --filter JSON or --id ID (not both)", code=EXIT_USAGE)
    if where is not None and not where:
        raise CommandError(
            "an empty --filter would delete every row; refusing",
            code=EXIT_USAGE,
            hint='Name the rows to delete, e.g. --filter \'{"source": "old"}\'.',
        )

    async def go() -> int:
        async with open_store(store) as opened:
            if ids:
                wanted = typed_ids(opened, ids)
                if dry_run:
                    return sum(record.found for record in await opened.get_vectors(wanted, False))
                return await opened.delete_vectors(wanted)
            assert where is not None
            if dry_run:
                return await opened.count(where)
            return await opened.delete(where)

    number = run_async(go())
    if as_json:
        emit_json({"deleted": 0 if dry_run else number, "matched": number})
    else:
        click.echo(f"would delete {number} rows" if dry_run else f"deleted {number} rows")
    return 0
