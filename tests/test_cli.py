"""The ``pgvs`` command, run as users run it: the installed entry point in a subprocess, against
the real embedded server. Store API results are the reference for what the commands print."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import PGVectorStore
from pgvs.cli.doctor import checks
from pgvs.config import StoreConfig
from pgvs.results import IndexInfo, PoolStats, StoreStats, TableActivity

PGVS = Path(sys.executable).parent / "pgvs"


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def pgvs(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    """Run the installed ``pgvs``; the environment never points it at another database."""
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    clean.update(env or {})
    return subprocess.run(
        [str(PGVS), *args], input=stdin, capture_output=True, text=True, env=clean, timeout=300
    )


def ok(*args: str, stdin: str | None = None) -> Any:
    done = pgvs(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def one_message(done: Any, code: int) -> str:
    """A user error: the expected exit code, an error line on stderr, never a traceback."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return str(done.stderr)


def where(dsn: str, table: str) -> list[str]:
    return ["--dsn", dsn, "--table", table]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def small_rows(count: int, dims: int = 4) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [
        {
            "id": f"doc-{i}",
            "embedding": rng.normal(size=dims).round(4).tolist(),
            "content": f"chunk number {i} about {'postgres' if i % 2 else 'vectors'}",
            "metadata": {"n": i, "kind": "odd" if i % 2 else "even"},
        }
        for i in range(count)
    ]


# -- the command itself ----------------------------------------------------------------------


def test_every_command_has_help() -> None:
    top = ok("--help").stdout
    commands = ["server", "init", "ingest", "search", "get", "delete", "count", "index", "stats"]
    for name in [*commands, "doctor", "tune"]:
        assert name in top
        assert ok(name, "--help").stdout.startswith(f"Usage: pgvs {name}")
    for group, subs in (("server", "start status stop"), ("index", "create status drop reindex")):
        for sub in subs.split():
            assert ok(group, sub, "--help").stdout.startswith(f"Usage: pgvs {group} {sub}")


def test_usage_errors_exit_2_with_one_message(pg_dsn: str, table_name: str) -> None:
    assert "No such command" in one_message(pgvs("no-such-command"), 2)
    assert "--dimensions" in one_message(pgvs("init", *where(pg_dsn, table_name)), 2)
    text = one_message(pgvs("init", *where(pg_dsn, table_name), "-d", "0"), 2)
    assert "dimensions must be between 1 and 16000" in text
    assert "pgvs: error:" in one_message(pgvs("search", *where(pg_dsn, table_name)), 2)


def test_without_the_cli_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    # A `click` that cannot be imported stands in for an environment without the extra.
    (tmp_path / "click.py").write_text("raise ImportError('No module named click')\n")
    done = pgvs("--help", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "pgvs: the command line needs the cli extra: pip install 'pgvs[cli]'"
    )


def test_a_missing_table_is_one_message(pg_dsn: str, table_name: str) -> None:
    text = one_message(pgvs("count", *where(pg_dsn, table_name)), 1)
    assert f"table public.{table_name} does not exist" in text
    assert "pgvs init" in text


def test_database_url_is_the_default_dsn(pg_dsn: str, table_name: str) -> None:
    ok("init", "--dsn", pg_dsn, "--table", table_name, "-d", "3", "--index", "none")
    done = pgvs("count", "--table", table_name, env={"DATABASE_URL": pg_dsn})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert "embedded" not in done.stderr  # the embedded server was not needed


def test_an_unreachable_server_is_one_message(table_name: str) -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/postgres"
    assert "pgvs: error:" in one_message(pgvs("count", *where(dsn, table_name)), 1)


# -- init, count, get, delete ------------------------------------------------------------------


def test_init_creates_then_verifies(pg_dsn: str, table_name: str) -> None:
    made = as_json("init", *where(pg_dsn, table_name), "-d", "8", "--metric", "l2")
    assert made == {
        "table": f"public.{table_name}",
        "created": True,
        "column": "vector(8)",
        "metric": "euclidean",
        "id_type": "uuid",
        "text_search": None,
        "index": "hnsw",
        "rows": 0,
    }
    again = as_json("init", *where(pg_dsn, table_name), "-d", "8", "--metric", "l2")
    assert again["created"] is False
    text = one_message(pgvs("init", *where(pg_dsn, table_name), "-d", "9", "--metric", "l2"), 1)
    assert "vector(8)" in text or "dimension" in text
    assert "exists with metric euclidean" in one_message(
        pgvs("init", *where(pg_dsn, table_name), "-d", "8"), 1
    )


