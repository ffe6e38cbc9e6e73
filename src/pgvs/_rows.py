"""Validation and encoding of rows before they are written. Pure: no I/O.

A write call is checked whole before anything is sent: every error names the row (its position in
the call) and the field, and nothing is written when any row is bad.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from .config import StoreConfig
from .errors import ValidationError
from .types._native import float32_rows

__all__ = [
    "PreparedRows",
    "directed",
    "encode_json",
    "prepare_rows",
    "unit_rows",
    "validate_ids",
    "vectors_to_matrix",
]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_HALF_MAX = 65504.0
_MAX_JSON_DEPTH = 64
# A lone UTF-16 surrogate (from a bad decode, e.g. errors="surrogateescape") is not text UTF-8
# can carry: the driver would fail mid-statement without naming the row.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PROBLEM = "is not valid Unicode (it contains a lone surrogate)"


@dataclass(frozen=True)
class PreparedRows:
    """Rows ready for the upsert: ids normalised, duplicates resolved (last wins)."""

    ids: list[Any]  # the normalised id of every input row, in input order (duplicates kept)
    columns: dict[str, list[Any]]  # logical column -> one value per written row


def _bad(row: int, field: str, problem: str) -> ValidationError:
    return ValidationError(f"row {row}: {field} {problem}")


# -- ids -----------------------------------------------------------------------------------------


def normalise_id(value: Any, id_type: str, row: int) -> Any:
    if id_type == "uuid":
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                raise _bad(row, "id", f"{value!r} is not a valid UUID") from None
        raise _bad(row, "id", f"must be a UUID or a UUID string, got {type(value).__name__}")
    if id_type == "text":
        if not isinstance(value, str):
            raise _bad(row, "id", f"must be a string, got {type(value).__name__}")
        if not value:
            raise _bad(row, "id", "must not be empty")
        if "\x00" in value:
            raise _bad(row, "id", "contains a NUL character, which PostgreSQL text cannot store")
        return value
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _bad(row, "id", f"must be an integer, got {type(value).__name__}")
    number = int(value)
    if not _INT64[0] <= number <= _INT64[1]:
        raise _bad(row, "id", f"{number} does not fit in bigint")
    return number


def validate_ids(ids: Sequence[Any], id_type: str) -> list[Any]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
        raise ValidationError("ids must be a list of ids")
    return [normalise_id(value, id_type, row) for row, value in enumerate(ids)]


# -- vectors -------------------------------------------------------------------------------------


def _first_nonfinite(matrix: npt.NDArray[Any]) -> tuple[int, int]:
    bad = np.argwhere(~np.isfinite(matrix))[0]
    return int(bad[0]), int(bad[1])


def vectors_to_matrix(
    vectors: Any, dimensions: int, *, half: bool = False, what: str = "row"
) -> npt.NDArray[np.float32]:
    """A C-contiguous float32 ``(n, dimensions)`` matrix, or a ValidationError naming the row.

    ``what="query"`` words the errors for one query vector instead of rows of a write.
    """

    def fail(row: int, problem: str) -> ValidationError:
        if what == "query":
            return ValidationError(f"query vector {problem}")
        return _bad(row, "vector", problem)

    def wrong_size(size: int) -> ValidationError:
        if what == "query":
            return ValidationError(f"query has {size} dimensions, the store expects {dimensions}")
        return ValidationError(f"vectors have {size} dimensions, the store expects {dimensions}")

    if isinstance(vectors, np.ndarray):
        if vectors.ndim != 2:
            raise ValidationError(f"vectors must be a 2-D array, got {vectors.ndim} dimension(s)")
        if vectors.dtype.kind not in "fiu":
            raise ValidationError(f"vectors must hold numbers, got dtype {vectors.dtype}")
        source: npt.NDArray[Any] = vectors
    else:
        if isinstance(vectors, str | bytes) or not isinstance(vectors, Sequence):
            raise ValidationError("vectors must be a 2-D numpy array or a list of vectors")
        # Lists of float lists (JSON's and LangChain's type) in one native pass; anything it
        # cannot vouch for goes the checked way below, which names the row.
        packed = float32_rows(vectors, dimensions) if float32_rows is not None else None
        if packed is not None:
            matrix = np.frombuffer(packed, dtype=np.float32).reshape(len(vectors), dimensions)
            # Beyond halfvec's range: the checked path below names the element.
            if not half or np.abs(matrix).max(initial=0.0) <= _HALF_MAX:
                return matrix
        rows = [_one_vector(item, row, fail) for row, item in enumerate(vectors)]
        if not rows:
            return np.empty((0, dimensions), dtype=np.float32)
        for row, item in enumerate(rows):
            if item.shape[0] != dimensions:
                if row == 0 or what == "query":
                    raise wrong_size(item.shape[0])
                raise fail(row, f"has {item.shape[0]} dimensions, expected {dimensions}")
        source = np.stack(rows)
    if source.shape[1] != dimensions:
        raise wrong_size(source.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        matrix = np.ascontiguousarray(source, dtype=np.float32)
        # A float64 sum of float32 values cannot overflow, so it is finite iff every element
        # is (inf + -inf is NaN: no warning for it, the error below names the element).
        finite = not matrix.size or bool(np.isfinite(matrix.sum(dtype=np.float64)))
    if not finite:
        row, col = _first_nonfinite(matrix)
        original = float(source[row, col])
        if math.isfinite(original):
            raise fail(row, f"element {col} ({original!r}) overflows float32")
        raise fail(row, f"element {col} is {original!r}; NaN and infinity are not allowed")
    if half and matrix.size and np.abs(matrix).max(initial=0.0) > _HALF_MAX:
        row, col = (int(i) for i in np.argwhere(np.abs(matrix) > _HALF_MAX)[0])
        raise fail(
            row,
            f"element {col} ({float(matrix[row, col])!r}) is outside halfvec's range "
            f"of ±{_HALF_MAX:g}",
        )
    return matrix


def directed(
    config: StoreConfig, matrix: npt.NDArray[np.float32], *, what: str = "row"
) -> npt.NDArray[np.float32]:
    """The dense rows a store writes or queries: scaled to unit length with ``normalize`` (a zero
    row refused, naming it: it has no direction to keep). A zero row or query is refused under
    the cosine metric too: its cosine distance to anything is NaN, so a stored one would poison
    every search it appears in and a query's results would be meaningless."""
    if config.normalize:
        return unit_rows(matrix, what=what)
    if config.metric == "cosine" and matrix.size and not matrix.any(axis=1).all():
        _zero_row(int(np.flatnonzero(~matrix.any(axis=1))[0]), "the cosine metric", what)
    return matrix


