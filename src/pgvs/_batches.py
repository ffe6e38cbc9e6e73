"""Bulk ingest, the pure half: records to batches, batches to binary COPY data.

Nothing here does I/O (:mod:`pgvs.store._ingest_pipeline` sequences it with the server; the
statements are :mod:`pgvs._copy_sql`'s). A batch is validated
with the same rules as ``add_vectors`` (the checks are :mod:`pgvs._rows`'s own functions, with
fast paths that accept only what those functions accept and defer everything else to them), and
encoded into PostgreSQL's binary ``COPY`` format in one pass: the fixed-width part of every row
(field count, domain, id, the vector) is one numpy array, the rest is joined per row.

Identifiers reach SQL only through :func:`pgvs._sql.quote_ident` (via :class:`Statements`);
values are ``$n`` parameters or COPY data.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _rows
from ._copy_sql import IngestSQL
from .config import StoreConfig
from .errors import ValidationError

__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "BatchEncoder",
    "EncodedBatch",
    "RawBatch",
    "json_text",
    "records_to_batch",
]

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_INT32 = struct.Struct(">i")
_JSONB_FIELD = struct.Struct(">iB")  # length, then jsonb's binary format version (1)
_INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1)}
_INT_NAMES = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
_INT_FORMATS = {"int2": ">h", "int4": ">i", "int8": ">q"}
_ROW_PREFIX = re.compile(r"^row (\d+): ")
_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

# Logical columns a record may carry, in the order of a record tuple (the order of pgvs.Record).
RECORD_FIELDS = ("id", "vector", "metadata", "content", "document_id", "chunk_index")
_RECORD_KEYS = {name: name for name in RECORD_FIELDS} | {"embedding": "vector"}


# -- batches -------------------------------------------------------------------------------------


@dataclass
class RawBatch:
    """Up to ``batch_size`` input rows, column by column, before validation.

    ``first_row`` is the position of the batch's first row in the whole ingest; errors name rows
    by that global position. An id of None is generated (``ids is None``: all of them).
    """

    index: int
    first_row: int
    count: int
    vectors: Any
    ids: Sequence[Any] | None
    metadata: Sequence[Any] | None = None
    contents: Sequence[Any] | None = None
    document_ids: Sequence[Any] | None = None
    chunk_indexes: Sequence[Any] | None = None

    @property
    def row_range(self) -> tuple[int, int]:
        """``(first, last + 1)`` of the input rows in this batch."""
        return (self.first_row, self.first_row + self.count)


@dataclass
class EncodedBatch:
    """A validated batch as binary COPY data: ``stream`` holds every kept row.

    Rows are the input rows minus those replaced by a later duplicate of their id within the
    batch (last wins, as in ``add_vectors``). ``keys[i]`` is the normalised id of the i-th kept
    row and ``offsets[i]:offsets[i + 1]`` its bytes in ``stream`` (between the COPY header and
    trailer).
    """

    index: int
    first_row: int
    count: int
    keys: list[Any]
    stream: bytes
    offsets: list[int]
    encode_seconds: float = 0.0
    keyset: frozenset[Any] = frozenset()
    input_keys: list[Any] | None = None  # every input row's id, duplicates too (if collected)

    @property
    def row_range(self) -> tuple[int, int]:
        return (self.first_row, self.first_row + self.count)

    @property
    def rows(self) -> int:
        return len(self.keys)

    def subset(self, positions: Sequence[int]) -> bytes:
        """Complete COPY data for some of the kept rows (by position in ``keys``)."""
        view = memoryview(self.stream)
        offsets = self.offsets
        parts: list[Any] = [COPY_HEADER]
        parts.extend(view[offsets[i] : offsets[i + 1]] for i in positions)
        parts.append(COPY_TRAILER)
        return b"".join(parts)


def _record_values(record: Any, row: int) -> tuple[Any, ...]:
    """``(id, vector, metadata, content, document_id, chunk_index)`` of one input record."""
    if isinstance(record, Mapping):
        unknown = [key for key in record if key not in _RECORD_KEYS]
        if unknown:
            raise ValidationError(
                f"row {row}: unknown record key(s) {', '.join(map(repr, unknown))}; valid keys: "
                f"{', '.join(RECORD_FIELDS)} (or 'embedding' for 'vector')"
            )
        if "vector" in record and "embedding" in record:
            raise ValidationError(f"row {row}: record has both 'vector' and 'embedding'")
        vector = record.get("vector", record.get("embedding"))
        if vector is None:
            raise ValidationError(f"row {row}: record has no 'vector'")
        get = record.get
        return (
            get("id"),
            vector,
            get("metadata"),
            get("content"),
            get("document_id"),
            get("chunk_index"),
        )
    if isinstance(record, tuple):
        if not 2 <= len(record) <= len(RECORD_FIELDS):
            raise ValidationError(
                f"row {row}: a record tuple has 2 to {len(RECORD_FIELDS)} items "
                f"({', '.join(RECORD_FIELDS)}), got {len(record)}"
            )
        if record[1] is None:
            raise ValidationError(f"row {row}: record has no vector")
        return record + (None,) * (len(RECORD_FIELDS) - len(record))
    from .results import Record  # a stored row read back from a store: copy it as it is

    if isinstance(record, Record):
        if not record.found:
            raise ValidationError(f"row {row}: Record {record.id!r} was not found (no vector)")
        return (
            record.id,
            record.vector,
            record.metadata,
            record.content,
            record.document_id,
            record.chunk_index,
        )
    raise ValidationError(
        f"row {row}: a record must be a dict, a tuple ({', '.join(RECORD_FIELDS)}) or a "
        f"pgvs.Record, got {type(record).__name__}",
        hint="To ingest bare vectors, pass a 2-D numpy array (with ids=..., metadata=... "
        "as keywords).",
    )


def records_to_batch(records: Sequence[Any], *, index: int, first_row: int) -> RawBatch:
    """Turn input records (dicts, tuples or pgvs Records) into a column-wise RawBatch."""
    columns: list[list[Any]] = [[] for _ in RECORD_FIELDS]
    appends = [column.append for column in columns]
    for offset, record in enumerate(records):
        for append, value in zip(appends, _record_values(record, first_row + offset), strict=True):
            append(value)
    ids, vectors, metadata, contents, document_ids, chunk_indexes = columns
    return RawBatch(
        index=index,
        first_row=first_row,
        count=len(records),
        vectors=vectors,
        ids=ids,
        metadata=metadata,
        contents=contents,
        document_ids=document_ids,
        chunk_indexes=chunk_indexes,
    )


# -- metadata --------------------------------------------------------------------------------------


def _json_serializer() -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))``.

    That call builds a JSONEncoder and its C scanner every time (~5x the cost of the
    serialisation itself for a small document): take the C encoder once when CPython has it.
    Without circular-reference markers a cyclic document ends in RecursionError, which sends
    it to encode_json (whose depth limit then rejects it).
    """
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - PyPy and friends
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    scan = make(None, None, encoder.encode_basestring, None, ":", ",", False, False, False)
    join = "".join

    def dumps(value: Any) -> str:
        return join(scan(value, 0))

    return dumps