def test_init_without_index_keeps_the_metric_for_later_commands(
    pg_dsn: str, table_name: str
) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "3", "--metric", "ip", "--index", "none")
    ok(
        "ingest",
        *where(pg_dsn, table_name),
        "-",
        "--format",
        "jsonl",
        "-q",
        stdin='{"embedding": [1, 0, 0]}\n{"embedding": [0, 2, 0]}\n',
    )
    hits = as_json("search", *where(pg_dsn, table_name), "--vector", "[0, 1, 0]")
    assert [hit["score"] for hit in hits] == [2.0, 0.0]  # inner product, not cosine
    assert as_json("index", "status", *where(pg_dsn, table_name))["exists"] is False


def test_count_get_delete(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "4", "--id-type", "text", "--index", "none")
    ok("ingest", *where(pg_dsn, table_name), str(write_jsonl(tmp_path / "r.jsonl", small_rows(20))))
    assert ok("count", *where(pg_dsn, table_name)).stdout.strip() == "20"
    assert as_json("count", *where(pg_dsn, table_name), "--filter", '{"kind": "odd"}') == {
        "count": 10
    }
    got = as_json("get", *where(pg_dsn, table_name), "doc-3", "--vectors")
    assert got[0]["found"]
    assert got[0]["metadata"] == {"n": 3, "kind": "odd"}
    assert got[0]["vector"] == pytest.approx(small_rows(20)[3]["embedding"], abs=1e-6)
    missing = pgvs("get", *where(pg_dsn, table_name), "doc-3", "nope")
    assert missing.returncode == 1
    assert "NO" in missing.stdout
    dry = as_json(
        "delete", *where(pg_dsn, table_name), "--filter", '{"n": {"$lt": 5}}', "--dry-run"
    )
    assert dry == {"deleted": 0, "matched": 5}
    assert as_json("delete", *where(pg_dsn, table_name), "--filter", '{"n": {"$lt": 5}}') == {
        "deleted": 5,
        "matched": 5,
    }
    assert as_json("delete", *where(pg_dsn, table_name), "--id", "doc-19")["deleted"] == 1
    assert ok("count", *where(pg_dsn, table_name)).stdout.strip() == "14"
    assert "empty --filter" in one_message(
        pgvs("delete", *where(pg_dsn, table_name), "--filter", "{}"), 2
    )
    assert "either --filter" in one_message(pgvs("delete", *where(pg_dsn, table_name)), 2)


def test_ids_of_the_wrong_type_are_usage_errors(pg_dsn: str, table_name: str) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "3", "--index", "none")  # uuid ids
    text = one_message(pgvs("get", *where(pg_dsn, table_name), "not-a-uuid"), 2)
    assert "'not-a-uuid' is not an id of this table (its ids are uuid)" in text
    assert "its ids are uuid" in one_message(
        pgvs("search", *where(pg_dsn, table_name), "--like", "7"), 2
    )
    ok(
        "init",
        *where(pg_dsn, table_name + "_b"),
        "-d",
        "3",
        "--index",
        "none",
        "--id-type",
        "bigint",
    )
    assert "its ids are bigint" in one_message(
        pgvs("delete", *where(pg_dsn, table_name + "_b"), "--id", "x"), 2
    )


def test_bad_filters_are_usage_errors(pg_dsn: str, table_name: str) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "4", "--index", "none")
    place = where(pg_dsn, table_name)
    assert "not valid JSON" in one_message(pgvs("count", *place, "--filter", "{oops"), 2)
    assert "must be a JSON object" in one_message(pgvs("count", *place, "--filter", "[1]"), 2)
    text = one_message(pgvs("count", *place, "--filter", '{"year": {"$gt": [1]}}'), 2)
    assert "year.$gt: $gt takes a number or a string, got a list" in text
    assert "$nope" in one_message(pgvs("delete", *place, "--filter", '{"a": {"$nope": 1}}'), 2)
    assert "cannot read" in one_message(pgvs("count", *place, "--filter", "@/no/such"), 2)


