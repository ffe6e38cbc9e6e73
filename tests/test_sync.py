"""PGVectorStore: the sync facade over the async core, on a background loop thread."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, PGVectorStore, PGVSError, QueryTimeoutError, StoreClosedError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(pg_dsn: str, table_name: str) -> Iterator[PGVectorStore]:
    with PGVectorStore(connection_string=pg_dsn, dimensions=3, table_name=table_name) as opened:
        yield opened


def _public_coroutines() -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(AsyncPGVectorStore)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    ]


def test_every_async_method_has_sync_and_a_twins_with_the_same_signature() -> None:
    names = _public_coroutines()
    assert {"search", "add_vectors", "initialize", "close", "count"} <= set(names)
    for name in names:
        expected = inspect.signature(getattr(AsyncPGVectorStore, name))
        sync_method = getattr(PGVectorStore, name)
        async_twin = getattr(PGVectorStore, f"a{name}")
        assert not inspect.iscoroutinefunction(sync_method), name
        assert inspect.iscoroutinefunction(async_twin), name
        for twin in (sync_method, async_twin):
            actual = inspect.signature(twin)
            assert list(actual.parameters.values()) == list(expected.parameters.values()), name
            assert str(actual.return_annotation).removeprefix("Awaitable") == str(
                expected.return_annotation
            ), name


def test_sync_round_trip(store: PGVectorStore) -> None:
    ids = store.add_vectors([[1, 0, 0], [0, 1, 0]], metadata=[{"a": 1}, {"a": 2}])
    assert store.count() == 2
    hits = store.search([1, 0.1, 0], k=1)
    assert hits[0].id == ids[0]
    ((vector, metadata),) = store.get_vectors([ids[1]])
    np.testing.assert_array_equal(vector, [0, 1, 0])
    assert metadata == {"a": 2}
    assert store.search_batch([[1, 0, 0], [0, 1, 0]], k=1)[1][0].id == ids[1]
    assert store.update_metadata([ids[0]], [{"a": 3}]) == 1
    assert store.delete({"a": 3}) == 1
    assert store.delete_vectors([ids[1]]) == 1
    assert store.clear() == 0


async def test_a_methods_from_a_running_loop(store: PGVectorStore) -> None:
    await store.aadd_vectors([[1, 2, 3]])
    assert await store.acount() == 1
    assert (await store.asearch([1, 2, 3], k=1))[0].score == pytest.approx(1.0)


async def test_sync_call_inside_a_running_loop_blocks_but_does_not_deadlock(
    store: PGVectorStore,
) -> None:
    # As in a Jupyter cell: the caller's own loop is running while it calls the sync API.
    assert asyncio.get_running_loop().is_running()
    store.add_vectors([[1, 2, 3]])
    assert store.count() == 1


def test_sync_call_from_the_store_loop_raises_instead_of_hanging(store: PGVectorStore) -> None:
    async def calls_sync_api(_: AsyncPGVectorStore) -> int:
        return store.count()

    with pytest.raises(PGVSError, match="would deadlock"):
        store.run(calls_sync_api)
    assert store.count() == 0


async def _running(dsn: str, pid: int) -> bool:
    """Whether backend ``pid`` (the test's own) is running a statement."""
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", pid
            )
        )
    finally:
        await conn.close()


def _wait_until_stopped(dsn: str, pid: int, seconds: float = 20.0) -> None:
    """Until the test's own backend no longer runs its ``pg_sleep(30)``: only a cancel ends it
    within ``seconds`` (other tests' statements on the shared server are not looked at)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not asyncio.run(_running(dsn, pid)):
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} still runs its pg_sleep")


def _sleep_on_own_backend(backend: list[int]) -> Callable[[AsyncPGVectorStore], Awaitable[None]]:
    """A ``store.run`` function that records its backend's pid, then sleeps 30 s there."""

    async def sleep(store: AsyncPGVectorStore) -> None:
        async with store.pool.acquire() as connection:
            backend.append(connection.get_server_pid())
            await connection.fetchval("SELECT pg_sleep(30)")

    return sleep


