"""``pgvs ingest PATH``: stream a file into the store through ``store.ingest``.

The file is read as it is written (see :mod:`._readers`), batch by batch, each batch its own
transaction: an upsert by id, so running the same command again rewrites the same rows. A bad
line stops the ingest before its batch is sent and is reported by line number, with what was
committed before it; ``--skip-bad`` skips and counts such lines instead.

Into an empty store with its own HNSW index, the index is dropped, the rows load into the bare
table and the index is built once (``store.ingest(build_after_load=True)``): the command returns
with it valid, and says how long the build took, or why the rows went into the index as they
loaded. A failed load rebuilds it over the committed rows. A killed one leaves it recorded as
due, and the next ``pgvs`` command rebuilds it (:mod:`._due`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
import click

from ..errors import IngestError, PGVSError, ValidationError
from ..results import IngestResult
from ..store.core import AsyncPGVectorStore
from ._common import EXIT_USAGE, CommandError, StoreArgs, json_option, run_async, store_options
from ._due import IngestGuard
from ._output import IngestDisplay, emit_json, print_pairs, warn
from ._readers import BadInput, Input, Options, detect_format, open_input
from ._target import connect, open_store

__all__ = ["ingest"]

_ROW = re.compile(r"^row (\d+): ")


def _renames(fields: tuple[str, ...]) -> dict[str, str]:
    renames: dict[str, str] = {}
    for item in fields:
        name, sep, key = item.partition("=")
        if not sep or not name or not key:
            raise CommandError(
                f"--field takes NAME=KEY (e.g. content=text), got {item!r}", code=EXIT_USAGE
            )
        renames[key] = name
    return renames


def _explain(error: IngestError, source: Input) -> CommandError:
    """The failure as the file's line, what was kept, and what to do."""
    cause = error.__cause__
    if isinstance(cause, BadInput):
        what = Exception.__str__(cause)
    elif isinstance(cause, ValidationError):
        message = Exception.__str__(cause)
        found = _ROW.match(message)
        if found:
            position = source.locate(int(found.group(1)))
            message = f"{source.label}: {source.unit} {position}: {message[found.end() :]}"
        what = message
    else:
        what = str(cause).split("\n")[0] if cause is not None else str(error)
    batches = len(error.committed_batches)
    kept = (
        f"{batches} batch{'es' if batches > 1 else ''} ({error.rows_written:,} rows) before it "
        f"{'are' if batches > 1 else 'is'} committed"
        if batches
        else "no batch was committed"
    )
    return CommandError(
        f"{what}\nnothing of batch {error.batch} was written; {kept}",
        hint="Fix it and run the same command again: committed rows are rewritten, never "
        "duplicated (or pass --skip-bad to skip and count bad lines).",
    )


def _index_line(result: IngestResult) -> str:
    if result.index_note is None:
        return f"built after the load in {result.details.get('index_build', 0.0):.2f} s"
    return f"not built after the load: {result.index_note}"