def test_domains_scope_every_command(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "4", "--id-type", "text", "--index", "none")
    data = str(write_jsonl(tmp_path / "r.jsonl", small_rows(6)))
    ok("ingest", *where(pg_dsn, table_name), data, "--domain", "a", "-q")
    ok("ingest", *where(pg_dsn, table_name), data, "--domain", "b", "-q")
    assert as_json("count", *where(pg_dsn, table_name), "--domain", "a") == {"count": 6}
    assert as_json("count", *where(pg_dsn, table_name)) == {"count": 0}  # the default domain
    stats = as_json("stats", *where(pg_dsn, table_name))
    assert stats["rows_by_domain"] == {"a": 6, "b": 6}
    assert stats["rows"] == 12
    assert as_json("stats", *where(pg_dsn, table_name), "--domain", "b")["rows_by_domain"] == {
        "b": 6
    }
    ok("delete", *where(pg_dsn, table_name), "--domain", "a", "--filter", '{"kind": "odd"}')
    assert as_json("count", *where(pg_dsn, table_name), "--domain", "b") == {"count": 6}


# -- search --------------------------------------------------------------------------------------


def test_search_matches_the_store_api(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    rows = small_rows(200, dims=8)
    ok(
        "init",
        *where(pg_dsn, table_name),
        "-d",
        "8",
        "--id-type",
        "text",
        "--text-search",
        "english",
    )
    ok("ingest", *where(pg_dsn, table_name), str(write_jsonl(tmp_path / "r.jsonl", rows)), "-q")
    queries = np.array([rows[5]["embedding"], rows[9]["embedding"]], dtype=np.float32)
    np.save(tmp_path / "q.npy", queries)
    place = where(pg_dsn, table_name)
    config = {
        "dimensions": 8,
        "table_name": table_name,
        "connection_string": pg_dsn,
        "id_type": "text",
        "text_search": "english",
    }
    with PGVectorStore(config) as store:
        expected = store.search(queries[1], k=5, filter={"kind": "odd"})
        expected_text = store.text_search("postgres", k=3)
        expected_hybrid = store.hybrid_search(queries[0], "vectors", k=4)
    found = as_json(
        "search",
        *place,
        "--query-file",
        str(tmp_path / "q.npy"),
        "--row",
        "1",
        "-k",
        "5",
        "--filter",
        '{"kind": "odd"}',
    )
    assert [hit["id"] for hit in found] == [hit.id for hit in expected]
    assert [hit["score"] for hit in found] == pytest.approx([hit.score for hit in expected])
    like = as_json("search", *place, "--like", "doc-9", "-k", "5", "--filter", '{"kind": "odd"}')
    assert [hit["id"] for hit in like] == [hit.id for hit in expected]
    text = as_json("search", *place, "--text", "postgres", "-k", "3")
    assert [hit["id"] for hit in text] == [hit.id for hit in expected_text]
    hybrid = as_json(
        "search",
        *place,
        "--vector",
        json.dumps(rows[5]["embedding"]),
        "--text",
        "vectors",
        "-k",
        "4",
    )
    assert [hit["id"] for hit in hybrid] == [hit.id for hit in expected_hybrid]
    assert {"vector_rank", "text_rank"} <= set(hybrid[0])
    table = ok("search", *place, "--like", "doc-9", "-k", "2").stdout
    assert "doc-9" in table
    assert "score" in table
    assert "dimensions" in one_message(pgvs("search", *place, "--vector", "[1, 2]"), 2)
    assert "no row with that id" in one_message(pgvs("search", *place, "--like", "nope"), 1)
    assert "--row 7" in one_message(
        pgvs("search", *place, "--query-file", str(tmp_path / "q.npy"), "--row", "7"), 2
    )


def test_text_search_on_a_store_without_it_says_how(pg_dsn: str, table_name: str) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "4", "--index", "none")
    text = one_message(pgvs("search", *where(pg_dsn, table_name), "--text", "hello"), 2)
    assert "text_search" in text


# -- indexes -------------------------------------------------------------------------------------