def _zero_row(row: int, why: str, what: str) -> NoReturn:
    problem = f"is all zeros, which has no direction for {why}"
    if what == "query":
        raise ValidationError(f"query vector {problem}")
    raise _bad(row, "vector", problem)


def unit_rows(matrix: npt.NDArray[np.float32], *, what: str = "row") -> npt.NDArray[np.float32]:
    """Every row scaled to unit length (``normalize=True``); a zero row is a ValidationError
    naming it, since it has no direction to keep."""
    if not matrix.size:
        return matrix
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        _zero_row(int(zero[0]), "normalize=True to scale to unit length", what)
    unit: npt.NDArray[np.float32] = (matrix / norms[:, None]).astype(np.float32)
    return unit


def _one_vector(item: Any, row: int, fail: Any) -> npt.NDArray[Any]:
    to_numpy = getattr(item, "to_numpy", None)
    if to_numpy is not None:
        return np.asarray(to_numpy())
    if isinstance(item, np.ndarray):
        if item.ndim != 1 or item.dtype.kind not in "fiu":
            raise fail(row, f"must be a 1-D numeric array, got shape {item.shape} {item.dtype}")
        return item
    if isinstance(item, str | bytes) or not isinstance(item, Sequence):
        raise fail(row, f"must be a sequence of numbers, got {type(item).__name__}")
    for col, value in enumerate(item):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise fail(row, f"element {col} is {type(value).__name__}, not a number")
    try:
        return np.asarray(item, dtype=np.float64)
    except OverflowError:
        col = next(c for c, v in enumerate(item) if isinstance(v, int) and abs(v) > _DOUBLE_MAX)
        bits = abs(item[col]).bit_length()
        raise fail(row, f"element {col} (an integer of {bits} bits) overflows float32") from None


_DOUBLE_MAX = 1.7976931348623157e308

_VECTOR_HEADER = struct.Struct(">HH")


def encode_matrix(matrix: npt.NDArray[np.float32], *, half: bool = False) -> list[bytes]:
    """pgvector binary wire values (``vector``/``halfvec`` recv layout) for every row at once."""
    header = _VECTOR_HEADER.pack(matrix.shape[1], 0)
    big_endian = matrix.astype(">f2" if half else ">f4")
    return [header + row.tobytes() for row in big_endian]


# -- metadata and text ---------------------------------------------------------------------------


