"""Codec micro-benchmark: pgvs's asyncpg encode/decode functions against bare numpy.

``python -m bench codecs [--dim 768] [--rows 64] [--passes 40] [--repeat 25]``

Times the exact callables :func:`pgvs.register_vector` installs (``codec_functions``): encoding a
float32 numpy row (validation included; ``encode_impl`` says whether that is the compiled encoder,
``encode_python_us`` / ``halfvec_encode_python_us`` always time the pure-Python ones) and decoding wire bytes into a float32 numpy row, next to
the bare numpy floor (``header + astype('>f4').tobytes()`` / ``np.frombuffer``) timed the same way
in the same run. ``matrix_encode_us`` is the batch path (``Vector.from_matrix`` then the encoder on
each Vector), per row. Each timed run makes ``passes`` passes over ``rows`` distinct rows (64 rows stay
in cache, like a batch being written; raise ``--rows`` to measure rows coming from cold memory).
No server needed.
"""

from __future__ import annotations

import argparse
import platform
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pgvs.codecs import codec_functions
from pgvs.types import SPEEDUPS, Vector
from pgvs.types._numpy import encode_vector_python, halfvec_wire_python

from ._util import emit, interleaved_medians, progress


def _looped(
    function: Callable[[Any], object], items: Sequence[Any], passes: int
) -> Callable[[], None]:
    """A runner calling ``function`` on every item, ``passes`` times over."""
    rounds = range(passes)

    def run() -> None:
        for _ in rounds:
            for item in items:
                function(item)

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench codecs", description=__doc__)
    parser.add_argument("--dim", type=int, default=768, help="vector dimensions (default 768)")
    parser.add_argument("--rows", type=int, default=64, help="distinct rows (default 64)")
    parser.add_argument("--passes", type=int, default=40, help="passes over the rows per run")
    parser.add_argument("--repeat", type=int, default=25, help="timed runs per case")
    args = parser.parse_args(argv)
    dim: int = args.dim
    passes: int = args.passes

    rng = np.random.default_rng(42)
    rows = list(rng.standard_normal((args.rows, dim), dtype=np.float32))
    lists = [row.tolist() for row in rows[:8]]

    encode, decode_numpy = codec_functions(numpy=True)["vector"]
    _, decode_object = codec_functions(numpy=False)["vector"]
    half_encode, half_decode_numpy = codec_functions(numpy=True)["halfvec"]
    wires = [encode(row) for row in rows]
    half_wires = [half_encode(row) for row in rows]

    # The codec must produce exactly what it is compared against, and read it back exactly.
    be_f4 = np.dtype(">f4")
    pack = struct.Struct(">HH").pack
    assert wires[0] == pack(dim, 0) + rows[0].astype(be_f4).tobytes()
    assert all(encode_vector_python(row) == wire for row, wire in zip(rows, wires, strict=True))
    assert all(halfvec_wire_python(r) == w for r, w in zip(rows, half_wires, strict=True))
    assert np.array_equal(decode_numpy(wires[0]), rows[0])

    frombuffer = np.frombuffer

    def numpy_encode(row: np.ndarray[Any, Any]) -> bytes:
        return pack(dim, 0) + row.astype(be_f4).tobytes()

    def numpy_decode(wire: bytes) -> np.ndarray[Any, Any]:
        return frombuffer(wire, be_f4, dim, 4)

    matrix = np.stack(rows)
    batch_rounds = range(passes)

    def batch_encode() -> None:
        # The ingest path: validate and convert a whole matrix at once, then asyncpg encodes
        # each resulting Vector (which already holds its wire bytes).
        for _ in batch_rounds:
            for vector in Vector.from_matrix(matrix):
                encode(vector)

    progress(
        f"bench codecs: dim={dim}, {args.rows} rows x {passes} passes per run, "
        f"{args.repeat} runs per case"
    )
    per_row = interleaved_medians(
        {
            "encode_us": _looped(encode, rows, passes),
            "encode_python_us": _looped(encode_vector_python, rows, passes),
            "decode_us": _looped(decode_numpy, wires, passes),
            "numpy_encode_us": _looped(numpy_encode, rows, passes),
            "numpy_decode_us": _looped(numpy_decode, wires, passes),
            "decode_object_us": _looped(decode_object, wires, passes),
            "halfvec_encode_us": _looped(half_encode, rows, passes),
            "halfvec_encode_python_us": _looped(halfvec_wire_python, rows, max(1, passes // 8)),
            "halfvec_decode_us": _looped(half_decode_numpy, half_wires, passes),
            "matrix_encode_us": batch_encode,
        },
        per_run={
            "halfvec_encode_python_us": len(rows) * max(1, passes // 8),
        },
        default_per_run=len(rows) * passes,
        repeat=args.repeat,
    )
    per_list = interleaved_medians(
        {"encode_list_us": _looped(encode, lists, 2)},
        per_run={},
        default_per_run=len(lists) * 2,
        repeat=max(5, args.repeat // 3),
    )
    # "c": the compiled pgvs._speedups encoder is installed and timed as encode_us;
    # encode_python_us is always the pure-Python encoder (the fallback without a C compiler).
    result: dict[str, object] = {
        "bench": "codecs",
        "dim": dim,
        "encode_impl": "c" if SPEEDUPS else "python",
    }
    result.update({name: round(value, 3) for name, value in {**per_row, **per_list}.items()})
    result["encode_ratio"] = round(per_row["encode_us"] / per_row["numpy_encode_us"], 3)
    result["decode_ratio"] = round(per_row["decode_us"] / per_row["numpy_decode_us"], 3)
    result["rows"] = args.rows
    result["python"] = platform.python_version()
    result["numpy"] = np.__version__
    for name in (
        "encode_us",
        "encode_python_us",
        "numpy_encode_us",
        "decode_us",
        "numpy_decode_us",
    ):
        progress(f"  {name:16s} {per_row[name]:7.3f} µs per {dim}-d vector")
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