def test_index_lifecycle_with_progress(pg_dsn: str, table_name: str) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "16", "--index", "none", "--id-type", "bigint")
    vectors = np.random.default_rng(3).normal(size=(3000, 16)).astype(np.float32)
    lines = "".join(json.dumps({"embedding": v.tolist()}) + "\n" for v in vectors)
    ok("ingest", *where(pg_dsn, table_name), "-", "--format", "jsonl", "-q", stdin=lines)
    place = where(pg_dsn, table_name)
    built = pgvs("index", "create", *place, "--m", "8", "--ef-construction", "32", "--json")
    assert built.returncode == 0, built.stderr
    status = json.loads(built.stdout)
    assert status["usable"]
    assert status["index_type"] == "hnsw"
    assert status["params"] == {"m": 8, "ef_construction": 32}
    assert "hnsw index: done 100%" in built.stderr  # the build's progress, ending at 100 %
    assert as_json("index", "status", *place)["valid"] is True
    redone = pgvs("index", "reindex", *place, "--maintenance-work-mem", "128MB")
    assert redone.returncode == 0
    assert "reindex: done 100%" in redone.stderr
    assert as_json("index", "drop", *place) == {"dropped": True}
    assert "no vector index" in ok("index", "status", *place).stdout
    ivf = as_json("index", "create", *place, "--type", "ivfflat", "--lists", "10", "-q")
    assert ivf["index_type"] == "ivfflat"
    assert ivf["params"] == {"lists": 10}


async def test_an_invalid_index_is_a_finding(pg_dsn: str, table_name: str) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "4", "--index", "none", "--id-type", "text")
    ok(
        "ingest",
        *where(pg_dsn, table_name),
        "-",
        "--format",
        "jsonl",
        "-q",
        stdin='{"id": "a", "embedding": [1,2,3,4], "content": "x"}\n'
        '{"id": "b", "embedding": [1,2,3,5], "content": "x"}\n',
    )
    # A unique index over duplicate values fails CONCURRENTLY and stays behind INVALID.
    with pytest.raises(asyncpg.UniqueViolationError):
        await _execute(
            pg_dsn,
            f'CREATE UNIQUE INDEX CONCURRENTLY "{table_name}_bad" ON "{table_name}" (content)',
        )
    await _execute(pg_dsn, f'DROP INDEX "{table_name}_metadata_gin"')
    done = pgvs("doctor", *where(pg_dsn, table_name), "--json")
    assert done.returncode == 1
    report = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert not report["invalid indexes"]["ok"]
    assert f"{table_name}_bad" in report["invalid indexes"]["finding"]
    assert not report["metadata GIN index"]["ok"]
    assert "jsonb_path_ops" in report["metadata GIN index"]["fix"]
    human = pgvs("doctor", *where(pg_dsn, table_name))
    assert human.returncode == 1
    assert "FIX" in human.stdout
    assert "finding(s)" in human.stdout


# -- stats and doctor ----------------------------------------------------------------------------


def test_stats_through_the_command_and_the_api(pg_dsn: str, table_name: str) -> None:
    rng = np.random.default_rng(1)
    base = {"dimensions": 8, "table_name": table_name, "connection_string": pg_dsn}
    with PGVectorStore(base, domain_id="t1") as one, PGVectorStore(base, domain_id="t2") as two:
        one.add_vectors(rng.normal(size=(30, 8)))
        two.add_vectors(rng.normal(size=(12, 8)))
        own = one.stats()
    assert own.rows == 30
    assert dict(own.rows_by_domain) == {"t1": 30}
    with PGVectorStore(base) as admin:
        stats = admin.stats()
    assert isinstance(stats, StoreStats)
    assert stats.rows == 42
    assert dict(stats.rows_by_domain) == {"t1": 30, "t2": 12}
    assert stats.domains == 2
    assert stats.column_type == "vector(8)"
    assert stats.table_bytes > 0
    assert stats.total_bytes >= stats.table_bytes + stats.indexes_bytes
    methods = {index.method for index in stats.indexes}
    assert {"hnsw", "gin", "btree"} <= methods
    assert [index.name for index in stats.vector_indexes] == [f"{table_name}_embedding_hnsw"]
    assert all(index.valid for index in stats.indexes)
    assert stats.settings["hnsw.ef_search"] == "200"  # pgvs's default on its own connections
    assert stats.memory_bytes["maintenance_work_mem"] > 0
    assert stats.pool.max_size == 10
    assert stats.pool.in_use == 0
    assert stats.pool.waiting == 0
    assert stats.pgvector_version.startswith("0.8")
    assert stats.top_queries is None
    assert "not installed" in (stats.top_queries_note or "")
    shown = as_json("stats", *where(pg_dsn, table_name))
    assert shown["rows"] == 42
    assert shown["column_type"] == "vector(8)"
    assert {i["name"] for i in shown["indexes"]} == {i.name for i in stats.indexes}
    text = ok("stats", *where(pg_dsn, table_name)).stdout
    for part in (
        "rows per domain",
        "t1",
        "indexes",
        "settings in force",
        "hnsw.ef_search",
        "pool",
        "top queries",
    ):
        assert part in text