_dumps = _json_serializer()
_STR_ONLY = frozenset({str})


def json_text(value: Any, row: int) -> str:
    """Exactly :func:`pgvs._rows.encode_json`, with a fast path for the common document.

    ``encode_json`` walks the document in Python (types, key types, NUL characters, depth) and
    then serialises it. The fast path lets the C serialiser do the walk: it returns only for a
    plain ``dict`` that serialises, whose keys are all ``str``, with no nested object (at most
    one ``{`` in the text, so no key below the top level), at most 60 ``[`` (so the nesting
    stays under encode_json's limit of 64) and no ``\\u0000`` escape (no NUL character). For
    such a document encode_json accepts and returns the same text; every other one (including
    every invalid one) goes to encode_json itself, so the rules and messages are its own.
    """
    if value is None:
        return "{}"
    if type(value) is dict:
        try:
            text = _dumps(value)
        except (ValueError, TypeError, RecursionError):
            return _rows.encode_json(value, row)
        if (
            text.count("{") == 1
            and text.count("[") <= 60
            and "\\u0000" not in text
            and set(map(type, value)) <= _STR_ONLY
        ):
            return text
    return _rows.encode_json(value, row)


# -- encoding --------------------------------------------------------------------------------------


def _renumbered(exc: ValidationError, first_row: int, listed: bool) -> ValidationError:
    """A vectors_to_matrix error with batch-local row numbers given global ones."""
    message = str(exc).split("\nHint: ")[0]
    match = _ROW_PREFIX.match(message)
    if match:
        message = f"row {first_row + int(match.group(1))}: " + message[match.end() :]
    elif listed and message.startswith("vectors have "):
        # Said of a list's first row: name it.
        message = f"row {first_row}: vector " + message[len("vectors ") :].replace(
            "have", "has", 1
        ).replace("the store expects", "expected", 1)
    return ValidationError(message, hint=exc.hint)


