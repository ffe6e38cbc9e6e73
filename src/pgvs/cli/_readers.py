"""Input files of ``pgvs ingest``, read as streams: nothing holds more than a chunk of a file.

Formats:

- ``.npy``: a 2-D array, memory-mapped and read batch by batch. Its **sidecar** is a JSON Lines
  file whose line *i* describes row *i* (keys ``id``, ``content``, ``metadata``,
  ``document_id``, ``chunk_index``; no embedding): ``X.jsonl`` or ``X.jsonl.gz`` next to
  ``X.npy`` is used when present, ``--sidecar FILE`` names another, ``--no-sidecar`` ignores it.
- ``.fvecs``: the TEXMEX layout (per vector an int32 dimension, then that many float32),
  memory-mapped; every header is checked before anything is written.
- JSON Lines (``.jsonl``, ``.ndjson``, ``.json``, each optionally ``.gz``; ``-`` is stdin): one
  object per line, ``{"id", "embedding" (or "vector"), "content", "metadata", "document_id",
  "chunk_index"}``; every key but the embedding is optional. ``--field content=text`` reads a
  logical field from another key, ``--ignore-key`` drops one; any other key is a bad line.

A row without an id gets one from its position, so a re-run rewrites the same rows: the 0-based
row (``.npy``, ``.fvecs``) or line (JSON Lines) number plus ``--id-start``; as a number for
bigint tables, its decimal text for text ids, a UUID derived from it for uuid tables.

A bad line (not JSON, no embedding, wrong dimension, a non-finite value, a wrong id type ...)
raises :class:`BadInput` naming the file and line, which stops the ingest before its batch is
sent, or with ``skip_bad`` is counted and skipped. Checks the store makes itself (it validates
every row again) are reported by the store's row number, which :meth:`Input.locate` turns back
into the file's line.
"""

from __future__ import annotations

import gzip
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, overload

import click
import numpy as np
import numpy.typing as npt

from ..errors import ValidationError
from ._common import EXIT_USAGE, CommandError

__all__ = ["BadInput", "BadLine", "Input", "Options", "PositionIds", "detect_format", "open_input"]

# The namespace of UUIDs derived from positions (uuid5): fixed, so re-runs derive the same ids.
_POSITION_NAMESPACE = uuid.UUID("4c5b8f0e-3c1d-5e59-9a57-6b0d2f7c1a10")
_FIELDS = ("id", "embedding", "content", "metadata", "document_id", "chunk_index")
_MAX_FLOAT32 = float(np.finfo(np.float32).max)
_MAX_HALF = 65504.0
_INT32 = 2**31
_INT64 = 2**63
# Rows of an array checked (and copied out of the memory map) at once on the record path.
_CHUNK = 4096
# Bad lines remembered by content (all are counted).
_KEEP_BAD = 20


class BadInput(ValidationError):
    """A line or row of the input that cannot become a row (it names the file and line)."""


@dataclass(frozen=True)
class BadLine:
    where: str  # "FILE: line 12" or "FILE: row 11"
    reason: str


def _position_id(id_type: str, start: int) -> Callable[[int], Any]:
    if id_type == "bigint":
        return lambda position: start + position
    if id_type == "text":
        return lambda position: str(start + position)
    return lambda position: str(uuid.uuid5(_POSITION_NAMESPACE, str(start + position)))


class PositionIds(Sequence[Any]):
    """The ids of rows 0..n-1 derived from their positions, computed as the ingest slices them."""

    def __init__(self, count: int, make: Callable[[int], Any]) -> None:
        self.size = count
        self.make = make

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.make(i) for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self.make(index % self.size)