def test_stats_and_doctor_of_a_partitioned_table(pg_dsn: str, table_name: str) -> None:
    rng = np.random.default_rng(2)
    base = {"dimensions": 8, "table_name": table_name, "connection_string": pg_dsn}
    with (
        PGVectorStore(base, domain_id="t1", partition_by="domain") as one,
        PGVectorStore(base, domain_id="t2", partition_by="domain") as two,
    ):
        one.add_vectors(rng.normal(size=(30, 8)))
        two.add_vectors(rng.normal(size=(12, 8)))
    text = ok("stats", *where(pg_dsn, table_name)).stdout
    partitions = text.split("\npartitions", 1)[1].split("\nindexes", 1)[0]
    assert "'t1'" in partitions
    assert "30 / 0" in partitions  # each partition's own live / dead tuples
    assert "12 / 0" in partitions
    doctor = pgvs("doctor", *where(pg_dsn, table_name)).stdout
    assert "the largest partition this store sees (30 rows)" in " ".join(doctor.split())


async def test_the_pool_report_counts_checkouts_and_waiting_callers(pg_dsn: str) -> None:
    from pgvs.store._stats import pool_stats

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        assert pool_stats(pool) == PoolStats(
            size=1, min_size=1, max_size=1, idle=1, in_use=0, waiting=0
        )
        async with pool.acquire():
            waiter = asyncio.ensure_future(pool.acquire())
            for _ in range(100):  # event-loop turns (not time) for the waiter to reach the queue
                if pool_stats(pool).waiting:
                    break
                await asyncio.sleep(0)
            report = pool_stats(pool)
            assert (report.in_use, report.idle, report.waiting) == (1, 0, 1)
        await pool.release(await waiter)
        assert pool_stats(pool).waiting == 0
    finally:
        await pool.close()


@pytest.mark.slow
def test_stats_top_queries_from_pg_stat_statements(table_name: str) -> None:
    from pgvs.server import EmbeddedServer

    with EmbeddedServer(settings={"shared_preload_libraries": "pg_stat_statements"}) as server:
        dsn = server.start()
        config = {"dimensions": 4, "table_name": table_name, "connection_string": dsn}
        with PGVectorStore(config) as store:
            before = store.stats()  # preloaded, but the extension is not created yet
            assert before.top_queries is None
            assert "not installed" in str(before.top_queries_note)
        asyncio.run(_execute(dsn, "CREATE EXTENSION pg_stat_statements"))
        with PGVectorStore(config) as store:
            store.add_vectors([[1, 2, 3, 4], [2, 3, 4, 5]])
            store.search([1, 2, 3, 4], k=1)
            stats = store.stats(top_queries=5)
        assert stats.top_queries is not None
        assert stats.top_queries
        assert all(table_name in q.query for q in stats.top_queries)
        assert len(stats.top_queries) <= 5
        assert all(q.calls >= 1 for q in stats.top_queries)
        text = ok("stats", *where(dsn, table_name)).stdout
        assert "top queries (pg_stat_statements)" in text