@click.command()
@store_options
@click.argument("path", type=str)
@click.option(
    "--format", "fmt", type=click.Choice(["npy", "fvecs", "jsonl"]), help="default: by suffix"
)
@click.option(
    "--sidecar",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines with ids/content/metadata per row of an .npy/.fvecs (default: X.jsonl)",
)
@click.option("--no-sidecar", is_flag=True, help="ignore an X.jsonl next to X.npy")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=KEY",
    help="read field NAME (id, embedding, content, metadata, document_id, chunk_index) from KEY",
)
@click.option("--ignore-key", "ignored", multiple=True, metavar="KEY", help="drop this key")
@click.option(
    "--id-start",
    type=int,
    default=0,
    show_default=True,
    help="rows without an id get this plus their 0-based row / line number",
)
@click.option("--skip-bad", is_flag=True, help="skip bad lines and count them instead of stopping")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="rows per batch")
@click.option(
    "--connections",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="batches in flight",
)
@click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")
@json_option
def ingest(
    store: StoreArgs,
    path: str,
    fmt: str | None,
    sidecar: Path | None,
    no_sidecar: bool,
    fields: tuple[str, ...],
    ignored: tuple[str, ...],
    id_start: int,
    skip_bad: bool,
    batch_size: int | None,
    connections: int,
    quiet: bool,
    as_json: bool,
) -> int:
    """Load PATH (.npy, .fvecs, JSON Lines, .gz; - for stdin) into the store, streaming.

    JSON Lines: {"id", "embedding", "content", "metadata", "document_id", "chunk_index"} per
    line. An .npy row's ids and metadata come from its sidecar X.jsonl (one object per row).
    Rows without an id get their row / line number (+ --id-start), so re-runs are idempotent.
    """
    kind = detect_format(path, fmt)
    if path != "-" and not Path(path).is_file():
        raise CommandError(f"no such file: {path}", code=EXIT_USAGE)
    renames = _renames(fields)

    async def go() -> tuple[IngestResult, Input]:
        async with open_store(store, connections=connections, restore=False) as opened:
            config = opened.config
            options = Options(
                dims=config.dimensions,
                vector_type=config.vector_type,
                id_type=config.id_type,
                id_start=id_start,
                renames=renames,
                ignored=frozenset(ignored),
                skip_bad=skip_bad,
            )
            # The ingest lock's session is this process's: it ends when the process does.
            assert config.connection_string is not None  # open_store resolved it
            guard = IngestGuard(
                await connect(config.connection_string), opened, store.schema, store.table, quiet
            )
            try:
                source = open_input(path, kind, options, sidecar=sidecar, no_sidecar=no_sidecar)
                try:
                    await guard.start()
                    return await load(opened, guard, source), source
                finally:
                    source.close()
            finally:
                await guard.connection.close()

    async def load(opened: AsyncPGVectorStore, guard: IngestGuard, source: Input) -> IngestResult:
        if not quiet and guard.marked:
            click.echo(f"{store.shown} is empty: its index is built once after the load", err=True)
        elif not quiet and guard.resume is not None:
            click.echo(
                f"{store.shown}: its index, dropped by an interrupted ingest, is built after "
                "this load",
                err=True,
            )
        display = IngestDisplay(
            f"ingest {Path(path).name if path != '-' else 'stdin'}",
            total_rows=source.total_rows,
            total_bytes=source.total_bytes,
            bytes_read=source.read_bytes,
            quiet=quiet,
        )
        try:
            result = await opened.ingest(
                source.data,
                ids=source.ids,
                batch_size=batch_size,
                connections=connections,
                progress=display,
                build_after_load=guard.build_after_load,
            )
        except IngestError as exc:
            display.close()
            try:
                await guard.after_load(None)  # the store rebuilt an index it dropped; resume: here
                await guard.finish()
            except (PGVSError, asyncpg.PostgresError) as rebuild:  # the load's error is the one
                warn(f"the index was not rebuilt: {rebuild} (the next pgvs command rebuilds it)")
            raise _explain(exc, source) from None
        finally:
            display.close()
        done = await guard.after_load(result)
        assert done is not None
        await guard.finish()
        return done

    result, source = run_async(go())
    report: dict[str, Any] = {
        "table": f"{store.schema}.{store.table}",
        "file": path,
        "rows_read": result.rows_read,
        "rows_written": result.rows_written,
        "rows_new": result.rows_copied,
        "rows_updated": result.rows_upserted,
        "batches": result.batches,
        "seconds": round(result.elapsed_seconds, 3),
        "rows_per_second": round(result.rows_per_second, 1),
        "skipped": source.skipped,
        "bad_lines": [{"where": bad.where, "reason": bad.reason} for bad in source.bad],
        # Built once after the load (its seconds), or why the rows went into the index.
        "index": {
            "built_after_load": result.index_note is None,
            "build_seconds": round(result.details["index_build"], 3)
            if "index_build" in result.details
            else None,
            "why_not": result.index_note,
        },
    }
    if as_json:
        emit_json(report)
        return 0
    click.echo(
        f"ingested {result.rows_read:,} rows into {report['table']} in "
        f"{result.elapsed_seconds:.2f} s ({result.rows_per_second:,.0f} rows/s)"
    )
    print_pairs(
        None,
        [
            (
                "written",
                f"{result.rows_written:,} ({result.rows_copied:,} new, "
                f"{result.rows_upserted:,} updated)",
            ),
            ("batches", result.batches),
            ("skipped", source.skipped),
            ("index", _index_line(result)),
        ],
    )
    for bad in source.bad:
        click.echo(f"skipped {bad.where}: {bad.reason}", err=True)
    if source.skipped > len(source.bad):
        click.echo(f"... and {source.skipped - len(source.bad)} more skipped", err=True)
    return 0
