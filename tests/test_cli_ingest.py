"""``pgvs ingest`` through the installed entry point: every format, real shared data, bad files
and bad lines (by line number, nothing of the failing batch written), idempotent re-runs, and an
ingest killed after its first committed batch and run again."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

PGVS = Path(sys.executable).parent / "pgvs"
DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="the shared data sets are not here")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def pgvs(*args: str, stdin: str | None = None) -> Any:
    return subprocess.run(
        [str(PGVS), *args], input=stdin, capture_output=True, text=True, env=_env(), timeout=300
    )


def ok(*args: str, stdin: str | None = None) -> Any:
    done = pgvs(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done


def report(*args: str) -> Any:
    return json.loads(ok(*args, "--json", "-q").stdout)


def failure(done: Any) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return str(done.stderr)


def fetch(dsn: str, sql: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def rows_of(dsn: str, table: str) -> dict[str, Any]:
    return {
        row["id"]: row["metadata"]
        for row in fetch(dsn, f'SELECT id::text AS id, metadata::text AS metadata FROM "{table}"')
    }


def init(dsn: str, table: str, dims: int, *extra: str) -> list[str]:
    place = ["--dsn", dsn, "--table", table]
    ok("init", *place, "-d", str(dims), "--index", "none", *extra)
    return place


def lines(count: int, dims: int = 4, start: int = 0) -> list[str]:
    return [
        json.dumps(
            {
                "id": f"r{i}",
                "embedding": [float(i), 1.0, 0.5, -1.0][:dims],
                "metadata": {"n": i},
                "content": f"row {i}",
            }
        )
        for i in range(start, start + count)
    ]


# -- formats ---------------------------------------------------------------------------------


@needs_data
def test_npy_with_a_sidecar_of_the_shared_torchdocs_set(pg_dsn: str, table_name: str) -> None:
    folder = DATA / "torchdocs-text"
    place = init(pg_dsn, table_name, 384, "--id-type", "bigint", "--text-search", "english")
    args = [
        "ingest",
        *place,
        str(folder / "embeddings.npy"),
        "--sidecar",
        str(folder / "corpus.jsonl"),
        "--field",
        "content=text",
        "--field",
        "document_id=source",
    ]
    first = report(*args)
    assert first["rows_read"] == first["rows_new"] == 8259
    again = report(*args)  # idempotent: the same rows again, rewritten in place
    assert again["rows_updated"] == 8259
    assert again["rows_new"] == 0
    count = fetch(pg_dsn, f'SELECT count(*) AS n, count(DISTINCT id) AS d FROM "{table_name}"')[0]
    assert (count["n"], count["d"]) == (8259, 8259)
    stored = fetch(
        pg_dsn,
        f'SELECT content, document_id, embedding::text AS e FROM "{table_name}" WHERE id = 7170',
    )[0]
    assert stored["content"].startswith("class torch.optim.lr_scheduler.ExponentialLR")
    assert stored["document_id"] == "torch:torch.optim.lr_scheduler.ExponentialLR"
    vector = np.array(json.loads(stored["e"]), dtype=np.float32)
    assert np.array_equal(vector, np.load(folder / "embeddings.npy")[7170])
    hits = json.loads(
        ok(
            "search",
            *place,
            "--query-file",
            str(folder / "query_embeddings.npy"),
            "--row",
            "1",
            "-k",
            "10",
            "--exact",
            "--json",
        ).stdout
    )
    truth = np.load(folder / "groundtruth.npy")[1, :10]
    assert [hit["id"] for hit in hits] == truth.tolist()


@needs_data
def test_fvecs_of_the_shared_sift_set(pg_dsn: str, table_name: str) -> None:
    base = DATA / "sift5k-l2" / "base.fvecs"
    place = init(pg_dsn, table_name, 128, "--id-type", "bigint", "--metric", "l2")
    assert report("ingest", *place, str(base))["rows_read"] == 5000
    raw = np.fromfile(base, dtype="<i4").reshape(-1, 129)
    stored = fetch(pg_dsn, f'SELECT embedding::text AS e FROM "{table_name}" WHERE id = 4321')[0]
    assert np.array_equal(np.array(json.loads(stored["e"]), np.float32), raw[4321, 1:].view("<f4"))
    query = DATA / "sift5k-l2" / "query.fvecs"
    hits = json.loads(
        ok(
            "search",
            *place,
            "--query-file",
            str(query),
            "--row",
            "0",
            "-k",
            "5",
            "--exact",
            "--json",
        ).stdout
    )
    truth = np.fromfile(DATA / "sift5k-l2" / "groundtruth.ivecs", dtype="<i4").reshape(100, -1)
    assert [hit["id"] for hit in hits] == truth[0, 1:6].tolist()


def test_jsonl_gzip_and_stdin_are_upserts(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    place = init(pg_dsn, table_name, 4, "--id-type", "text")
    body = "\n".join(lines(30)) + "\n"
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(body.encode()))
    assert report("ingest", *place, str(packed))["rows_new"] == 30
    again = json.loads(ok("ingest", *place, "-", "--json", "-q", stdin=body).stdout)
    assert (again["rows_new"], again["rows_updated"]) == (0, 30)
    assert len(rows_of(pg_dsn, table_name)) == 30


def test_rows_without_ids_get_their_position(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    place = init(pg_dsn, table_name, 3, "--id-type", "bigint")
    vectors = np.arange(30, dtype=np.float32).reshape(10, 3) + 1
    np.save(tmp_path / "v.npy", vectors)
    report("ingest", *place, str(tmp_path / "v.npy"), "--id-start", "100")
    report("ingest", *place, str(tmp_path / "v.npy"), "--id-start", "100")  # the same rows again
    assert sorted(int(i) for i in rows_of(pg_dsn, table_name)) == list(range(100, 110))
    uuids = init(pg_dsn, table_name + "_u", 3)
    report("ingest", *uuids, str(tmp_path / "v.npy"))
    report("ingest", *uuids, str(tmp_path / "v.npy"))
    assert len(rows_of(pg_dsn, table_name + "_u")) == 10  # derived uuids: stable across runs


# -- bad input -------------------------------------------------------------------------------


def test_a_bad_line_stops_before_its_batch_and_names_the_line(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = init(pg_dsn, table_name, 4, "--id-type", "text")
    content = lines(25)
    content[11] = '{"id": "r11", "embedding": [1, 2'  # line 12: cut short
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(content) + "\n")
    text = failure(pgvs("ingest", *place, str(path), "--batch-size", "5"))
    assert f"{path}: line 12: not valid JSON" in text
    assert "nothing of batch 2 was written; 2 batches (10 rows) before it are committed" in text
    assert sorted(rows_of(pg_dsn, table_name)) == sorted(f"r{i}" for i in range(10))
    skipped = report("ingest", *place, str(path), "--batch-size", "5", "--skip-bad")
    assert skipped["skipped"] == 1
    assert skipped["bad_lines"][0]["where"] == f"{path}: line 12"
    assert len(rows_of(pg_dsn, table_name)) == 24
    content[11] = lines(1, start=11)[0]  # fixed: the run adds that row, duplicates nothing
    path.write_text("\n".join(content) + "\n")
    assert report("ingest", *place, str(path))["rows_new"] == 1
    assert len(rows_of(pg_dsn, table_name)) == 25


def test_every_kind_of_bad_line_is_named(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    place = init(pg_dsn, table_name, 3, "--id-type", "bigint")
    cases = {
        "[1, 2, 3]": "expected a JSON object",
        '{"id": 1}': "no embedding",
        '{"id": 1, "embedding": [1, 2]}': "embedding has 2 dimensions, the table 3",
        '{"id": 1, "embedding": [1, NaN, 3]}': "not valid JSON",
        '{"id": 1, "embedding": [1, 1e39, 3]}': "beyond the float32 range",
        '{"id": 1, "embedding": ["a", 2, 3]}': "list of numbers",
        '{"id": "x", "embedding": [1, 2, 3]}': "id must be an integer",
        '{"id": 1, "embedding": [1, 2, 3], "metadata": [1]}': "metadata must be a JSON object",
        '{"id": 1, "embedding": [1, 2, 3], "content": "a\\u0000b"}': "NUL",
        '{"id": 1, "embedding": [1, 2, 3], "chunk_index": 1.5}': "chunk_index",
        '{"id": 1, "embedding": [1, 2, 3], "title": "t"}': "unknown key 'title'",
    }
    for line, expected in cases.items():
        path = tmp_path / "one.jsonl"
        path.write_text('{"id": 0, "embedding": [0, 0, 1]}\n\n' + line + "\n")
        text = failure(pgvs("ingest", *place, str(path)))
        assert f"{path}: line 3: " in text, line
        assert expected in text, (line, text)
    assert rows_of(pg_dsn, table_name) == {}  # the good first line shared the failing batch


def test_the_stores_own_checks_are_mapped_to_lines(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = init(pg_dsn, table_name, 3, "--id-type", "text")
    deep: Any = 1
    for _ in range(70):  # deeper than pgvs accepts for metadata: the store's check, not ours
        deep = {"a": deep}
    body = [
        "",
        json.dumps({"id": "a", "embedding": [1, 2, 3]}),
        "",
        json.dumps({"id": "b", "embedding": [1, 2, 3], "metadata": deep}),
    ]
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(body) + "\n")
    text = failure(pgvs("ingest", *place, str(path)))
    assert f"{path}: line 4: " in text
    assert "row 1" not in text


def test_bad_files(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    place = init(pg_dsn, table_name, 4, "--id-type", "bigint")
    missing = pgvs("ingest", *place, str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    (tmp_path / "data.csv").write_text("1,2,3\n")
    unknown = pgvs("ingest", *place, str(tmp_path / "data.csv"))
    assert unknown.returncode == 2
    assert "--format" in unknown.stderr
    np.save(tmp_path / "wide.npy", np.ones((3, 5), np.float32))
    assert "holds 5-d vectors; the table stores 4" in failure(
        pgvs("ingest", *place, str(tmp_path / "wide.npy"))
    )
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    assert "not a readable .npy" in failure(pgvs("ingest", *place, str(tmp_path / "broken.npy")))
    with (tmp_path / "bad.fvecs").open("wb") as out:
        for row in range(6):
            out.write(np.int32(4 if row != 4 else 7).tobytes() + np.ones(4, "<f4").tobytes())
    assert "row 4: its header says 7 dimensions" in failure(
        pgvs("ingest", *place, str(tmp_path / "bad.fvecs"))
    )
    (tmp_path / "short.fvecs").write_bytes(np.int32(4).tobytes() + b"\0" * 10)
    assert "not an .fvecs file" in failure(pgvs("ingest", *place, str(tmp_path / "short.fvecs")))
    vectors = np.ones((5, 4), np.float32)
    vectors[3, 1] = np.inf
    np.save(tmp_path / "inf.npy", vectors)
    text = failure(pgvs("ingest", *place, str(tmp_path / "inf.npy"), "--batch-size", "2"))
    assert f"{tmp_path / 'inf.npy'}: row 3: " in text
    assert "1 batch (2 rows) before it is committed" in text
    assert report("ingest", *place, str(tmp_path / "inf.npy"), "--skip-bad")["skipped"] == 1
    np.save(tmp_path / "side.npy", np.ones((3, 4), np.float32))
    (tmp_path / "side.jsonl").write_text('{"id": 7}\n{"id": 8}\n')
    assert "a sidecar needs one line per row" in failure(
        pgvs("ingest", *place, str(tmp_path / "side.npy"))
    )
    done = report("ingest", *place, str(tmp_path / "side.npy"), "--no-sidecar", "--id-start", "50")
    assert done["rows_new"] == 3


# -- interrupted -----------------------------------------------------------------------------


def test_an_interrupted_ingest_run_again_leaves_each_row_once(
    pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    place = init(pg_dsn, table_name, 4, "--id-type", "text")
    everything = lines(1000)
    # The first run reads stdin: it gets 150 lines and then waits for more, so it is killed
    # exactly after its first batch of 100 committed (its progress line says so), mid-batch.
    child = subprocess.Popen(
        [str(PGVS), "ingest", *place, "-", "--batch-size", "100", "--connections", "1"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    assert child.stdin is not None
    assert child.stderr is not None
    try:
        child.stdin.write("\n".join(everything[:150]) + "\n")
        child.stdin.flush()
        while "committed" not in (line := child.stderr.readline()):
            assert line, "the ingest ended before committing a batch"
        assert "batch 1 committed: 100 rows" in line
        assert len(rows_of(pg_dsn, table_name)) == 100
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(everything) + "\n")
    rerun = report("ingest", *place, str(path), "--batch-size", "100")
    assert (rerun["rows_updated"], rerun["rows_new"]) == (100, 900)
    stored = rows_of(pg_dsn, table_name)
    assert sorted(stored) == sorted(f"r{i}" for i in range(1000))
    assert all(json.loads(meta) == {"n": int(key[1:])} for key, meta in stored.items())
