"""The embedded server helper: TCP on loopback, extension present, reuse, stop and kill by PID."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from pgvs.server import EmbeddedServer


async def test_server_listens_on_loopback_with_vector_extension(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        assert version is not None
        assert await conn.fetchval("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector") == 1.0
    finally:
        await conn.close()


@pytest.mark.slow
def test_reuse_stop_and_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = EmbeddedServer(data_dir)
    dsn = first.start()
    try:
        pid = first.status().pid
        assert pid is not None
        # A second handle on the same directory finds the running server instead of starting one.
        second = EmbeddedServer(data_dir)
        assert second.start() == dsn
        assert second.status().pid == pid

        second.kill()
        assert not first.status().running
        # Restart after a crash: the data directory recovers and the extension is still there.
        dsn_after_crash = first.start()
        assert first.status().running
        assert first.status().pid != pid
        assert dsn_after_crash.startswith("postgresql://postgres@127.0.0.1:")
    finally:
        first.stop()
    assert not first.status().running
    assert data_dir.exists(), "a named data directory is kept after stop"


def test_command_line_round_trip(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "cli")

    def run(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pgvs.server", action, "--data-dir", data_dir],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    started = run("start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip().startswith("postgresql://postgres@127.0.0.1:")
    assert "running" in run("status").stdout
    assert run("stop").returncode == 0
    status = run("status")
    assert status.returncode == 3
    assert "stopped" in status.stdout
