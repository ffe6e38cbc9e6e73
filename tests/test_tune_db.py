"""``store.tune()`` against a real server on real data (sift5k-l2, glove50-5k-angular).

* The report tells the truth: the recall it gives for a setting is the recall ``search()`` gets
  at that setting against the data set's own ground truth; the chosen setting reaches the target
  and the bracket's failing end does not.
* The sample of stored rows is repeatable (same table, same queries, same curve); each sampled
  row is left out of its own answers; a filter tunes the filtered path on the matching rows.
* ``apply=True`` persists the setting on the index: this store's pool, a new store and another
  process all use it, a configured ``ef_search`` and a per-call one still win, re-running
  replaces it, dropping the index discards it.
* Bad input is a typed error naming the problem; a deadline gives the best so far, incomplete.

No timing is asserted: latencies are only checked to be positive and ordered (p50 <= p95).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pgvs import AsyncPGVectorStore, ConfigurationError, PGVectorStore, ValidationError
from pgvs.results import TunePoint, TuneReport

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PGVS_DATA_DIR") or ROOT.parent / "shared" / "data")
BUCKETS = 10


def read_vecs(path: Path, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """TEXMEX .fvecs / .ivecs: each record is an int32 dimension, then that many values."""
    raw = np.fromfile(path, dtype=np.int32)
    values: npt.NDArray[Any] = raw.reshape(-1, int(raw[0]) + 1)[:, 1:].copy().view(dtype)
    return values


def load(name: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], Any]:
    directory = DATA_DIR / name
    if not directory.is_dir():
        pytest.skip(f"data set directory {directory} is missing (these tests need shared/)")
    return (
        read_vecs(directory / "base.fvecs", np.float32),
        read_vecs(directory / "query.fvecs", np.float32),
        read_vecs(directory / "groundtruth.ivecs", np.int32),
    )


async def build_table(dsn: str, name: str, metric: str, **options: Any) -> dict[str, Any]:
    """A table of the data set's base rows (ids = row numbers, metadata bucket = id % 10) and
    its index; returns the options that open a store on it."""
    base, _, _ = load(name)
    config = {
        "connection_string": dsn,
        "table_name": f"tune_{uuid.uuid4().hex[:10]}",
        "dimensions": int(base.shape[1]),
        "metric": metric,
        "id_type": "bigint",
        "auto_create_index": False,
        **options,
    }
    async with AsyncPGVectorStore(config) as store:
        ids = list(range(len(base)))
        await store.add_vectors(base, ids=ids, metadata=[{"bucket": i % BUCKETS} for i in ids])
        await store.create_index(config.get("index_type", "hnsw"))
        await store.pool.execute(f"ANALYZE {store._ctx.sql.table}")
    return config


@pytest.fixture(scope="module")
def sift(pg_dsn: str) -> dict[str, Any]:
    """sift5k-l2 with pgvs's default HNSW index, built once for the read-only tests here."""
    return asyncio.run(build_table(pg_dsn, "sift5k-l2", "euclidean"))


def check_report(report: TuneReport, target: float) -> None:
    """What holds for every complete, reached report."""
    assert report.complete
    assert report.reachable
    assert report.hint is None
    chosen = report.chosen
    assert chosen is not None
    assert chosen.recall >= target
    settings = [p.setting for p in report.points]
    assert settings == sorted(settings)
    assert len(settings) == len(set(settings))
    if report.step:  # the bracket's low end was measured and missed the target
        below = next(p for p in report.points if p.setting == chosen.setting - report.step)
        assert below.recall < target
    else:
        assert chosen.setting == report.points[0].setting
    for point in report.points:
        assert 0.0 <= point.p05_recall <= 1.0  # (above the mean when < 5 % of queries miss)
        assert 0.0 <= point.recall <= 1.0
        assert 0.0 < point.p50_ms <= point.p95_ms
    assert report.exact_p50_ms > 0


async def test_the_report_tells_the_recall_search_gets(sift: dict[str, Any]) -> None:
    _, queries, truth = load("sift5k-l2")
    async with AsyncPGVectorStore(sift) as store:
        report = await store.tune(target_recall=0.95, k=10, queries=queries)
        check_report(report, 0.95)
        assert (report.parameter, report.index_type, report.k) == ("hnsw.ef_search", "hnsw", 10)
        assert (report.queries, report.sampled, report.filtered) == (100, False, False)
        assert report.points[0].setting == 10  # doubling starts at k
        # At these settings the planner uses the index by itself on this table, so search()
        # runs the plan tune measured: its recall against the data set's ground truth matches.
        for point in report.points:
            if point.setting > 100:
                continue
            hits = await store.search_batch(
                queries, k=10, ef_search=point.setting, include_metadata=False
            )
            recall = np.mean(
                [
                    len({h.id for h in row} & set(truth[i, :10].tolist())) / 10
                    for i, row in enumerate(hits)
                ]
            )
            assert recall == pytest.approx(point.recall, abs=0.005), point
        assert await store.pool.fetchval("SHOW hnsw.ef_search") == "200"  # nothing applied


