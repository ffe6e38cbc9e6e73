"""The package root: every public name resolves, and importing it loads no numpy."""

from __future__ import annotations

import subprocess
import sys

import pgvs


def test_every_public_name_resolves() -> None:
    for name in pgvs.__all__:
        assert getattr(pgvs, name) is not None, name
    assert sorted(pgvs.__all__) == pgvs.__all__


def test_root_import_loads_no_numpy() -> None:
    code = (
        "import sys, pgvs\n"
        "pgvs.Vector, pgvs.HalfVector, pgvs.SparseVector, pgvs.Bit, pgvs.register_vector\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        "pgvs.AsyncPGVectorStore\n"
        "assert 'numpy' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