def test_doctor_findings_through_the_command(pg_dsn: str, table_name: str) -> None:
    ok("init", *where(pg_dsn, table_name), "-d", "64", "--id-type", "bigint")
    vectors = np.random.default_rng(5).normal(size=(2000, 64)).astype(np.float32)
    lines = "".join(json.dumps({"embedding": v.round(3).tolist()}) + "\n" for v in vectors)
    ok("ingest", *where(pg_dsn, table_name), "-", "--format", "jsonl", "-q", stdin=lines)
    # Session settings through the DSN: jit off, and too little memory for an HNSW build.
    tight = f"{pg_dsn}?jit=off&maintenance_work_mem=1MB"
    done = pgvs("doctor", *where(tight, table_name), "--json")
    report = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert done.returncode == 1
    assert report["jit"]["ok"]
    assert report["pgvector version"]["ok"]
    assert not report["maintenance_work_mem"]["ok"]
    assert "--maintenance-work-mem" in report["maintenance_work_mem"]["fix"]
    roomy = f"{pg_dsn}?jit=off&maintenance_work_mem=256MB"
    healthy = pgvs("doctor", *where(roomy, table_name), "--json")
    assert healthy.returncode == 0, healthy.stdout
    assert json.loads(healthy.stdout)["ok"] is True
    on = pgvs("doctor", *where(f"{pg_dsn}?jit=on", table_name), "--json")
    jit = {c["name"]: c for c in json.loads(on.stdout)["checks"]}["jit"]
    assert on.returncode == 1
    assert not jit["ok"]
    assert "jit = off" in jit["fix"]


async def test_the_build_memory_estimate_matches_pgvectors_notice(
    pg_dsn: str, table_name: str
) -> None:
    from pgvs.cli.doctor import hnsw_build_bytes

    conn = await asyncpg.connect(pg_dsn)
    notices: list[str] = []
    conn.add_log_listener(lambda _conn, message: notices.append(message.message))
    try:
        await conn.execute(f'CREATE TABLE "{table_name}" (e vector(64))')
        await conn.execute(
            # The WHERE ties each array to its row, so every row gets fresh random values.
            f'INSERT INTO "{table_name}" SELECT ARRAY(SELECT random() FROM generate_series(1, 64) '
            "WHERE g > 0)::vector FROM generate_series(1, 12000) AS g"
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL maintenance_work_mem = '8MB'")
            await conn.execute(f'CREATE INDEX ON "{table_name}" USING hnsw (e vector_l2_ops)')
        (notice,) = [n for n in notices if "no longer fits into maintenance_work_mem" in n]
        fitted = int(notice.split("after ")[1].split()[0])
        estimated = 8 * 2**20 // hnsw_build_bytes(1, 64, "vector", 16)
        assert abs(estimated - fitted) / fitted < 0.05, (estimated, fitted)
    finally:
        await conn.execute(f'DROP TABLE IF EXISTS "{table_name}"')
        await conn.close()


def _stats(**changes: Any) -> StoreStats:
    base: dict[str, Any] = {
        "table": '"public"."t"',
        "column_type": "vector(768)",
        "rows": 1_000_000,
        "rows_by_domain": {"": 1_000_000},
        "domains": 1,
        "rows_estimate": 1_000_000,
        "table_bytes": 1,
        "toast_bytes": 0,
        "indexes_bytes": 1,
        "total_bytes": 2,
        "indexes": (
            IndexInfo(
                "t_metadata_gin",
                "gin",
                True,
                1,
                "CREATE INDEX ... gin (metadata ...)",
                "jsonb_path_ops",
            ),
            IndexInfo(
                "t_embedding_hnsw", "hnsw", True, 4 * 2**30, "...", "vector_cosine_ops", {"m": 16}
            ),
        ),
        "settings": {"jit": "off"},
        "memory_bytes": {"maintenance_work_mem": 8 * 2**30, "shared_buffers": 2**30},
        "activity": TableActivity(live_tuples=1_000_000, dead_tuples=900_000),
        "pool": PoolStats(2, 2, 10, 2, 0, 0),
        "pgvector_version": "0.7.4",
        "server_version": "17",
    }
    base.update(changes)
    return StoreStats(**base)


def test_the_doctor_rules() -> None:
    config = StoreConfig(dimensions=768)
    report = {check.name: check for check in checks(config, _stats())}
    assert not report["pgvector version"].ok
    assert "0.8" in report["pgvector version"].fix
    assert not report["HNSW index vs shared_buffers"].ok
    assert "shared_buffers" in report["HNSW index vs shared_buffers"].fix
    assert not report["dead tuples"].ok
    assert "VACUUM" in report["dead tuples"].fix
    assert report["maintenance_work_mem"].ok  # 8 GB holds a million 768-d rows (about 3.6 GB)
    small = checks(
        config, _stats(memory_bytes={"maintenance_work_mem": 2**30, "shared_buffers": 8 * 2**30})
    )
    memory = {check.name: check for check in small}["maintenance_work_mem"]
    assert not memory.ok
    assert "--maintenance-work-mem 5GB" in memory.fix
    # A partitioned table builds a graph per partition: the largest one is what must fit.
    partitioned = _stats(
        memory_bytes={"maintenance_work_mem": 2**30, "shared_buffers": 8 * 2**30},
        rows=3_000_000,
        rows_by_domain={"a": 2_000_000, "b": 1_000_000},
        partitioned=True,
    )
    memory = {check.name: check for check in checks(config, partitioned)}["maintenance_work_mem"]
    assert not memory.ok
    assert "largest partition this store sees (2,000,000 rows)" in memory.finding
    fits = _stats(
        memory_bytes={"maintenance_work_mem": 2**30, "shared_buffers": 8 * 2**30},
        rows=3_000_000,
        rows_by_domain={f"t{n}": 100_000 for n in range(30)},
        partitioned=True,
    )
    assert {check.name: check for check in checks(config, fits)}["maintenance_work_mem"].ok
    wide = checks(
        StoreConfig(dimensions=3000, index_type="none", quantization="none"),
        _stats(column_type="vector(3000)", indexes=()),
    )
    limits = {check.name: check for check in wide}
    assert not limits["index vs dimensions"].ok
    assert "halfvec" in limits["index vs dimensions"].fix
    assert not limits["vector index"].ok
    assert not limits["metadata GIN index"].ok


# -- the embedded server and tune ----------------------------------------------------------------


@pytest.mark.slow
def test_server_start_status_stop(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "pg")]
    assert pgvs("server", "status", *data).returncode == 1  # stopped: a finding
    started = ok("server", "start", *data).stdout.strip()
    try:
        assert started.startswith("postgresql://")
        state = as_json("server", "status", *data)
        assert state["running"] is True
        assert state["dsn"] == started
        assert as_json("init", "--dsn", started, "--table", "served", "-d", "3")["created"]
    finally:
        assert "stopped" in ok("server", "stop", *data).stdout
    assert as_json("server", "stop", *data)["running"] is False
    assert pgvs("server", "status", *data).returncode == 1