def test_ctrl_c_cancels_the_query_on_the_server(store: PGVectorStore, pg_dsn: str) -> None:
    """Ctrl-C while a call waits on the server: KeyboardInterrupt, and the statement cancelled.

    The presser waits for *this* call's backend to be running its statement (its pid, recorded
    by the call), so a Ctrl-C never lands before the call or on another test's statement."""
    main_thread = threading.main_thread().ident
    assert main_thread == threading.get_ident()
    backend: list[int] = []

    def _own_statement_runs() -> bool:
        return len(backend) > 0 and asyncio.run(_running(pg_dsn, backend[0]))

    pressed: list[tuple[float, object]] = []

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _own_statement_runs():
            time.sleep(0.02)
        assert main_thread is not None
        pressed.append((time.monotonic(), signal.getsignal(signal.SIGINT)))
        signal.pthread_kill(main_thread, signal.SIGINT)

    # Python raises KeyboardInterrupt on SIGINT only if the process did not start with SIGINT
    # ignored, and a job started in the background of a non-interactive shell (nohup, `&` in a
    # CI script) does: the test sets the handler an interactive process has.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=press_ctrl_c)
    started = time.monotonic()
    presser.start()
    interrupted = False
    try:
        store.run(_sleep_on_own_backend(backend))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        returned = time.monotonic() - started
        presser.join()
        signal.signal(signal.SIGINT, inherited)
    # What happened when it does not hold: whether the call outlived its statement, and the
    # handler the press met.
    at, handler = pressed[0]
    assert interrupted, (
        f"store.run returned normally after {returned:.1f} s; Ctrl-C was pressed at "
        f"{at - started:.1f} s, meeting SIGINT handler {handler!r}"
    )
    _wait_until_stopped(pg_dsn, backend[0])
    store.add_vectors([[1, 1, 1]])
    assert store.count() == 1


def test_timeout_cancels_the_query_on_the_server(pg_dsn: str, table_name: str) -> None:
    backend: list[int] = []
    with PGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, command_timeout=0.5
    ) as store:
        with pytest.raises(QueryTimeoutError):
            store.run(_sleep_on_own_backend(backend))
        _wait_until_stopped(pg_dsn, backend[0])
        assert store.count() == 0


def test_eight_threads_search_and_add_concurrently(store: PGVectorStore) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(50, 3)).astype(np.float32)
    base_ids = store.add_vectors(base)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_ in range(15):
                if index % 2:
                    vector = rng.normal(size=(1, 3)).astype(np.float32) + 100 + index
                    [new_id] = store.add_vectors(vector, metadata=[{"w": index, "r": round_}])
                    hit = store.search(vector[0], k=1, filter={"w": index})[0]
                    assert hit.metadata == {"w": index, "r": round_} or hit.id != new_id
                else:
                    row = (index * 7 + round_) % len(base)
                    assert store.search(base[row], k=1)[0].id == base_ids[row]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == 50 + 4 * 15


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_fork_child_gets_a_clear_error_and_parent_keeps_working(store: PGVectorStore) -> None:
    store.add_vectors([[1, 2, 3]])
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python warns that fork() with threads running may deadlock the child; this child
        # only touches the store object, which must refuse without taking any lock.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe, then always exits
        try:
            os.close(read_end)
            try:
                store.count()
                message = b"no error"
            except StoreClosedError as exc:
                message = b"ok:" + str(exc).encode()
            except BaseException as exc:
                message = repr(exc).encode()
            os.write(write_end, message)
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        reported = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0
    assert reported.startswith("ok:"), reported
    assert "fork()" in reported, reported
    assert store.count() == 1
    store.add_vectors([[3, 2, 1]])
    assert store.count() == 2


def test_close_joins_the_thread_and_is_idempotent(pg_dsn: str, table_name: str) -> None:
    store = PGVectorStore(connection_string=pg_dsn, dimensions=3, table_name=table_name)
    store.initialize()
    runner = store._runner
    assert runner is not None
    assert runner.thread.is_alive()
    store.close()
    assert not runner.thread.is_alive()
    store.close()
    with pytest.raises(StoreClosedError):
        store.count()


def test_unclosed_store_warns_when_collected(pg_dsn: str, table_name: str) -> None:
    def open_and_forget() -> None:
        store = PGVectorStore(connection_string=pg_dsn, dimensions=3, table_name=table_name)
        store.initialize()
        del store
        gc.collect()

    with pytest.warns(ResourceWarning, match="never closed"):
        open_and_forget()


def test_interpreter_exit_with_an_open_store_does_not_hang(pg_dsn: str, table_name: str) -> None:
    script = textwrap.dedent(
        f"""
        from pgvs import PGVectorStore
        store = PGVectorStore(connection_string={pg_dsn!r}, dimensions=3, table_name={table_name!r})
        store.initialize()
        store.add_vectors([[1, 2, 3]])
        print(store.count())
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("example", ["quickstart_sync.py", "quickstart_async.py"])
def test_quickstart_examples_run(pg_dsn: str, example: str) -> None:
    env = {**os.environ, "DATABASE_URL": pg_dsn}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "blog chunks" in done.stdout


def test_sync_index_lifecycle(pg_dsn: str, table_name: str) -> None:
    with PGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, auto_create_index=False
    ) as store:
        store.add_vectors(np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
        assert not store.index_status().exists
        samples: list[object] = []
        status = store.create_index("hnsw", progress=samples.append)
        assert status.valid
        assert samples  # the callback ran (on the store's loop thread), "done" at least
        assert store.wait_for_index().valid
        assert store.reindex().valid
        plan = store.explain_search([1, 2, 3], k=3, filter={"a": 1})
        assert ("plan_cache_mode", "force_custom_plan") in plan.settings
        assert len(store.search([1, 2, 3], k=3, ef_search=50, exact=False)) == 3
        assert store.drop_index() is True
