"""``pgvs search``: nearest rows to a vector, full-text matches, or both fused (hybrid).

The query vector comes from ``--vector JSON``, a row of a file (``--query-file Q.npy --row 3``;
``.npy``, ``.fvecs``, a ``.json`` list or list of lists, or a JSON Lines file's ``embedding``),
or a stored row (``--like ID``). ``--text`` alone is ``text_search``, with a vector it is
``hybrid_search``; both need a store made with ``--text-search``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..results import SearchResult
from ..store.core import AsyncPGVectorStore
from ._common import (
    EXIT_USAGE,
    CommandError,
    StoreArgs,
    json_option,
    metric_choice,
    parse_filter,
    parse_json_value,
    run_async,
    store_options,
)
from ._output import emit_json, print_table, short
from ._target import open_store
from .store import typed_ids

__all__ = ["load_query", "search"]


def _usage(message: str) -> CommandError:
    return CommandError(message, code=EXIT_USAGE)


def _row_of(rows: Any, row: int, what: str) -> Any:
    if not -len(rows) <= row < len(rows):
        raise _usage(f"{what} has {len(rows)} rows; --row {row} is not one of them")
    return rows[row]


def load_query(path: Path, row: int) -> Any:
    """Row ``row`` of a vector file (a 1-D .npy is the vector itself)."""
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.ndim == 1:
                return np.asarray(array)
            return np.asarray(_row_of(array, row, str(path)))
        if name.endswith(".fvecs"):
            words = np.fromfile(path, dtype="<i4")
            dims = int(words[0]) if words.size else 0
            if dims < 1 or words.size % (dims + 1):
                raise _usage(f"{path} is not an .fvecs file")
            table = words.reshape(-1, dims + 1)
            return _row_of(table, row, str(path))[1:].view("<f4").copy()
        if name.endswith((".jsonl", ".ndjson")):
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines):
                    if number == row:
                        value = json.loads(line)
                        return value.get("embedding", value.get("vector"))
            raise _usage(f"{path} has no line for --row {row}")
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _usage(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _usage(f"{path} is not a vector file this command reads: {exc}") from None
    if isinstance(value, list) and value and isinstance(value[0], list):
        return _row_of(value, row, str(path))
    return value


def _hit(rank: int, hit: SearchResult, with_vectors: bool) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "rank": rank,
        "id": hit.id,
        "score": hit.score,
        "distance": hit.distance,
        "content": hit.content,
        "metadata": hit.metadata,
        "document_id": hit.document_id,
        "chunk_index": hit.chunk_index,
    }
    if hit.vector_rank is not None or hit.text_rank is not None:
        shown["vector_rank"], shown["text_rank"] = hit.vector_rank, hit.text_rank
    if with_vectors:
        shown["vector"] = hit.vector
    return shown


@click.command()
@store_options
@click.option("--vector", "vector_text", metavar="JSON", help="the query vector as a JSON list")
@click.option(
    "--query-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="read the query vector from this file (.npy, .fvecs, .json, .jsonl)",
)
@click.option("--row", type=int, default=0, show_default=True, help="which row of --query-file")
@click.option("--like", "like_id", metavar="ID", help="use this stored row's vector")
@click.option("--text", metavar="TEXT", help="full-text query (hybrid with a vector)")
@click.option(
    "-k", "k", type=click.IntRange(1, 10000), default=10, show_default=True, help="rows to return"
)
@click.option("--filter", "filter_text", metavar="JSON", help="a pgvs filter, e.g. '{\"a\": 1}'")
@click.option("--ef-search", type=click.IntRange(1, 1000), default=None, help="HNSW ef_search")
@click.option("--probes", type=click.IntRange(1, 32768), default=None, help="IVFFlat probes")
@click.option("--exact", is_flag=True, help="bypass the vector index (exact results)")
@click.option("--metric", type=metric_choice(), default=None, help="override the table's metric")
@click.option("--vectors", "with_vectors", is_flag=True, help="return the rows' vectors too")
@json_option
def search(
    store: StoreArgs,
    vector_text: str | None,
    query_file: Path | None,
    row: int,
    like_id: str | None,
    text: str | None,
    k: int,
    filter_text: str | None,
    ef_search: int | None,
    probes: int | None,
    exact: bool,
    metric: str | None,
    with_vectors: bool,
    as_json: bool,
) -> int:
    """The k nearest rows to a query vector, or the best --text matches (hybrid with both)."""
    where = parse_filter(filter_text)
    given = [
        name
        for name, value in (
            ("--vector", vector_text),
            ("--query-file", query_file),
            ("--like", like_id),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise _usage(f"give one query vector: {' and '.join(given)} are both set")
    if not given and text is None:
        raise _usage(
            "give a query: --vector JSON, --query-file FILE [--row N], --like ID or --text"
        )
    query: Any = None
    if vector_text is not None:
        query = parse_json_value(vector_text, "--vector")
    elif query_file is not None:
        query = load_query(query_file, row)

    async def go() -> list[SearchResult]:
        async with open_store(store, metric=metric, needs_metric=text is None) as opened:
            vector = query
            if like_id is not None:
                vector = await _stored_vector(opened, like_id)
            if vector is not None:
                _check_dims(opened, vector)
            if vector is None:
                assert text is not None
                return await opened.text_search(text, k, filter=where, include_vectors=with_vectors)
            if text is not None:
                return await opened.hybrid_search(
                    vector,
                    text,
                    k,
                    filter=where,
                    ef_search=ef_search,
                    include_vectors=with_vectors,
                )
            return await opened.search(
                vector,
                k,
                filter=where,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
                include_vectors=with_vectors,
            )

    hits = [_hit(rank, hit, with_vectors) for rank, hit in enumerate(run_async(go()), 1)]
    if as_json:
        emit_json(hits)
        return 0
    columns = ["#", "id", "score", "distance", "content", "metadata"]
    rows = [
        [
            hit["rank"],
            hit["id"],
            f"{hit['score']:.4f}",
            "" if hit["distance"] != hit["distance"] else f"{hit['distance']:.4f}",
            short(hit["content"], 44),
            short(hit["metadata"], 36),
        ]
        for hit in hits
    ]
    print_table(None, columns, rows, right=["#", "score", "distance"])
    if not hits:
        click.echo("no rows matched", err=True)
    return 0


async def _stored_vector(store: AsyncPGVectorStore, like_id: str) -> Any:
    (record,) = await store.get_vectors(typed_ids(store, (like_id,)), include_metadata=False)
    if not record.found:
        raise CommandError(f"--like {like_id}: no row with that id in {store.config.table_name}")
    return record.vector


def _check_dims(store: AsyncPGVectorStore, vector: Any) -> None:
    if store.config.vector_type not in ("vector", "halfvec"):
        return
    try:
        size = len(vector)
    except TypeError:
        raise _usage("the query vector must be a list of numbers") from None
    if size != store.config.dimensions:
        raise _usage(
            f"the query vector has {size} dimensions; {store.config.table_name} stores "
            f"{store.config.dimensions}"
        )
