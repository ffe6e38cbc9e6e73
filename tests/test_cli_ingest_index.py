"""``pgvs ingest`` into a fresh store loads first and builds its HNSW index once, and the index
never silently vanishes (src/pgvs/cli/_due.py): the real command as a subprocess, a real server.

* into an empty store the command returns with the index valid and reports the build; into a
  store with rows it says why it loaded into the index instead;
* a bad row: the index is rebuilt over the committed rows before the command fails;
* ``kill -9`` of the command while it loads (the index dropped, recorded in the table's comment):
  a command run while it was alive left the index alone; the next command rebuilds it; or a
  library store (``auto_create_index=True``) rebuilds it, and the next command removes the record;
* ``kill -9`` while its CREATE INDEX runs (held on a lock the test owns, seen in
  pg_stat_activity): the build dies with it; ``pgvs ingest`` run again resumes (loads, builds);
* the comment record keeps and restores what the comment said before (pure).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from pgvs.cli._due import due_of, with_due, without_due

PGVS = Path(sys.executable).parent / "pgvs"
DIM = 16
INIT_COMMENT = 'pgvs:{"metric": "cosine"}'


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def pgvs(*args: str) -> Any:
    return subprocess.run(
        [str(PGVS), *args], capture_output=True, text=True, env=_env(), timeout=300
    )


def ok(*args: str) -> Any:
    done = pgvs(*args)
    assert done.returncode == 0, done.stderr
    return done


def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_for(dsn: str, sql: str, *args: Any, seconds: float = 120) -> Any:
    """Poll a server-side event (a row of pg_stat_activity, a lock gone) until it holds."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        value = fetchval(dsn, sql, *args)
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"never happened: {sql} {args}")


def index_state(dsn: str, table: str) -> bool | None:
    """The store's HNSW index: True valid, False INVALID, None absent."""
    valid: bool | None = fetchval(
        dsn,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = $1",
        f"{table}_embedding_hnsw",
    )
    return valid


def comment(dsn: str, table: str) -> str | None:
    text: str | None = fetchval(dsn, "SELECT obj_description(to_regclass($1), 'pg_class')", table)
    return text


# The ingest lock of a table (src/pgvs/cli/_due.py): held, shared, by every live `pgvs ingest`.
INGEST_LOCK_HELD = """
    SELECT count(*) > 0 FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1
      AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('pgvs:ingest:public.' || $1, 0)
"""


def init(dsn: str, table: str) -> list[str]:
    place = ["--dsn", dsn, "--table", table]
    ok("init", *place, "-d", str(DIM), "--id-type", "text")
    assert index_state(dsn, table) is True  # built on the empty table by init
    assert comment(dsn, table) == INIT_COMMENT
    return place


def lines(count: int, start: int = 0) -> list[str]:
    rng = np.random.default_rng(start)
    return [
        json.dumps({"id": f"r{i}", "embedding": rng.standard_normal(DIM).round(4).tolist()})
        for i in range(start, start + count)
    ]