def test_tune_reports_plots_and_applies(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    from pgvs import PGVectorStore

    rng = np.random.default_rng(3)
    with PGVectorStore(
        connection_string=pg_dsn, dimensions=16, table_name=table_name, metric="l2"
    ) as store:
        store.add_vectors(rng.normal(size=(600, 16)).astype(np.float32))
        store.create_index()
    report = as_json("tune", *where(pg_dsn, table_name), "--recall", "0.9", "--sample", "40")
    assert report["parameter"] == "hnsw.ef_search"
    assert report["reachable"] is True
    assert report["setting"] >= 1
    assert [point["setting"] for point in report["points"]]
    picture = tmp_path / "curve.png"
    shown = ok(
        "tune", *where(pg_dsn, table_name), "--sample", "40", "--apply", "--plot", str(picture)
    )
    assert "curve written to" in shown.stdout
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert "tune" in ok("--help").stdout
    assert "--recall" in one_message(pgvs("tune", *where(pg_dsn, table_name), "--recall", "0"), 2)


def test_tune_on_the_queries_a_store_logged(pg_dsn: str, table_name: str) -> None:
    from pgvs import PGVectorStore

    rng = np.random.default_rng(4)
    missing = pgvs("tune", *where(pg_dsn, table_name), "--recent", "50")
    assert missing.returncode != 0  # no table yet: a one-line error, no traceback
    options = {"connection_string": pg_dsn, "dimensions": 16, "table_name": table_name}
    with PGVectorStore(options, metric="l2", query_log=50) as store:
        store.add_vectors(rng.normal(size=(600, 16)).astype(np.float32))
        store.create_index()
        for query in rng.normal(size=(30, 16)).astype(np.float32):
            store.search(query, k=5)
    report = as_json("tune", *where(pg_dsn, table_name), "--recall", "0.9", "--recent", "50")
    assert report["logged"] is True
    assert report["queries"] == 30
    assert "20 logged queries" in ok("tune", *where(pg_dsn, table_name), "--recent", "20").stdout


def test_import_pgvs_never_imports_the_cli_libraries() -> None:
    probe = "import sys, pgvs, pgvs.sync; print(sorted({'click', 'rich'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_python_dash_m_pgvs_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgvs", "count", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: pgvs count")
