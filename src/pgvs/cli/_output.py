"""How commands speak: Rich tables on stdout, JSON for scripts, progress and warnings on stderr.

Progress goes to stderr so ``--json`` output stays one clean document. On a terminal it is a Rich
bar; otherwise (a log, a pipe, a test) it is one plain line per step, the first committed batch
always, then at most one line every few seconds, so a log stays readable and a caller can tell
from it that rows are committed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..results import IndexProgress, IngestProgress

__all__ = [
    "IndexDisplay",
    "IngestDisplay",
    "emit_json",
    "human_bytes",
    "print_pairs",
    "print_table",
    "short",
    "silence_stdout",
    "to_jsonable",
    "warn",
]

# Plain progress lines (not a terminal): at most one per this many seconds after the first.
_LINE_INTERVAL = 2.0


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich exits 1 here; a reader that stopped early (`pgvs search ... | head`) is not a
        # failure, so the command's error handling decides (see silence_stdout).
        raise BrokenPipeError


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so the exit flush does not fail too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _stdout() -> Console:
    # Not a terminal: wide enough that tables of ids and metadata are not wrapped into columns
    # of a few characters (a terminal's own width wins when there is one).
    return _Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def warn(message: str) -> None:
    click.echo(f"pgvs: warning: {message}", err=True)


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from results: dataclasses, mappings, numpy values, datetimes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, pgvs vectors
    if callable(tolist):
        return to_jsonable(tolist())
    to_list = getattr(value, "to_list", None)
    if callable(to_list):
        return to_jsonable(to_list())
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), ensure_ascii=False, indent=2))


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    amount = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1024 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def short(value: Any, width: int = 60) -> str:
    """One line of at most ``width`` characters: text as it is, other values as JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Sequence[str] = (),
) -> None:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(
            column, justify="right" if column in right else "left", overflow="fold", max_width=60
        )
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    _stdout().print(table)


def print_pairs(title: str | None, pairs: Iterable[tuple[str, Any]]) -> None:
    table = Table(
        title=title, title_justify="left", show_header=False, box=box.SIMPLE, pad_edge=False
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, "" if value is None else str(value))
    _stdout().print(table)


class IngestDisplay:
    """The ``progress`` callback of an ingest: a bar of rows (or of input bytes) and rows/s."""

    def __init__(
        self,
        label: str,
        *,
        total_rows: int | None,
        total_bytes: int | None,
        bytes_read: Callable[[], int] | None,
        quiet: bool,
    ) -> None:
        self.label = label
        self.total_rows = total_rows
        self.total_bytes = total_bytes if total_rows is None else None
        self.bytes_read = bytes_read
        self.quiet = quiet
        self.last_line = -math.inf
        self.progress: Progress | None = None
        self.task: Any = None
        if quiet or not sys.stderr.isatty():
            return
        columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        if self.total_rows is not None:
            columns.append(MofNCompleteColumn())
        else:
            columns.append(TaskProgressColumn())
        columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=_stderr(), transient=False)
        self.progress.start()
        self.task = self.progress.add_task(
            label, total=self.total_rows or self.total_bytes, rate=""
        )

    def __call__(self, state: IngestProgress) -> None:
        if self.quiet:
            return
        rate = f"{state.rows_done:,} rows, {state.rows_per_second:,.0f} rows/s"
        if self.progress is not None:
            done = state.rows_done
            if self.total_rows is None and self.bytes_read is not None:
                done = self.bytes_read()
            self.progress.update(self.task, completed=done, rate=rate)
            return
        now = time.monotonic()
        if state.batches_done > 1 and now - self.last_line < _LINE_INTERVAL:
            return
        self.last_line = now
        of = f" of {self.total_rows:,}" if self.total_rows is not None else ""
        click.echo(
            f"{self.label}: batch {state.batches_done} committed: {state.rows_done:,}{of} rows, "
            f"{state.rows_per_second:,.0f} rows/s",
            err=True,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class IndexDisplay:
    """The ``progress`` callback of an index build: percent and phase."""

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.phase = ""
        self.last_line = -math.inf
        self.progress: Progress | None = None
        self.task: Any = None
        if quiet or not sys.stderr.isatty():
            return
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(),
            console=_stderr(),
        )
        self.progress.start()
        self.task = self.progress.add_task(label, total=100.0, phase="")

    def __call__(self, sample: IndexProgress) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            fields: dict[str, Any] = {"phase": sample.phase}
            if sample.percent is not None:
                fields["completed"] = sample.percent
            self.progress.update(self.task, **fields)
            return
        now = time.monotonic()
        if sample.phase == self.phase and now - self.last_line < _LINE_INTERVAL:
            return
        self.phase, self.last_line = sample.phase, now
        percent = "" if sample.percent is None else f" {sample.percent:.0f}%"
        click.echo(f"{self.label}: {sample.phase}{percent}", err=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
