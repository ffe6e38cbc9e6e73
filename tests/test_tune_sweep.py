"""The pure half of ``store.tune()`` (pgvs.tuning, results.TuneReport): tables of cases, no I/O."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pgvs.config import StoreConfig
from pgvs.errors import ConfigurationError, ValidationError
from pgvs.planning import session_settings
from pgvs.results import TunePoint, TuneReport
from pgvs.tuning import (
    Sweep,
    bisection_step,
    build_report,
    check_tune_arguments,
    held_out_queries,
    knob_range,
    measure_point,
    parse_tuned_comment,
    quantile,
    recall_at_k,
    sample_sql,
    tuned_comment,
)


def step_at(threshold: int) -> Callable[[int], float]:
    """A recall curve that reaches the target (0.95) exactly from ``threshold`` on."""
    return lambda setting: 1.0 if setting >= threshold else 0.5


def sweep(target: float, low: int, high: int, curve: Callable[[int], float]) -> Sweep:
    """Run a sweep against ``curve``; ``.order`` lists the settings in the order measured."""
    done = Sweep(target, low, high)
    order = []
    while (setting := done.next()) is not None:
        order.append(setting)
        done.record(setting, curve(setting))
    done.order = order  # type: ignore[attr-defined]
    return done


@pytest.mark.parametrize(
    ("low", "high", "curve", "order", "chosen", "step"),
    [
        # doubling 10..80, then bisection of (40, 80] down to a bracket <= 40 // 8
        (10, 1000, step_at(57), [10, 20, 40, 80, 60, 50, 55], 60, 5),
        # the lowest setting already reaches the target: nothing to bisect
        (10, 1000, step_at(1), [10], 10, 0),
        # never reached: doubling stops at the knob's maximum
        (10, 1000, step_at(2000), [10, 20, 40, 80, 160, 320, 640, 1000], None, 0),
        # reached only at the maximum (the clamp is a measured point, then bisected)
        (10, 1000, step_at(1000), [10, 20, 40, 80, 160, 320, 640, 1000, 820, 910], 1000, 90),
        # IVFFlat probes from 1 up to the lists: bisected down to one probe
        (1, 5, step_at(3), [1, 2, 4, 3], 3, 1),
        # a self-excluding sample starts at k + 1 = 11
        (11, 1000, step_at(12), [11, 22, 16, 13, 12], 12, 1),
        # measurement noise: recall need not grow in equal steps, the bracket follows it
        (
            10,
            1000,
            {10: 0.5, 20: 0.96, 15: 0.94, 17: 0.96, 16: 0.95}.__getitem__,
            [10, 20, 15, 17, 16],
            16,
            1,
        ),
    ],
)
def test_the_sweep_doubles_then_bisects(
    low: int,
    high: int,
    curve: Callable[[int], float],
    order: list[int],
    chosen: int | None,
    step: int,
) -> None:
    done = sweep(0.95, low, high, curve)
    assert done.order == order  # type: ignore[attr-defined]
    assert done.chosen == chosen
    assert done.step == step


@pytest.mark.parametrize("threshold", [1, 2, 10, 11, 33, 57, 99, 128, 129, 400, 999, 1000])
def test_the_choice_is_within_one_step_of_the_true_threshold(threshold: int) -> None:
    done = sweep(0.95, 10, 1000, step_at(threshold))
    assert done.chosen is not None
    assert done.chosen >= threshold  # it reaches the target
    if threshold <= 10:
        assert (done.chosen, done.step) == (10, 0)  # the lowest setting passed
    else:  # the last failing setting is below the threshold, at most one step from the choice
        assert done.chosen - done.step < threshold
        assert done.step <= bisection_step(done.chosen - done.step)
    assert len(done.order) <= 14  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("found", "truth", "k", "expected"),
    [
        ([("a", 1.0), ("b", 2.0)], [("a", 1.0), ("b", 2.0)], 2, 1.0),
        ([("a", 1.0), ("x", 2.5)], [("a", 1.0), ("b", 2.0)], 2, 0.5),
        ([("x", 3.0), ("y", 4.0)], [("a", 1.0), ("b", 2.0)], 2, 0.0),
        # a different row tied in distance with the k-th exact answer is as good an answer
        ([("a", 1.0), ("c", 2.0)], [("a", 1.0), ("b", 2.0)], 2, 1.0),
        # only the first k hits count
        ([("x", 3.0), ("a", 1.0), ("b", 2.0)], [("a", 1.0), ("b", 2.0), ("c", 3.0)], 2, 0.5),
        # fewer exact answers than k (a narrow filter): recall over those
        ([("a", 1.0)], [("a", 1.0)], 10, 1.0),
        ([], [("a", 1.0), ("b", 2.0)], 10, 0.0),
        # nothing to find says nothing
        ([], [], 10, None),
        # negative distances (inner product) tie too
        ([("a", -5.0), ("c", -4.0)], [("a", -5.0), ("b", -4.0)], 2, 1.0),
    ],
)
def test_recall_at_k(
    found: list[tuple[str, float]], truth: list[tuple[str, float]], k: int, expected: float | None
) -> None:
    assert recall_at_k(found, truth, k) == expected


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([3.0], 0.5, 3.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5), ([4.0, 1.0, 3.0, 2.0], 0.0, 1.0),
     ([1.0, 2.0, 3.0, 4.0, 5.0], 0.95, 4.8), ([0.0, 10.0], 0.05, 0.5)],
)  # fmt: skip
def test_quantile(values: list[float], q: float, expected: float) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_a_point_summarises_recall_and_latency() -> None:
    recalls: list[float | None] = [*([1.0] * 18), 0.5, 0.0, None]
    point = measure_point(40, recalls, [float(ms) for ms in range(1, 22)])
    assert point.setting == 40
    assert point.recall == pytest.approx(18.5 / 20)
    assert point.p05_recall == pytest.approx(quantile([1.0] * 18 + [0.5, 0.0], 0.05))
    assert point.p50_ms == 11.0
    assert point.p95_ms == pytest.approx(20.0)
    assert measure_point(5, [None], [1.0]).recall == 1.0


@pytest.mark.parametrize(
    ("recalls", "margin"),
    [
        ([0.9], 0.0),  # one query: no spread to measure
        ([1.0, 1.0, 1.0], 0.0),  # no spread
        ([1.0, 0.0], 1.96 * (0.5**0.5) / (2**0.5)),  # stdev 0.7071 over 2 queries
        ([1.0] * 50 + [0.0] * 50, 1.96 * (0.25 * 100 / 99) ** 0.5 / 10),
        ([1.0] * 200 + [0.0] * 200, 1.96 * (0.25 * 400 / 399) ** 0.5 / 20),  # 4x queries: 1/2
    ],
)
def test_a_points_recall_margin_is_its_95_percent_interval(
    recalls: list[float], margin: float
) -> None:
    point = measure_point(10, list(recalls), [1.0] * len(recalls))
    assert point.recall_margin == pytest.approx(margin)


def test_the_report_states_the_margin_of_the_chosen_recall() -> None:
    points, done = _points({10: 0.9, 20: 0.96})
    points[1] = TunePoint(20, 0.96, 0.8, 0.2, 0.4, recall_margin=0.018)
    table = str(_report(points, done))
    assert "recall 0.960 ± 0.018 (95 %, over 100 queries)" in table
    assert "may get 0.942 to 0.978" in table


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 10, 200, None), "target_recall must be a number in (0, 1]"),
        ((1.01, 10, 200, None), "target_recall"),
        ((-0.5, 10, 200, None), "target_recall"),
        ((True, 10, 200, None), "target_recall"),
        (("0.9", 10, 200, None), "target_recall"),
        ((0.9, 0, 200, None), "k must be a positive integer"),
        ((0.9, 2.0, 200, None), "k must be"),
        ((0.9, 10, 0, None), "sample must be a positive integer"),
        ((0.9, 10, 200, 0), "max_seconds must be a positive number"),
        ((0.9, 10, 200, -1.0), "max_seconds"),
    ],
)
def test_bad_arguments_are_named(arguments: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        check_tune_arguments(*arguments)


def test_good_arguments_pass() -> None:
    check_tune_arguments(1, 1, 1, None)
    check_tune_arguments(0.95, 10, 200, 0.5)


def test_knob_ranges() -> None:
    assert knob_range("hnsw.ef_search", rows_per_query=11, lists=None) == (11, 1000)
    assert knob_range("ivfflat.probes", rows_per_query=11, lists=50) == (1, 50)
    with pytest.raises(ValidationError, match="k is too large"):
        knob_range("hnsw.ef_search", rows_per_query=1001, lists=None)


def _report(points: list[TunePoint], sweep_: Sweep, complete: bool = True) -> TuneReport:
    return build_report(
        parameter="hnsw.ef_search",
        index_type="hnsw",
        target_recall=0.95,
        k=10,
        queries=100,
        sampled=True,
        filtered=False,
        points=points,
        sweep=sweep_,
        exact_p50_ms=2.0,
        complete=complete,
        elapsed_seconds=1.0,
    )


def _points(curve: dict[int, float]) -> tuple[list[TunePoint], Sweep]:
    done = Sweep(0.95, 10, 1000)
    points = []
    for setting, recall in curve.items():
        done.record(setting, recall)
        points.append(TunePoint(setting, recall, recall - 0.1, setting / 100, setting / 50))
    return points, done


def test_a_report_chooses_the_smallest_setting_reaching_the_target() -> None:
    report = _report(*_points({10: 0.8, 20: 0.9, 40: 0.97, 30: 0.96, 25: 0.93}))
    assert [p.setting for p in report.points] == [10, 20, 25, 30, 40]  # sorted
    assert (report.setting, report.reachable, report.step, report.hint) == (30, True, 5, None)
    assert report.recall == 0.96
    assert report.p50_ms == 0.3
    assert report.best_recall == 0.97
    table = str(report)
    assert table == report.to_table()
    assert "tune hnsw.ef_search (hnsw) for recall@10 >= 0.95: 100 sampled stored vectors" in table
    assert "        30    0.960       0.860     0.300     0.600  <- chosen" in table
    assert "     exact    1.000       1.000     2.000" in table
    assert "chosen: hnsw.ef_search = 30 (recall 0.960" in table
    assert table.count("<- chosen") == 1
    assert "note: measured on stored rows moved off the index" in table  # sampled


def test_an_unreachable_target_gives_the_best_setting_and_a_hint() -> None:
    report = _report(*_points({10: 0.5, 20: 0.7, 1000: 0.9, 640: 0.9}))
    assert (report.setting, report.reachable, report.complete) == (640, False, True)
    assert report.hint is not None
    assert "'m': 32" in report.hint
    assert "ef_construction" in report.hint
    assert "target not reached: best recall 0.900 at hnsw.ef_search = 640" in str(report)


def test_a_quantized_index_is_told_to_rerank_more() -> None:
    points, done = _points({10: 0.5, 1000: 0.6})
    report = build_report(
        parameter="hnsw.ef_search",
        index_type="hnsw",
        target_recall=0.95,
        k=10,
        queries=10,
        sampled=False,
        filtered=False,
        points=points,
        sweep=done,
        exact_p50_ms=1.0,
        complete=True,
        elapsed_seconds=1.0,
        quantized=True,
    )
    assert report.hint is not None
    assert "raise rerank_factor" in report.hint
    assert "note: measured on stored rows" not in str(report)  # given queries


def test_a_deadline_marks_the_report_incomplete() -> None:
    report = _report(*_points({10: 0.5}), complete=False)
    assert (report.setting, report.reachable, report.complete) == (10, False, False)
    assert report.hint is not None
    assert "max_seconds" in report.hint
    assert "incomplete: max_seconds ran out" in str(report)
    empty = _report([], Sweep(0.95, 10, 1000), complete=False)
    assert empty.setting is None
    assert "no setting was measured" in str(empty)


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        (None, {}),
        ("", {}),
        ("my own note on this index", {}),
        ('pgvs:tuned {"parameter": "hnsw.ef_search", "value": 57}', {"hnsw.ef_search": "57"}),
        ('pgvs:tuned {"parameter": "ivfflat.probes", "value": 9}', {"ivfflat.probes": "9"}),
        ('pgvs:tuned {"parameter": "hnsw.ef_search", "value": 0}', {}),
        ('pgvs:tuned {"parameter": "hnsw.ef_search", "value": 1001}', {}),
        ('pgvs:tuned {"parameter": "hnsw.ef_search", "value": "57"}', {}),
        ('pgvs:tuned {"parameter": "work_mem", "value": 57}', {}),
        ('pgvs:tuned {"parameter": "hnsw.ef_search"}', {}),
        ("pgvs:tuned [1, 2]", {}),
        ("pgvs:tuned not json", {}),
    ],
)
def test_the_persisted_comment_is_read_strictly(
    comment: str | None, expected: dict[str, str]
) -> None:
    assert parse_tuned_comment(comment) == expected


def test_the_persisted_comment_round_trips() -> None:
    report = _report(*_points({10: 0.8, 20: 0.97}))
    assert parse_tuned_comment(tuned_comment(report)) == {"hnsw.ef_search": "20"}


@pytest.mark.parametrize(
    ("config", "managed", "tuned", "expected"),
    [
        ({}, True, {}, {"hnsw.ef_search": "200"}),
        ({}, True, {"hnsw.ef_search": "57"}, {"hnsw.ef_search": "57"}),
        ({"ef_search": 80}, True, {"hnsw.ef_search": "57"}, {"hnsw.ef_search": "80"}),
        ({}, False, {"hnsw.ef_search": "57"}, {}),
        ({}, True, {"ivfflat.probes": "7"}, {"hnsw.ef_search": "200", "ivfflat.probes": "7"}),
        (
            {"probes": 3},
            True,
            {"ivfflat.probes": "7"},
            {"hnsw.ef_search": "200", "ivfflat.probes": "3"},
        ),
    ],
)
def test_session_settings_put_the_tuned_default_between_config_and_pgvs_defaults(
    config: dict[str, int], managed: bool, tuned: dict[str, str], expected: dict[str, str]
) -> None:
    store_config = StoreConfig(dimensions=3, **config)  # type: ignore[arg-type]
    assert session_settings(store_config, managed=managed, tuned=tuned) == expected


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="matplotlib is not installed (pip install 'pgvs[plot]')"
    )
    report = _report(*_points({10: 0.8, 20: 0.9, 40: 0.97, 30: 0.96, 25: 0.93}))
    written = report.plot(tmp_path / "tune.png")
    data = written.read_bytes()
    assert written == tmp_path / "tune.png"
    assert len(data) > 1000
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    svg = report.plot(str(tmp_path / "tune.svg"), title="sift5k")
    assert b"<svg" in svg.read_bytes()


def test_plot_refuses_an_unknown_format(tmp_path: Path) -> None:
    report = _report(*_points({10: 0.97}))
    with pytest.raises(ValidationError, match=r"must end in one of \.png, \.svg, \.pdf"):
        report.plot(tmp_path / "tune.jpg")


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import fail, as on an install without the extra.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    report = _report(*_points({10: 0.97}))
    with pytest.raises(ConfigurationError, match=r"pip install 'pgvs\[plot\]'"):
        report.plot(tmp_path / "tune.png")
    assert not (tmp_path / "tune.png").exists()


# -- held-out queries from sampled rows ---------------------------------------------------------


def _unit(rows: np.ndarray) -> np.ndarray:
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


@pytest.mark.parametrize(
    ("rows", "neighbours"),
    [
        ([[0.0, 0.0, 0.0]], [[3.0, 4.0, 0.0]]),  # distance 5
        ([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]], [[1.0, 2.0, 3.5, 4.0], [9.0, 9.0, 9, 9]]),
        ([[100.0, 0.0]], [[100.0, 1e-3]]),  # a tiny distance stays tiny
        ([[1.0, 1.0]], [[1.0, 1.0]]),  # a duplicate (or no other row): the row itself
    ],
)
def test_a_held_out_query_is_as_far_from_its_row_as_the_rows_nearest_neighbour(
    rows: list[list[float]], neighbours: list[list[float]]
) -> None:
    x, y = np.array(rows), np.array(neighbours)
    queries = held_out_queries(x, y, angular=False, seed=3)
    assert queries.dtype == np.float32
    assert queries.shape == x.shape
    np.testing.assert_allclose(
        np.linalg.norm(queries - x, axis=1), np.linalg.norm(y - x, axis=1), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("rows", "neighbours", "cosine"),
    [
        ([[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]], 0.5**0.5),  # 45 degrees
        ([[2.0, 0.0, 0.0, 0.0]], [[-5.0, 0.0, 0.0, 0.0]], -1.0),  # opposite: length is ignored
        ([[3.0, 4.0, 0.0]], [[3.0, 4.0, 0.0]], 1.0),  # a duplicate: the row's direction
        (
            [[0.3, -0.2, 0.9, 0.1], [1.0, 1.0, 1.0, 1.0]],
            [[0.3, -0.1, 0.9, 0.1], [1, 1, 1, 0.9]],
            None,
        ),
    ],
)
def test_an_angular_held_out_query_keeps_the_angle_to_the_nearest_neighbour(
    rows: list[list[float]], neighbours: list[list[float]], cosine: float | None
) -> None:
    x, y = np.array(rows), np.array(neighbours)
    queries = held_out_queries(x, y, angular=True, seed=5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-6)
    expected = np.sum(_unit(x) * _unit(y), axis=1)
    if cosine is not None:
        np.testing.assert_allclose(expected, cosine, atol=1e-12)
    np.testing.assert_allclose(np.sum(queries * _unit(x), axis=1), expected, atol=1e-6)


def test_held_out_queries_move_in_random_directions_repeatably() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16))
    y = x + 0.1 * rng.standard_normal((200, 16))
    for angular in (False, True):
        first = held_out_queries(x, y, angular=angular, seed=18)
        np.testing.assert_array_equal(first, held_out_queries(x, y, angular=angular, seed=18))
        assert not np.array_equal(first, held_out_queries(x, y, angular=angular, seed=19))
        # Not towards the neighbour: the moves point every which way (mean cosine near 0).
        move = first.astype(np.float64) - (_unit(x) if angular else x)
        towards = np.sum(_unit(move) * _unit(y - x), axis=1)
        assert abs(float(np.mean(towards))) < 0.1
        assert float(np.max(towards)) < 0.99


def test_a_zero_row_under_cosine_becomes_a_random_unit_query() -> None:
    queries = held_out_queries([[0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]], angular=True, seed=1)
    assert np.linalg.norm(queries[0]) == pytest.approx(1.0, rel=1e-6)


def test_the_sample_statement_finds_each_rows_nearest_other_row_under_the_same_condition() -> None:
    sql = sample_sql('"t"', '"id"', '"id"::text', '"e"', "<->", '"d" = $1::text AND (true)', 2)
    assert "LIMIT $3::integer" in sql
    assert 'hashtextextended("id"::text, $2::bigint)' in sql
    inner = sql[sql.index("LEFT JOIN LATERAL") :]
    assert 'WHERE ("d" = $1::text AND (true)) AND "id" <> s.key' in inner
    assert 'ORDER BY "e" <-> s.embedding LIMIT 1' in inner
    assert sql.endswith("ORDER BY s.rank, s.key")
