"""``python -m bench faults``: the fault-injection suite (tests/faults) run and summarised.

Runs ``pytest tests/faults`` against real embedded servers with ``PGVS_FAULTS_REPORT`` set, so the
scenarios record what they measured: each deadline's time against its bound (blackhole,
caller's own deadline, exhausted pool) and, for the crash scenarios (kill -9 during ingest and
add_vectors, restart under a warm pool), the rows lost and duplicated. Prints scenarios passed /
total, the totals, and every deadline; the JSON result is the last line. Exit status 1 unless
every scenario passed with nothing lost or duplicated. Extra arguments go to pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ._util import emit, progress

ROOT = Path(__file__).resolve().parents[1]


def _run_suite(extra: list[str]) -> tuple[list[dict[str, Any]], dict[str, int], float]:
    with tempfile.TemporaryDirectory(prefix="pgvs-faults-") as scratch:
        report = Path(scratch, "report.jsonl")
        junit = Path(scratch, "junit.xml")
        env = {**os.environ, "PGVS_FAULTS_REPORT": str(report)}
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "tests/faults",
            *extra,
        ]
        progress("running " + " ".join(command[2:]))
        subprocess.run(command, cwd=ROOT, env=env, check=False, stdout=sys.stderr)
        lines = report.read_text().splitlines() if report.exists() else []
        suite = ET.parse(junit).getroot()
        node = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert node is not None
        counts = {key: int(node.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        seconds = float(node.get("time", 0.0))
    return [json.loads(line) for line in lines], counts, seconds


def main(argv: list[str] | None = None) -> int:
    records, counts, seconds = _run_suite(list(argv or []))
    ran = counts["tests"] - counts["skipped"]
    passed = ran - counts["failures"] - counts["errors"]
    crashes = [r for r in records if r["kind"] == "rows"]
    deadlines = [r for r in records if r["kind"] == "deadline"]
    lost = sum(r["lost"] for r in crashes)
    duplicated = sum(r["duplicated"] for r in crashes)
    over = [d for d in deadlines if d["seconds"] >= d["bound"]]
    print(f"scenarios passed: {passed} / {ran} ({counts['skipped']} skipped) in {seconds:.0f} s")
    print(f"crash scenarios: {len(crashes)}, rows lost: {lost}, rows duplicated: {duplicated}")
    for record in crashes:
        print(
            f"  {record['scenario']:<40} expected {record['expected']:>5}  "
            f"lost {record['lost']}  duplicated {record['duplicated']}"
        )
    print(f"deadlines: {len(deadlines)}, over their bound: {len(over)}")
    for record in deadlines:
        mark = "OVER" if record["seconds"] >= record["bound"] else "ok"
        print(
            f"  {record['name']:<45} {record['seconds']:6.2f} s  bound {record['bound']:.2f} s  {mark}"
        )
    worst = max((d["seconds"] / d["bound"] for d in deadlines), default=0.0)
    emit(
        {
            "benchmark": "faults",
            "scenarios_passed": passed,
            "scenarios_total": ran,
            "skipped": counts["skipped"],
            "crash_scenarios": len(crashes),
            "rows_lost": lost,
            "rows_duplicated": duplicated,
            "deadlines": len(deadlines),
            "deadlines_over_bound": len(over),
            "worst_deadline_ratio": round(worst, 3),
            "deadline_seconds": {d["name"]: round(d["seconds"], 3) for d in deadlines},
            "deadline_bounds": {d["name"]: d["bound"] for d in deadlines},
            "suite_seconds": round(seconds, 1),
        }
    )
    return 0 if passed == ran and not lost and not duplicated and not over else 1
