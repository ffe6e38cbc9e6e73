"""What both compat layers share: bools as numbers, and the codec set with compat decoders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from ..codecs import Decoder, Encoder, codec_functions, install_codecs
from ..errors import ValidationError
from ..types._common import is_bool, numpy_if_array


def bools_as_numbers(value: Any) -> Any:
    """``value`` with bools turned into 1.0 / 0.0 (pgvector-python stores them so), or
    ``value`` itself when it holds none. Only called once pgvs has refused the value."""
    np = numpy_if_array(value)
    if np is not None:
        return value.astype(np.float32) if value.dtype.kind == "b" else value
    if isinstance(value, list | tuple) and any(map(is_bool, value)):
        return [float(item) if is_bool(item) else item for item in value]
    return value


def bools_allowed(encode: Encoder) -> Encoder:
    """``encode``, also taking bools as 1.0 / 0.0; values without bools cost nothing extra."""

    def encode_with_bools(value: Any) -> bytes:
        try:
            return encode(value)
        except ValidationError:
            converted = bools_as_numbers(value)
            if converted is value:
                raise
            return encode(converted)

    return encode_with_bools


async def install(
    conn: asyncpg.Connection[Any],
    schema: str | None,
    decoders: dict[str, Decoder],
    wrap_encoder: Callable[[Encoder], Encoder] | None = None,
) -> None:
    """pgvs' codecs for ``vector``, ``halfvec`` and ``sparsevec`` with the given decoders (and
    encoders wrapped by ``wrap_encoder``); ``bit``/``varbit`` stay asyncpg's, as both libraries
    leave them."""
    functions = dict(codec_functions())
    for name, decoder in decoders.items():
        encoder = functions[name][0]
        functions[name] = (wrap_encoder(encoder) if wrap_encoder else encoder, decoder)
    await install_codecs(conn, functions, schema=schema, bit=False)