async def test_a_pool_of_one_connection_tunes(sift: dict[str, Any]) -> None:
    # Every step of tune() runs on the connection it holds: asking the pool for a second one
    # would wait until acquire_timeout on a pool of one.
    options = {**sift, "pool_min_size": 1, "pool_max_size": 1, "acquire_timeout": 5}
    async with AsyncPGVectorStore(options) as store:
        report = await store.tune(target_recall=0.9, sample=20, max_seconds=60)
        assert report.sampled
        assert report.points


async def test_sampled_queries_are_repeatable_and_off_the_index(sift: dict[str, Any]) -> None:
    async with AsyncPGVectorStore(sift) as store:
        seen: list[TunePoint] = []
        first = await store.tune(target_recall=0.99, k=5, sample=60, progress=seen.append)
        check_report(first, 0.99)
        assert (first.queries, first.sampled) == (60, True)
        # Dense sampled rows are moved off their nodes (tuning.held_out_queries): no query is a
        # stored row that would find itself, so the doubling starts at k rows, not k + 1.
        assert first.points[0].setting == 5
        assert sorted(seen, key=lambda p: p.setting) == list(first.points)

        async def collect(point: TunePoint) -> None:  # a coroutine callback is awaited
            seen.append(point)

        second = await store.tune(target_recall=0.99, k=5, sample=60, progress=collect)
        # The same rows (a seeded hash of the id picks them) over the same graph: the same curve.
        assert [(p.setting, p.recall) for p in second.points] == [
            (p.setting, p.recall) for p in first.points
        ]
        assert len(seen) == 2 * len(first.points)


async def test_a_filter_tunes_the_filtered_path(sift: dict[str, Any]) -> None:
    async with AsyncPGVectorStore(sift) as store:
        report = await store.tune(target_recall=0.9, k=10, sample=40, filter={"bucket": 3})
        check_report(report, 0.9)
        assert report.filtered
        assert report.queries == 40
        with pytest.raises(ValidationError, match="only 500 rows match the filter"):
            await store.tune(sample=501, filter={"bucket": 3})