def start_stdin_ingest(place: list[str]) -> subprocess.Popen[str]:
    """`pgvs ingest -`: it loads what the test writes and waits for more, so the test decides
    when the load ends."""
    return subprocess.Popen(
        [str(PGVS), "ingest", *place, "-", "--batch-size", "100", "--connections", "1", "--json"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def first_commit(child: subprocess.Popen[str], rows: list[str]) -> None:
    assert child.stdin is not None
    assert child.stderr is not None
    child.stdin.write("\n".join(rows) + "\n")
    child.stdin.flush()
    while "committed" not in (line := child.stderr.readline()):
        assert line, "the ingest ended before committing a batch"


# -- the fast path ---------------------------------------------------------------------------


def test_ingest_into_a_fresh_store_builds_the_index_after_the_load(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = init(pg_dsn, table_name)
    np.save(tmp_path / "v.npy", np.random.default_rng(1).standard_normal((3000, DIM)))
    done = ok("ingest", *place, str(tmp_path / "v.npy"), "--json")
    assert "is empty: its index is built once after the load" in done.stderr
    first = json.loads(done.stdout)
    assert first["rows_new"] == 3000
    assert first["index"]["built_after_load"] is True
    assert first["index"]["build_seconds"] > 0
    assert first["index"]["why_not"] is None
    assert index_state(pg_dsn, table_name) is True  # valid when the command returned
    assert comment(pg_dsn, table_name) == INIT_COMMENT  # the record is gone again
    # Loaded without the index: default batches, not the 500 rows an indexed table gets.
    assert first["batches"] < 3000 // 500
    # A store with rows keeps its index (it serves searches) and says so.
    again = ok("ingest", *place, str(tmp_path / "v.npy"), "--id-start", "3000", "-q")
    assert "not built after the load: the table already holds rows" in again.stdout
    assert index_state(pg_dsn, table_name) is True
    assert fetchval(pg_dsn, f'SELECT count(*) FROM "{table_name}"') == 6000
    assert comment(pg_dsn, table_name) == INIT_COMMENT


def test_a_store_without_an_hnsw_index_says_why(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = ["--dsn", pg_dsn, "--table", table_name]
    ok("init", *place, "-d", str(DIM), "--id-type", "text", "--index", "none")
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines(10)) + "\n")
    done = json.loads(ok("ingest", *place, str(path), "--json", "-q").stdout)
    assert done["index"] == {
        "built_after_load": False,
        "build_seconds": None,
        "why_not": "the store's index type is none, not hnsw",
    }


def test_a_bad_row_rebuilds_the_index_before_the_command_fails(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = init(pg_dsn, table_name)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([*lines(250), '{"id": "x", "embedding": [1, 2]}']) + "\n")
    done = pgvs("ingest", *place, str(path), "--batch-size", "100", "--connections", "1", "-q")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "line 251" in done.stderr
    assert "2 batches (200 rows) before it are committed" in done.stderr
    assert "Traceback" not in done.stderr
    assert index_state(pg_dsn, table_name) is True  # rebuilt over the 200 committed rows
    assert fetchval(pg_dsn, f'SELECT count(*) FROM "{table_name}"') == 200
    assert comment(pg_dsn, table_name) == INIT_COMMENT


def test_a_record_only_the_owner_may_remove_is_a_warning_never_the_error(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    """A record left behind (here: written by hand, as a killed ingest leaves it, the index
    since rebuilt) and an ingest by a role that may write rows but not COMMENT: the rows
    and the load's own error are what the command reports; the record stays, said on stderr."""
    place = init(pg_dsn, table_name)
    record = with_due(INIT_COMMENT, {"name": f"{table_name}_embedding_hnsw", "type": "hnsw"})
    role = f"w_{table_name}"

    async def setup() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            statement = await conn.fetchval(
                "SELECT format('COMMENT ON TABLE %I IS %L', $1::text, $2::text)",
                table_name,
                record,
            )
            await conn.execute(statement)
            await conn.execute(f"CREATE ROLE {role} LOGIN")
            await conn.execute(f'GRANT SELECT, INSERT, UPDATE ON "{table_name}" TO {role}')
        finally:
            await conn.close()

    asyncio.run(setup())
    writer = ["--dsn", pg_dsn.replace("postgres@", f"{role}@", 1), "--table", table_name]
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("\n".join(lines(30)) + "\n")
    bad.write_text("\n".join([*lines(5, 100), '{"id": "x", "embedding": [1, 2]}']) + "\n")
    try:
        done = pgvs("ingest", *writer, str(good), "-q")
        assert done.returncode == 0, done.stderr
        assert "could not be removed" in done.stderr
        failed = pgvs("ingest", *writer, str(bad), "-q", "--batch-size", "5")
        assert failed.returncode == 1
        assert "line 6" in failed.stderr  # the load's own error, not the comment's
        assert "unexpected" not in failed.stderr
        assert fetchval(pg_dsn, f'SELECT count(*) FROM "{table_name}"') == 35
        assert due_of(comment(pg_dsn, table_name)) is not None  # left for the owner
        ok("count", *place)  # the owner's next command removes it
        assert comment(pg_dsn, table_name) == INIT_COMMENT
    finally:
        fetchval(pg_dsn, f"DROP OWNED BY {role}")
        fetchval(pg_dsn, f"DROP ROLE {role}")


# -- kill -9 ---------------------------------------------------------------------------------


def test_kill_during_the_load_leaves_the_index_due_and_the_next_command_rebuilds_it(
    pg_dsn: str, table_name: str
) -> None:
    place = init(pg_dsn, table_name)
    child = start_stdin_ingest(place)
    try:
        first_commit(child, lines(150))
        # Between the drop and the build: no index, and the comment records it as due.
        assert index_state(pg_dsn, table_name) is None
        due = due_of(comment(pg_dsn, table_name))
        assert due is not None
        assert due["name"] == f"{table_name}_embedding_hnsw"
        # A command run while the ingest is alive leaves the index to it.
        during = ok("count", *place)
        assert during.stdout.strip() == "100"
        assert "built after a running `pgvs ingest` loads" in during.stderr
        assert index_state(pg_dsn, table_name) is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    # The server ends the dead process's sessions, and its ingest lock with them.
    wait_for(pg_dsn, f"SELECT NOT ({INGEST_LOCK_HELD})", table_name)
    assert index_state(pg_dsn, table_name) is None
    assert due_of(comment(pg_dsn, table_name)) is not None
    # The next command (any: a search here) rebuilds it before its own work.
    done = ok("search", *place, "--vector", json.dumps([1.0] * DIM), "-k", "3", "--json")
    assert "rebuilding its index" in done.stderr
    assert len(json.loads(done.stdout)) == 3
    assert index_state(pg_dsn, table_name) is True
    assert comment(pg_dsn, table_name) == INIT_COMMENT
    assert "rebuilding" not in ok("count", *place).stderr  # once


def test_a_library_store_rebuilds_it_too_and_the_next_command_removes_the_record(
    pg_dsn: str, table_name: str
) -> None:
    from pgvs import AsyncPGVectorStore

    place = init(pg_dsn, table_name)
    child = start_stdin_ingest(place)
    try:
        first_commit(child, lines(150))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    wait_for(pg_dsn, f"SELECT NOT ({INGEST_LOCK_HELD})", table_name)
    assert index_state(pg_dsn, table_name) is None

    async def library() -> bool:
        # auto_create_index=True (the default): a populated table without its index is built
        # in the background, whatever the comment says.
        config = {
            "connection_string": pg_dsn,
            "dimensions": DIM,
            "table_name": table_name,
            "id_type": "text",
        }
        async with AsyncPGVectorStore(config) as store:
            return (await store.wait_for_index(timeout=120)).usable

    assert asyncio.run(library())
    assert due_of(comment(pg_dsn, table_name)) is not None
    done = ok("count", *place)
    assert done.stdout.strip() == "100"
    assert "rebuilding" not in done.stderr  # valid already: only the record goes
    assert comment(pg_dsn, table_name) == INIT_COMMENT


def test_kill_during_the_build_then_ingest_again_resumes(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = init(pg_dsn, table_name)
    everything = lines(400)
    child = start_stdin_ingest(place)
    holder: asyncpg.Connection | None = None
    loop = asyncio.new_event_loop()
    try:
        first_commit(child, everything[:150])
        # Hold the table against the build (CREATE INDEX takes SHARE; COPY is compatible).
        holder = loop.run_until_complete(asyncpg.connect(pg_dsn))
        loop.run_until_complete(holder.execute("BEGIN"))
        loop.run_until_complete(holder.execute(f'LOCK TABLE "{table_name}" IN ROW EXCLUSIVE MODE'))
        assert child.stdin is not None
        child.stdin.close()  # the load ends: the command's CREATE INDEX waits on the test's lock
        builder = wait_for(
            pg_dsn,
            "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'CREATE INDEX%' "
            "AND query LIKE '%' || $1 || '%' AND wait_event_type = 'Lock'",
            table_name,
        )
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
        if holder is not None:
            loop.run_until_complete(holder.close())  # the build may go on: its client is gone
        loop.close()
    assert child.returncode == -signal.SIGKILL
    # The orphaned build finishes, finds its client gone before COMMIT, and rolls back.
    wait_for(pg_dsn, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", builder)
    wait_for(pg_dsn, f"SELECT NOT ({INGEST_LOCK_HELD})", table_name)
    assert index_state(pg_dsn, table_name) is None
    assert due_of(comment(pg_dsn, table_name)) is not None
    assert fetchval(pg_dsn, f'SELECT count(*) FROM "{table_name}"') == 150
    # Run again: it resumes, loading into the bare table, then building the recorded index.
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(everything) + "\n")
    again = json.loads(ok("ingest", *place, str(path), "--json", "-q").stdout)
    assert (again["rows_updated"], again["rows_new"]) == (150, 250)
    assert again["index"]["built_after_load"] is True
    assert again["index"]["build_seconds"] > 0
    assert index_state(pg_dsn, table_name) is True
    assert comment(pg_dsn, table_name) == INIT_COMMENT


# -- the store's hook, as the command uses it -------------------------------------------------


async def test_build_after_load_is_what_the_caller_asks(pg_dsn: str, table_name: str) -> None:
    from pgvs import AsyncPGVectorStore

    rows = np.random.default_rng(2).standard_normal((1200, DIM))
    config = {
        "connection_string": pg_dsn,
        "dimensions": DIM,
        "table_name": table_name,
        "id_type": "text",
    }
    async with AsyncPGVectorStore(config) as made:  # the HNSW index, on the empty table
        assert (await made.index_status()).usable
    async with AsyncPGVectorStore({**config, "auto_create_index": False}) as store:
        # Off by default without auto_create_index: the rows go into the index.
        kept = await store.ingest(rows[:10], ids=[f"a{i}" for i in range(10)])
        assert kept.index_note == "auto_create_index is off (build_after_load=True allows it)"
        await store.clear()
        built = await store.ingest(rows, ids=[f"b{i}" for i in range(1200)], build_after_load=True)
        assert built.index_note is None
        assert built.details["index_build"] > 0
        assert built.batch_size > 500  # loaded without the index
        assert (await store.index_status()).usable
    async with AsyncPGVectorStore(config) as store:
        await store.clear()
        never = await store.ingest(rows, ids=[f"c{i}" for i in range(1200)], build_after_load=False)
        assert never.index_note == "build_after_load=False"
        assert never.batch_size == 500  # into the index, which stayed
        assert (await store.index_status()).usable


# -- the record (pure) -----------------------------------------------------------------------


def test_the_record_keeps_what_the_comment_said() -> None:
    due = {"name": "t_embedding_hnsw", "type": "hnsw", "params": {"m": 24}}
    for before in (None, INIT_COMMENT, "the user's own words", "pgvs:not json"):
        recorded = with_due(before, due)
        assert recorded.startswith("pgvs:")
        assert due_of(recorded) == due
        assert without_due(recorded) == (
            'pgvs:{"metric": "cosine"}' if before == INIT_COMMENT else before
        )
        assert due_of(without_due(recorded)) is None
    assert due_of("pgvs:" + json.dumps({"index_due": {"name": "x", "type": "ivfflat"}})) is None
    assert due_of(None) is None
    assert due_of("text") is None
