"""Zero-config use: no connection_string and no DATABASE_URL starts the per-user embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging
    from pgvs import AsyncPGVectorStore

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")

    async def main() -> None:
        async with AsyncPGVectorStore(dimensions=3, table_name="zero_config") as store:
            await store.add_vectors([[1, 2, 3], [3, 2, 1]])
            print("count", await store.count())

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_store_without_dsn_starts_the_embedded_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGVS_TEST_DSN")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data-home")  # the per-user directory, kept private
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "count 2" in done.stdout
        assert "using the embedded PostgreSQL server" in done.stderr
        assert str(tmp_path / "data-home" / "pgvs") in done.stderr
        # A second run finds the server already running and reuses it (rows are still there).
        again = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert "count 4" in again.stdout
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "pgvs.server", "stop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stopped.returncode == 0, stopped.stderr


@pytest.mark.slow
def test_main_job_example_runs(pg_dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": pg_dsn}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "20/20 queries match an exact numpy search" in done.stdout