class _Bad(Exception):
    """One line's problem (becomes BadInput or a skipped line)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _check_dense(value: Any, dims: int, half: bool) -> npt.NDArray[np.float32]:
    if not isinstance(value, list):
        raise _Bad(f"embedding must be a list of numbers, got {type(value).__name__}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Bad("embedding must be a list of numbers") from None
    if array.ndim != 1:
        raise _Bad("embedding must be a flat list of numbers")
    if array.shape[0] != dims:
        raise _Bad(f"embedding has {array.shape[0]} dimensions, the table {dims}")
    finite = np.isfinite(array)
    if not finite.all():
        raise _Bad(f"embedding element {int(np.argmin(finite))} is not finite")
    limit = _MAX_HALF if half else _MAX_FLOAT32
    too_big = np.abs(array) > limit
    if too_big.any():
        kind = "halfvec" if half else "float32"
        raise _Bad(f"embedding element {int(np.argmax(too_big))} is beyond the {kind} range")
    return array.astype(np.float32)


def _check_id(value: Any, id_type: str) -> Any:
    if id_type == "bigint":
        if isinstance(value, bool) or not isinstance(value, int) or not -_INT64 <= value < _INT64:
            raise _Bad(f"id must be an integer for this bigint table, got {value!r}")
        return value
    if isinstance(value, int) and not isinstance(value, bool) and id_type == "text":
        return str(value)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _Bad(f"id must be a non-empty string, got {value!r}")
    if id_type == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            raise _Bad(f"id {value!r} is not a UUID (this table has uuid ids)") from None
    return value


def _check_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise _Bad(f"{name} contains a NUL character")
    return value


def _check_fields(obj: dict[str, Any]) -> tuple[Any, ...]:
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _Bad(f"metadata must be a JSON object, got {type(metadata).__name__}")
    chunk = obj.get("chunk_index")
    if chunk is not None and (
        isinstance(chunk, bool) or not isinstance(chunk, int) or not -_INT32 <= chunk < _INT32
    ):
        raise _Bad(f"chunk_index must be a 32-bit integer, got {chunk!r}")
    return (
        metadata,
        _check_text("content", obj.get("content")),
        _check_text("document_id", obj.get("document_id")),
        chunk,
    )


@dataclass
class Input:
    """One input file, ready for ``store.ingest(input.data, ids=input.ids)``."""

    label: str
    unit: str  # "line" (1-based) or "row" (0-based)
    data: Any = None
    ids: Sequence[Any] | None = None
    total_rows: int | None = None
    total_bytes: int | None = None
    skipped: int = 0
    bad: list[BadLine] = field(default_factory=list)
    read_bytes: Callable[[], int] = lambda: 0
    closers: list[Callable[[], None]] = field(default_factory=list)
    # Positions (lines or rows) that yielded no record, ascending: blank and skipped lines.
    gaps: list[int] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()

    def locate(self, row: int) -> int:
        """The line (or row) of the file that became the ingest's ``row``-th record."""
        position = row + (1 if self.unit == "line" else 0)
        for gap in self.gaps:
            if gap > position:
                break
            position += 1
        return position

    def reject(self, position: int, reason: str, *, skip: bool, where: str | None = None) -> None:
        """A bad line (or row) at ``position``: raise, or count and skip it."""
        where = where or f"{self.label}: {self.unit} {position}"
        if not skip:
            raise BadInput(f"{where}: {reason}")
        self.skipped += 1
        if len(self.bad) < _KEEP_BAD:
            self.bad.append(BadLine(where, reason))
        self.gaps.append(position)


@dataclass(frozen=True)
class Options:
    dims: int
    vector_type: str
    id_type: str
    id_start: int
    renames: Mapping[str, str]  # key in the file -> logical field
    ignored: frozenset[str]
    skip_bad: bool


def _record_fields(obj: Any, options: Options, *, sidecar: bool) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        if key in options.ignored:
            continue
        name = options.renames.get(key, key)
        if name == "vector":
            name = "embedding"
        if name not in _FIELDS or (sidecar and name == "embedding"):
            known = ", ".join(f for f in _FIELDS if not (sidecar and f == "embedding"))
            raise _Bad(
                f"unknown key {key!r} (known: {known}; read a field from it with "
                f"--field NAME={key}, or drop it with --ignore-key {key})"
            )
        fields[name] = value
    return fields