def _parallel(name: str, values: Sequence[Any] | None, count: int) -> Sequence[Any] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence | np.ndarray):
        raise ValidationError(f"{name} must be a list with one entry per vector")
    if len(values) != count:
        raise ValidationError(f"{name} has {len(values)} entries but there are {count} vectors")
    return values


class BatchEncoder:
    """Validates RawBatches and turns them into EncodedBatches (binary COPY rows)."""

    def __init__(
        self,
        config: StoreConfig,
        plan: IngestSQL,
        coerce_vector: Callable[[Any], Any],
    ) -> None:
        self.config = config
        self.plan = plan
        self.coerce_vector = coerce_vector
        self.collect_input_keys = False  # keep every row's normalised id (add_vectors' result)
        self.dense = config.vector_type in ("vector", "halfvec")
        self.half = config.vector_type == "halfvec"
        types = {c.logical: c.typname for c in plan.columns}
        self.id_typname = types["id"] if config.id_type == "bigint" else ""
        self.chunk_typname = types.get("chunk_index", "int4") or "int4"
        self.has = {c.logical for c in plan.columns}
        nfields = struct.pack(">h", len(plan.columns))
        if "domain_id" in self.has:
            domain = plan.domain.encode()
            self.prefix = nfields + _INT32.pack(len(domain)) + domain
        else:
            self.prefix = nfields

    # -- columns -------------------------------------------------------------------------------

    def _ids(self, raw: RawBatch, generate: Callable[[int], list[Any]]) -> list[Any]:
        count, first = raw.count, raw.first_row
        values: Sequence[Any] | None = _parallel("ids", raw.ids, count)
        if values is None:
            values = generate(count)
        elif any(value is None for value in values):
            missing = [row for row, value in enumerate(values) if value is None]
            fresh = iter(generate(len(missing)))
            filled = list(values)
            for row in missing:
                filled[row] = next(fresh)
            values = filled
        id_type = self.config.id_type
        if id_type == "bigint" and isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            if values.ndim != 1:
                raise ValidationError("ids must be a 1-D array")
            keys: list[Any] = values.tolist()
            too_big = [row for row, key in enumerate(keys) if not -(2**63) <= key < 2**63]
            if too_big:
                _rows.normalise_id(keys[too_big[0]], id_type, first + too_big[0])
            return keys
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise ValidationError("ids must be a list of ids")
        normalise = _rows.normalise_id
        if id_type == "uuid":
            out = []
            canonical = _UUID_TEXT.fullmatch
            for row, value in enumerate(values):
                # A canonical (or upper-case) uuid string normalises to its lower case; anything
                # else (braces, urn:, no hyphens, UUID objects, junk) goes through normalise_id,
                # which decides and words the error.
                if type(value) is str and canonical(value):
                    out.append(value.lower())
                else:
                    out.append(normalise(value, id_type, first + row))
            return out
        return [normalise(value, id_type, first + row) for row, value in enumerate(values)]

    def _id_bytes(self, keys: list[Any]) -> tuple[int, bytes]:
        """(width, data) of the fixed-width ids of the kept rows."""
        if self.config.id_type == "uuid":
            return 16, bytes.fromhex("".join(keys).replace("-", ""))
        typname = self.id_typname or "int8"
        if typname in _INT_RANGES:
            low, high = _INT_RANGES[typname]
            for key in keys:
                if not low <= key <= high:
                    raise ValidationError(
                        f"id {key} does not fit in the id column's type ({_INT_NAMES[typname]})"
                    )
        array = np.asarray(keys, dtype=np.int64).astype(_INT_FORMATS[typname])
        return array.dtype.itemsize, array.tobytes()

    def _text_fields(self, values: Sequence[Any], field_name: str, first: int) -> list[bytes]:
        text = _rows._text
        pack = _INT32.pack
        out: list[bytes] = []
        append = out.append
        for row, value in enumerate(values):
            if value is None:
                append(_NULL)
                continue
            if type(value) is not str or "\x00" in value:
                value = text(value, first + row, field_name)  # the rule, and its error
            try:
                data = value.encode()
            except UnicodeEncodeError:
                raise ValidationError(
                    f"row {first + row}: {field_name} is not valid Unicode "
                    "(it contains a lone surrogate)"
                ) from None
            append(pack(len(data)) + data)
        return out

    def _metadata_fields(self, values: Sequence[Any] | None, count: int, first: int) -> list[bytes]:
        if values is None:
            empty = _JSONB_FIELD.pack(3, 1) + b"{}"
            return [empty] * count
        pack = _JSONB_FIELD.pack
        out: list[bytes] = []
        for row, value in enumerate(values):
            try:
                data = json_text(value, first + row).encode()
            except UnicodeEncodeError:
                # The fast path let it through: encode_json's walk names the key or path.
                _rows.encode_json(value, first + row)
                raise ValidationError(  # pragma: no cover - encode_json refuses it first
                    f"row {first + row}: metadata is not valid Unicode (it contains a lone "
                    "surrogate)"
                ) from None
            out.append(pack(len(data) + 1, 1) + data)
        return out

    def _chunk_fields(self, values: Sequence[Any], first: int) -> list[bytes]:
        typname = self.chunk_typname
        fmt = struct.Struct(">i" + _INT_FORMATS.get(typname, ">i")[1:])
        width = fmt.size - 4
        low, high = _INT_RANGES.get(typname, (-(2**31), 2**31 - 1))
        check = _rows._chunk_index
        cache: dict[int, bytes] = {}  # chunk indexes repeat: encode each once
        out: list[bytes] = []
        append = out.append
        for row, value in enumerate(values):
            if type(value) is int:
                field = cache.get(value)
                if field is not None:
                    append(field)
                    continue
            number = check(value, first + row)
            if number is None:
                append(_NULL)
                continue
            if not low <= number <= high:
                raise ValidationError(
                    f"row {first + row}: chunk_index {number} does not fit in the column's type "
                    f"({_INT_NAMES[typname]})"
                )
            field = fmt.pack(width, number)
            if type(value) is int:
                cache[value] = field
            append(field)
        return out

    def _optional(self, logical: str, values: Sequence[Any] | None) -> bool:
        """Whether the column is sent; refuses values for a column the table does not have."""
        if logical in self.has:
            return True
        if values is not None and any(value is not None for value in values):
            plural = {"content": "contents", "document_id": "document_ids"}.get(
                logical, "chunk_indexes"
            )
            raise ValidationError(f"{plural} were given but the table has no {logical} column")
        return False

    # -- the batch -----------------------------------------------------------------------------

    def encode(self, raw: RawBatch, generate_ids: Callable[[int], list[Any]]) -> EncodedBatch:
        """Validate every row of ``raw`` (earlier duplicates too) and encode the kept rows."""
        count, first = raw.count, raw.first_row
        metadata = _parallel("metadata", raw.metadata, count)
        contents = _parallel("contents", raw.contents, count)
        document_ids = _parallel("document_ids", raw.document_ids, count)
        chunk_indexes = _parallel("chunk_indexes", raw.chunk_indexes, count)

        # Vectors first: their errors are the likeliest, and the cheapest to find.
        listed = not isinstance(raw.vectors, np.ndarray)
        matrix: npt.NDArray[np.float32] | None = None
        wires: list[bytes] = []
        try:
            if self.dense:
                matrix = _rows.vectors_to_matrix(
                    raw.vectors, self.config.dimensions, half=self.half
                )
                matrix = _rows.directed(self.config, matrix)
                if matrix.shape[0] != count:
                    raise ValidationError(
                        f"there are {matrix.shape[0]} vectors but {count} rows in the batch"
                    )
            else:
                values = _rows.encode_vectors(self.config, raw.vectors, self.coerce_vector)
                wires = [v if isinstance(v, bytes) else v.to_binary() for v in values]
        except ValidationError as exc:
            raise _renumbered(exc, first, listed) from None

        keys = self._ids(raw, generate_ids)
        last_row_of: dict[Any, int] = {}
        for row, key in enumerate(keys):
            last_row_of[key] = row
        kept: list[int] | None = None
        if len(last_row_of) != count:
            kept = sorted(last_row_of.values())

        def pick(values: list[bytes]) -> list[bytes]:
            return values if kept is None else [values[row] for row in kept]

        kept_keys = keys if kept is None else [keys[row] for row in kept]

        variable: list[list[bytes]] = []
        for column in self.plan.columns:
            logical = column.logical
            if logical == "id" and self.config.id_type == "text":
                variable.append(pick(self._text_fields(keys, "id", first)))
            elif logical == "embedding" and not self.dense:
                pack = _INT32.pack
                variable.append(pick([pack(len(wire)) + wire for wire in wires]))
            elif logical == "metadata":
                variable.append(pick(self._metadata_fields(metadata, count, first)))
            elif logical in ("content", "document_id"):
                given = contents if logical == "content" else document_ids
                if given is None:
                    variable.append([_NULL] * len(kept_keys))
                else:
                    variable.append(pick(self._text_fields(given, logical, first)))
            elif logical == "chunk_index":
                if chunk_indexes is None:
                    variable.append([_NULL] * len(kept_keys))
                else:
                    variable.append(pick(self._chunk_fields(chunk_indexes, first)))
        for logical, given in (
            ("content", contents),
            ("document_id", document_ids),
            ("chunk_index", chunk_indexes),
        ):
            self._optional(logical, given)

        if matrix is not None and kept is not None:
            matrix = matrix[kept]
        fixed, width = self._fixed_part(kept_keys, matrix)
        # One join over every piece of every row: the stream is copied once, and each row's
        # offset follows from the lengths.
        lengths: Any = itertools.repeat(width, len(kept_keys))
        for fields in variable:
            lengths = map(int.__add__, lengths, map(len, fields))
        offsets = list(itertools.accumulate(lengths, initial=len(COPY_HEADER)))
        pieces: list[Any] = [COPY_HEADER]
        pieces.extend(itertools.chain.from_iterable(zip(fixed, *variable, strict=True)))
        pieces.append(COPY_TRAILER)
        stream = b"".join(pieces)
        return EncodedBatch(
            index=raw.index,
            first_row=first,
            count=count,
            keys=kept_keys,
            stream=stream,
            offsets=offsets,
            keyset=frozenset(kept_keys),
            input_keys=keys if self.collect_input_keys else None,
        )

    def _fixed_part(
        self, keys: list[Any], matrix: npt.NDArray[np.float32] | None
    ) -> tuple[Sequence[Any], int]:
        """The fixed-width head of every kept row (field count, domain, id, dense vector)."""
        count = len(keys)
        prefix = self.prefix
        id_width, id_data = (0, b"") if self.config.id_type == "text" else self._id_bytes(keys)
        itemsize = 2 if self.half else 4
        dim = self.config.dimensions
        width = len(prefix) + (4 + id_width if id_width else 0)
        if matrix is not None:
            width += 8 + itemsize * dim
        block = np.empty((count, width), dtype=np.uint8)
        block[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        at = len(prefix)
        if id_width:
            block[:, at : at + 4] = np.frombuffer(_INT32.pack(id_width), dtype=np.uint8)
            block[:, at + 4 : at + 4 + id_width] = np.frombuffer(id_data, dtype=np.uint8).reshape(
                count, id_width
            )
            at += 4 + id_width
        if matrix is not None:
            head = struct.pack(">iHH", 4 + itemsize * dim, dim, 0)
            block[:, at : at + 8] = np.frombuffer(head, dtype=np.uint8)
            at += 8
            block[:, at:].view(">f2" if self.half else ">f4")[...] = matrix
        view = memoryview(block.data).cast("B")
        return [view[start : start + width] for start in range(0, count * width, width)], width


def generated_uuids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]
