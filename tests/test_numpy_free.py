"""The wire types and codecs work where numpy cannot be imported at all.

The check runs in a fresh interpreter whose import system refuses numpy; it first proves that
``import numpy`` really fails there, so the test cannot pass by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    r"""
    import asyncio
    import importlib.abc
    import math
    import os
    import sys


    class BlockNumpy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "numpy" or name.startswith("numpy."):
                raise ImportError(f"numpy is blocked here ({name})")
            return None


    if os.environ["PGVS_NUMPY_BLOCK"] == "finder":
        sys.meta_path.insert(0, BlockNumpy())
    else:
        sys.modules["numpy"] = None  # the other common way to make an import fail
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("FAIL: numpy could still be imported")

    import pgvs.codecs
    import pgvs.types
    from pgvs.errors import ValidationError
    from pgvs.types import Bit, HalfVector, SparseVector, Vector

    # Every type, built and taken apart without numpy.
    vector = Vector([1, 2.5, -3e-05])
    assert vector.to_binary() == b"\x00\x03\x00\x00?\x80\x00\x00@ \x00\x00\xb7\xfb\xa8\x82"
    assert vector.to_text() == "[1,2.5,-3e-05]"
    assert Vector.from_text(vector.to_text()) == vector
    assert Vector.from_binary(vector.to_binary()) == vector
    assert Vector.from_float_base64("AACAPwAAAEAAAEBA").to_list() == [1.0, 2.0, 3.0]
    assert Vector.from_matrix([[1, 2], [3, 4]])[1] == Vector([3, 4])
    half = HalfVector([1, 2, 65519])
    assert half.to_text() == "[1,2,65504]"
    assert HalfVector.from_binary(half.to_binary()) == half
    sparse = SparseVector({2: 2.0, 0: 1.5, 3: 0.0}, dim=5)
    assert sparse.to_text() == "{1:1.5,3:2}/5"
    assert SparseVector.from_binary(sparse.to_binary()) == sparse == SparseVector([1.5, 0, 2, 0, 0])
    bit = Bit("101100111")
    assert bit.to_binary() == b"\x00\x00\x00\x09\xb3\x80"
    assert Bit.from_text(bit.to_text()) == Bit.from_binary(bit.to_binary()) == bit
    assert "dim=768" in repr(Vector([0.5] * 768))
    for bad in ([1.0, math.nan], [1e39], [True], ["1"]):
        try:
            Vector(bad)
        except ValidationError:
            pass
        else:
            raise SystemExit(f"FAIL: {bad!r} was accepted")
    try:
        vector.to_numpy()
    except ImportError:
        pass
    else:
        raise SystemExit("FAIL: to_numpy() worked without numpy")
    # scipy is optional too (and cannot load without numpy): the package root imports, and
    # only to_coo() needs it.
    import pgvs

    assert pgvs.SparseVector is SparseVector
    try:
        sparse.to_coo()
    except ImportError as exc:
        assert "needs scipy" in str(exc), exc
    else:
        raise SystemExit("FAIL: to_coo() worked without scipy")


    async def through_the_server(dsn):
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await pgvs.codecs.register_vector(conn, bit=True)
            assert await conn.fetchval("SELECT $1::vector::text", vector) == vector.to_text()
            pair = await conn.fetchval("SELECT $1::vector[]", [vector, Vector([1, 2])])
            assert pair == [vector, Vector([1, 2])]
            assert await conn.fetchval("SELECT $1::vector::text", [1, 2]) == "[1,2]"
            assert await conn.fetchval("SELECT '[1,2.5,-3e-05]'::vector") == vector
            assert await conn.fetchval("SELECT $1::halfvec::text", half) == half.to_text()
            assert await conn.fetchval("SELECT '[1,2,65504]'::halfvec") == half
            assert await conn.fetchval("SELECT $1::sparsevec::text", sparse) == sparse.to_text()
            assert await conn.fetchval("SELECT '{1:1.5,3:2}/5'::sparsevec") == sparse
            assert await conn.fetchval("SELECT $1::bit(9)::text", bit) == bit.to_text()
            assert await conn.fetchval("SELECT B'101100111'::varbit") == bit
            try:
                await pgvs.codecs.register_vector(conn, numpy=True)
            except ImportError:
                pass
            else:
                raise SystemExit("FAIL: numpy=True registered without numpy")
        finally:
            await conn.close()


    asyncio.run(through_the_server(os.environ["PGVS_NUMPY_FREE_DSN"]))

    loaded = sorted(
        name
        for name, module in sys.modules.items()
        if module is not None and name.split(".")[0] in ("numpy", "scipy")
    )
    assert not loaded, loaded
    print("NUMPY-FREE OK")
    """
)


@pytest.mark.parametrize("block", ["finder", "none-entry"])
def test_types_and_codecs_work_without_numpy(pg_dsn: str, block: str) -> None:
    env = {**os.environ, "PGVS_NUMPY_FREE_DSN": pg_dsn, "PGVS_NUMPY_BLOCK": block}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("NUMPY-FREE OK"), result.stdout + result.stderr