def _open_lines(path: str) -> tuple[IO[bytes], Callable[[], int], int | None, Callable[[], None]]:
    """(binary line stream, bytes read so far, total bytes, close) for a file or ``-``."""
    if path == "-":
        return sys.stdin.buffer, lambda: 0, None, lambda: None
    raw = open(path, "rb")  # noqa: SIM115 - closed by the Input's closers
    total = Path(path).stat().st_size
    if path.endswith(".gz"):
        stream: Any = gzip.GzipFile(fileobj=raw, mode="rb")

        def close() -> None:
            stream.close()
            raw.close()

        return stream, raw.tell, total, close
    return raw, raw.tell, total, raw.close


def _parse_line(raw: bytes) -> Any:
    try:
        # Without the line break, an error at the end of the line gets its column on this line.
        return json.loads(raw.rstrip(b"\r\n"), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _Bad(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Bad(f"not valid JSON: {exc}") from None


def _jsonl(path: str, options: Options) -> Input:
    stream, tell, total, close = _open_lines(path)
    label = "stdin" if path == "-" else path
    source = Input(label=label, unit="line", total_bytes=total, read_bytes=tell, closers=[close])
    make_id = _position_id(options.id_type, options.id_start)
    dense = options.vector_type in ("vector", "halfvec")
    half = options.vector_type == "halfvec"

    def records() -> Iterator[tuple[Any, ...]]:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                source.gaps.append(number)
                continue
            try:
                fields = _record_fields(_parse_line(raw), options, sidecar=False)
                if "embedding" not in fields:
                    raise _Bad("no embedding")
                vector = fields["embedding"]
                if dense:
                    vector = _check_dense(vector, options.dims, half)
                given = fields.get("id")
                row_id = make_id(number - 1) if given is None else _check_id(given, options.id_type)
                metadata, content, document_id, chunk = _check_fields(fields)
            except _Bad as bad:
                source.reject(number, str(bad), skip=options.skip_bad)
                continue
            yield (row_id, vector, metadata, content, document_id, chunk)

    source.data = records()
    return source


def _sidecar_for(path: Path) -> Path | None:
    for suffix in (".jsonl", ".jsonl.gz"):
        candidate = path.with_name(path.name[: -len(path.suffix)] + suffix)
        if candidate.is_file():
            return candidate
    return None


def _array_input(
    label: str, array: Any, options: Options, sidecar: Path | None, total_bytes: int
) -> Input:
    if array.ndim != 2:
        raise CommandError(f"{label} holds a {array.ndim}-d array; ingest takes (rows, dims)")
    if array.shape[1] != options.dims:
        raise CommandError(
            f"{label} holds {array.shape[1]}-d vectors; the table stores {options.dims}",
            hint="Pick the table made for these vectors with --table, or `pgvs init` a new one.",
        )
    rows = int(array.shape[0])
    source = Input(label=label, unit="row", total_rows=rows, total_bytes=total_bytes)
    make_id = _position_id(options.id_type, options.id_start)
    if sidecar is None and not options.skip_bad:
        # The fast path: the store slices the memory map itself, batch by batch.
        source.data = array
        source.ids = PositionIds(rows, make_id)
        return source
    lines: Iterator[bytes] | None = None
    if sidecar is not None:
        stream, _, _, close = _open_lines(str(sidecar))
        source.closers.append(close)
        lines = iter(stream)
    half = options.vector_type == "halfvec"
    limit = _MAX_HALF if half else _MAX_FLOAT32

    def records() -> Iterator[tuple[Any, ...]]:
        for start in range(0, rows, _CHUNK):
            chunk = np.asarray(array[start : start + _CHUNK], dtype=np.float64)
            good: npt.NDArray[np.bool_] = np.asarray(
                np.isfinite(chunk).all(axis=1) & (np.abs(chunk) <= limit).all(axis=1)
            )
            vectors = chunk.astype(np.float32)
            for offset in range(chunk.shape[0]):
                row = start + offset
                fields: dict[str, Any] = {}
                if lines is not None:
                    raw = next(lines, None)
                    if raw is None:
                        raise BadInput(
                            f"{sidecar}: has {row} lines, {label} has {rows} rows: "
                            "a sidecar needs one line per row"
                        )
                    try:
                        fields = _record_fields(_parse_line(raw), options, sidecar=True)
                        given = fields.get("id")
                        if given is not None:
                            fields["id"] = _check_id(given, options.id_type)
                        metadata, content, document_id, chunk_index = _check_fields(fields)
                    except _Bad as bad:
                        source.reject(
                            row, str(bad), skip=options.skip_bad, where=f"{sidecar}: line {row + 1}"
                        )
                        continue
                else:
                    metadata = content = document_id = chunk_index = None
                if not good[offset]:
                    source.reject(
                        row, "a value is not finite or out of range", skip=options.skip_bad
                    )
                    continue
                row_id = fields.get("id")
                yield (
                    make_id(row) if row_id is None else row_id,
                    vectors[offset],
                    metadata,
                    content,
                    document_id,
                    chunk_index,
                )
        if lines is not None and next(lines, None) is not None:
            raise BadInput(f"{sidecar}: has more lines than {label} has rows ({rows})")

    source.data = records()
    return source


def _fvecs(path: Path) -> Any:
    size = path.stat().st_size
    if size < 8 or size % 4:
        raise CommandError(f"{path} is not an .fvecs file ({size} bytes, not whole rows)")
    words = np.memmap(path, dtype="<i4", mode="r")
    dims = int(words[0])
    if dims < 1 or size % (4 * (dims + 1)):
        raise CommandError(
            f"{path} is not an .fvecs file: its first header says {dims} dimensions, which "
            f"does not divide its {size} bytes into rows"
        )
    table = words.reshape(-1, dims + 1)
    for start in range(0, table.shape[0], 65536):  # every header, chunk by chunk
        wrong = np.flatnonzero(table[start : start + 65536, 0] != dims)
        if wrong.size:
            row = start + int(wrong[0])
            raise CommandError(
                f"{path}: row {row}: its header says {int(table[row, 0])} dimensions, "
                f"the first row {dims}"
            )
    return table.view("<f4")[:, 1:]


def detect_format(path: str, given: str | None) -> str:
    if given:
        return given
    name = path.lower().removesuffix(".gz")
    if path == "-":
        return "jsonl"
    for suffix, kind in ((".npy", "npy"), (".fvecs", "fvecs")):
        if path.lower().endswith(suffix):
            return kind
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise CommandError(
        f"cannot tell the format of {path} from its name",
        code=EXIT_USAGE,
        hint="Use --format npy|fvecs|jsonl.",
    )


def open_input(
    path: str, fmt: str, options: Options, *, sidecar: Path | None, no_sidecar: bool
) -> Input:
    """The input at ``path`` (``-``: stdin, JSON Lines) in format ``fmt``."""
    if fmt == "jsonl":
        if sidecar is not None:
            raise CommandError("--sidecar goes with .npy and .fvecs inputs", code=EXIT_USAGE)
        return _jsonl(path, options)
    if path == "-":
        raise CommandError(f"{fmt} input cannot come from stdin", code=EXIT_USAGE)
    file = Path(path)
    if fmt == "npy":
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CommandError(f"{path} is not a readable .npy array: {exc}") from None
    else:
        array = _fvecs(file)
    if array.dtype.kind not in "fiub":
        raise CommandError(f"{path} holds {array.dtype} values, not numbers")
    chosen = None if no_sidecar else (sidecar or _sidecar_for(file))
    if chosen is not None and sidecar is None:
        click.echo(f"pgvs: ids and metadata from the sidecar {chosen}", err=True)
    return _array_input(path, array, options, chosen, file.stat().st_size)