async def test_a_deadline_returns_the_best_so_far(sift: dict[str, Any]) -> None:
    async with AsyncPGVectorStore(sift) as store:
        # Past before the first setting: that one is still measured, then the sweep stops.
        report = await store.tune(target_recall=1.0, k=10, sample=30, max_seconds=1e-9)
        assert not report.complete
        assert len(report.points) == 1
        assert report.setting == report.points[0].setting
        if not report.reachable:
            assert report.hint is not None
            assert "max_seconds" in report.hint
        assert "incomplete: max_seconds ran out" in str(report)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"target_recall": 0}, ValidationError, r"target_recall must be a number in \(0, 1\]"),
        ({"target_recall": 1.5}, ValidationError, "target_recall"),
        ({"k": 0}, ValidationError, "k must be a positive integer"),
        ({"sample": 5001}, ValidationError, "sample=5001 is larger than the table: only 5000"),
        ({"queries": []}, ValidationError, "queries is empty"),
        ({"queries": [[1.0, 2.0]]}, ValidationError, "dimension"),
        ({"filter": {"$bogus": 1}}, ValidationError, "bogus"),
        ({"progress": "yes"}, ValidationError, "progress must be None or a callable"),
        ({"max_seconds": -1}, ValidationError, "max_seconds"),
    ],
)
async def test_bad_input_is_named(
    sift: dict[str, Any], arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    async with AsyncPGVectorStore(sift) as store:
        with pytest.raises(error, match=message):
            await store.tune(**arguments)


async def test_tuning_needs_an_index(pg_dsn: str, table_name: str) -> None:
    options = {"connection_string": pg_dsn, "table_name": table_name, "dimensions": 3}
    async with AsyncPGVectorStore(options, index_type="none") as store:
        await store.add_vectors([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        with pytest.raises(ConfigurationError, match="tune\\(\\) needs a vector index") as caught:
            await store.tune(sample=1)
        assert "recall is already 1.0" in str(caught.value)


def test_ivfflat_probes_and_the_sync_facade(pg_dsn: str) -> None:
    _, queries, _ = load("glove50-5k-angular")
    options = asyncio.run(build_table(pg_dsn, "glove50-5k-angular", "cosine", index_type="ivfflat"))
    with PGVectorStore(options) as store:
        lists = int(store.index_status().params["lists"])
        report = store.tune(target_recall=0.9, queries=queries[:50])
        check_report(report, 0.9)
        assert report.parameter == "ivfflat.probes"
        assert report.points[0].setting == 1
        assert report.setting is not None
        assert 1 <= report.setting <= lists
        again = asyncio.run(_atune(store))
        assert again.parameter == "ivfflat.probes"


async def _atune(store: PGVectorStore) -> TuneReport:
    return await store.atune(target_recall=0.9, sample=20)


def _ef_search_in_another_process(options: dict[str, Any]) -> str:
    """``hnsw.ef_search`` of the pool of a store opened in a new Python process."""
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        from pgvs import AsyncPGVectorStore

        async def main():
            async with AsyncPGVectorStore(json.loads(sys.argv[1])) as store:
                print(await store.pool.fetchval("SHOW hnsw.ef_search"))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_apply_persists_the_setting_for_every_process(pg_dsn: str) -> None:
    _, queries, _ = load("glove50-5k-angular")
    options = await build_table(pg_dsn, "glove50-5k-angular", "cosine")
    async with AsyncPGVectorStore(options) as store:
        report = await store.tune(target_recall=0.99, queries=queries, apply=True)
        assert report.applied
        assert "is the store's default" in str(report)
        chosen = str(report.setting)
        # This store's pool right away, a second store on a new pool, another process.
        assert await store.pool.fetchval("SHOW hnsw.ef_search") == chosen
        async with AsyncPGVectorStore(options) as second:
            assert await second.pool.fetchval("SHOW hnsw.ef_search") == chosen
            # Still overridable per call (SET LOCAL in the search's transaction) ...
            plan = await second.explain_search(queries[0], k=10, ef_search=321)
            assert ("hnsw.ef_search", "321") in plan.settings
            # ... and a search at the default needs no setting of its own.
            assert (await second.explain_search(queries[0], k=10)).settings == ()
        assert await asyncio.to_thread(_ef_search_in_another_process, options) == chosen
        # A store configured with its own ef_search keeps it.
        async with AsyncPGVectorStore(options, ef_search=77) as configured:
            assert await configured.pool.fetchval("SHOW hnsw.ef_search") == "77"

        # Re-running replaces it (a low target chooses the lowest setting, k = 10).
        lower = await store.tune(target_recall=0.5, queries=queries, apply=True)
        assert lower.setting == 10
        assert await store.pool.fetchval("SHOW hnsw.ef_search") == "10"
        assert await asyncio.to_thread(_ef_search_in_another_process, options) == "10"

        # The setting belongs to the index it was measured on: dropping the index drops it.
        await store.drop_index()
        await store.create_index("hnsw")
    async with AsyncPGVectorStore(options) as fresh:
        assert await fresh.pool.fetchval("SHOW hnsw.ef_search") == "200"


async def test_a_report_plots(sift: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="matplotlib is not installed (pip install 'pgvs[plot]')"
    )
    async with AsyncPGVectorStore(sift) as store:
        report = await store.tune(target_recall=0.95, sample=30)
    path = report.plot(tmp_path / "curve.png")
    data = path.read_bytes()
    assert len(data) > 0
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_tenant_tunes_its_domains_filtered_path(pg_dsn: str) -> None:
    config = await build_table(pg_dsn, "glove50-5k-angular", "cosine", domain_id="tenant-a")
    async with AsyncPGVectorStore(config) as store:
        report = await store.tune(target_recall=0.9, k=10, sample=50)
        check_report(report, 0.9)
        assert report.filtered  # every search of a tenant is filtered by its domain
        assert report.points[0].setting == 10
    async with AsyncPGVectorStore(config, domain_id="tenant-b") as other:
        with pytest.raises(ValidationError, match="only 0 rows are stored"):
            await other.tune(sample=1)


async def test_a_quantized_index_is_held_back_by_its_rerank_factor(pg_dsn: str) -> None:
    # A binary index ranks k * rerank_factor candidates by hamming distance, then re-ranks them
    # by the real distance (the exact answers use the real distance throughout). With only 4
    # candidates per result on 50-d GloVe, no ef_search reaches 0.8: the hint says why.
    config = await build_table(
        pg_dsn, "glove50-5k-angular", "cosine", quantization="binary", rerank_factor=4
    )
    async with AsyncPGVectorStore(config) as store:
        report = await store.tune(target_recall=0.8, k=10, sample=50)
    assert report.points[0].setting == 10 * 4  # ef_search covers every candidate
    assert report.points[-1].setting == 1000
    assert report.complete
    assert not report.reachable
    assert report.best_recall is not None
    assert report.best_recall < 0.8
    assert report.recall == report.best_recall
    assert report.hint is not None
    assert "raise rerank_factor" in report.hint
    assert "target not reached" in str(report)


async def test_a_sparse_store_samples_its_rows_and_leaves_them_out(
    pg_dsn: str, table_name: str
) -> None:
    # A sparse row has no direction to be moved in: it is its own query, left out of its answers
    # (one more row per search: the doubling starts at k + 1).
    rng = np.random.default_rng(7)
    rows = [
        {
            int(i): float(v)
            for i, v in zip(rng.choice(200, 8, replace=False), rng.random(8), strict=True)
        }
        for _ in range(400)
    ]
    config = {
        "connection_string": pg_dsn,
        "table_name": table_name,
        "dimensions": 200,
        "vector_type": "sparsevec",
        "metric": "euclidean",
        "id_type": "bigint",
        "auto_create_index": False,
    }
    async with AsyncPGVectorStore(config) as store:
        await store.add_vectors(rows, ids=list(range(len(rows))))
        await store.create_index("hnsw")
        report = await store.tune(target_recall=0.9, k=5, sample=30)
    check_report(report, 0.9)
    assert report.sampled
    assert report.points[0].setting == 6