def _check_json(value: Any, row: int, path: str, depth: int) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise _bad(row, "metadata", f"at {path or '<root>'} nests deeper than {_MAX_JSON_DEPTH}")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(
                row,
                "metadata",
                f"at {path or '<root>'} contains a NUL character, which jsonb cannot store",
            )
        if _SURROGATE.search(value):
            raise _bad(row, "metadata", f"at {path or '<root>'} {_SURROGATE_PROBLEM}")
        return
    if isinstance(value, int | np.integer | np.bool_):
        return
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise _bad(
                row, "metadata", f"at {path or '<root>'} is {value!r}; JSON has no NaN or infinity"
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _bad(row, "metadata", f"at {path or '<root>'} has a non-string key {key!r}")
            if "\x00" in key:
                raise _bad(row, "metadata", f"key {key!r} contains a NUL character")
            if _SURROGATE.search(key):
                raise _bad(row, "metadata", f"key {key!r} {_SURROGATE_PROBLEM}")
            _check_json(item, row, f"{path}.{key}" if path else key, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, row, f"{path}[{index}]", depth + 1)
        return
    raise _bad(
        row, "metadata", f"at {path or '<root>'} is a {type(value).__name__}, which is not JSON"
    )


def encode_json(value: Any, row: int) -> str:
    """Check a metadata document and return its JSON text."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise _bad(row, "metadata", f"must be a dict, got {type(value).__name__}")
    _check_json(value, row, "", 0)
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_numpy_scalar
    )


def _numpy_scalar(value: Any) -> Any:
    """numpy's scalars (``np.float32(0.5)``, ``np.int64(3)``, ``np.True_``) as the JSON numbers
    and booleans they are (already checked finite by _check_json)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")  # pragma: no cover - checked first


def _text(value: Any, row: int, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(row, field, f"must be a string or None, got {type(value).__name__}")
    if "\x00" in value:
        raise _bad(row, field, "contains a NUL character, which PostgreSQL text cannot store")
    if _SURROGATE.search(value):
        raise _bad(row, field, _SURROGATE_PROBLEM)
    return value


def _chunk_index(value: Any, row: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _bad(row, "chunk_index", f"must be an integer or None, got {type(value).__name__}")
    number = int(value)
    if not _INT32[0] <= number <= _INT32[1]:
        raise _bad(row, "chunk_index", f"{number} does not fit in integer")
    return number


def _parallel(name: str, values: Sequence[Any] | None, count: int) -> Sequence[Any]:
    if values is None:
        return [None] * count
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence | np.ndarray):
        raise ValidationError(f"{name} must be a list with one entry per vector")
    if len(values) != count:
        raise ValidationError(f"{name} has {len(values)} entries but there are {count} vectors")
    return values


def prepare_rows(
    config: StoreConfig,
    vectors: Any,
    *,
    ids: Sequence[Any] | None,
    metadata: Sequence[Any] | None,
    contents: Sequence[Any] | None,
    document_ids: Sequence[Any] | None,
    chunk_indexes: Sequence[Any] | None,
    generated_ids: Sequence[Any] | None = None,
    encode_vector: Any = None,
) -> PreparedRows:
    """Validate a whole write call; duplicate ids keep their last row (as successive upserts)."""
    wire_vectors = encode_vectors(config, vectors, encode_vector)
    count = len(wire_vectors)
    if ids is None:
        if generated_ids is None:
            raise ValidationError("ids are required for this id_type")
        ids = generated_ids
    checked_ids = validate_ids(_parallel("ids", ids, count), config.id_type)
    metas = _parallel("metadata", metadata, count)
    texts = _parallel("contents", contents, count)
    docs = _parallel("document_ids", document_ids, count)
    chunks = _parallel("chunk_indexes", chunk_indexes, count)

    last_row_of: dict[Any, int] = {}
    for row, value in enumerate(checked_ids):
        last_row_of[value] = row
    kept = sorted(last_row_of.values())

    columns: dict[str, list[Any]] = {
        "id": [checked_ids[row] for row in kept],
        "embedding": [wire_vectors[row] for row in kept],
        "metadata": [encode_json(metas[row], row) for row in kept],
    }
    if config.column("content") is not None:
        columns["content"] = [_text(texts[row], row, "content") for row in kept]
    elif contents is not None:
        raise ValidationError("contents were given but the table has no content column")
    if config.column("document_id") is not None:
        columns["document_id"] = [_text(docs[row], row, "document_id") for row in kept]
    elif document_ids is not None:
        raise ValidationError("document_ids were given but the table has no document_id column")
    if config.column("chunk_index") is not None:
        columns["chunk_index"] = [_chunk_index(chunks[row], row) for row in kept]
    elif chunk_indexes is not None:
        raise ValidationError("chunk_indexes were given but the table has no chunk_index column")
    # Rows dropped as earlier duplicates are still validated: a bad row is an error either way.
    dropped = set(range(count)) - set(kept)
    for row in dropped:
        encode_json(metas[row], row)
        _text(texts[row], row, "content")
        _text(docs[row], row, "document_id")
        _chunk_index(chunks[row], row)
    return PreparedRows(ids=checked_ids, columns=columns)


def encode_vectors(config: StoreConfig, vectors: Any, encode_vector: Any = None) -> list[Any]:
    """Wire values for a batch: bytes for dense types, pgvs objects for bit/sparsevec."""
    if config.vector_type in ("vector", "halfvec"):
        half = config.vector_type == "halfvec"
        matrix = directed(config, vectors_to_matrix(vectors, config.dimensions, half=half))
        return encode_matrix(matrix, half=half)
    if isinstance(vectors, str | bytes) or not isinstance(vectors, Sequence | np.ndarray):
        raise ValidationError("vectors must be a list of vectors")
    encoded: list[Any] = []
    for row, item in enumerate(vectors):
        try:
            value = encode_vector(item)
        except ValueError as exc:
            raise _bad(row, "vector", str(exc)) from None
        size = getattr(value, "dim", None) or getattr(value, "length", None)
        if size != config.dimensions:
            raise _bad(row, "vector", f"has {size} dimensions, expected {config.dimensions}")
        # Wire bytes, not the object: asyncpg would iterate a sized, iterable value as a
        # sub-array of the array parameter.
        encoded.append(value.to_binary())
    return encoded
