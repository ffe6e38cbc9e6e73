"""What every command shares: the store options, argument parsing, errors and exit codes.

Exit codes: 0 ok, 1 findings or a failure, 2 a usage error (a bad option, filter or query), 130
interrupted. A user error is one message on stderr (with pgvs's hint when it has one), never a
traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import METRIC_ALIASES, METRICS

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "CommandError",
    "StoreArgs",
    "json_option",
    "metric_choice",
    "parse_filter",
    "parse_json_value",
    "run_async",
    "store_options",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CommandError(Exception):
    """A failure the command explains in one message (exit 1, or 2 for usage)."""

    def __init__(self, message: str, *, code: int = EXIT_FAILURE, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


@dataclasses.dataclass(frozen=True)
class StoreArgs:
    """Where the store lives: ``--dsn``, ``--schema``, ``--table``, ``--domain``."""

    dsn: str | None
    schema: str
    table: str
    domain: str | None

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.table}" + (f" (domain {self.domain})" if self.domain else "")


def store_options(command: F) -> F:
    """The options of every store command, gathered into one ``store: StoreArgs`` argument."""

    def gather(**kwargs: Any) -> Any:
        store = StoreArgs(
            dsn=kwargs.pop("dsn"),
            schema=kwargs.pop("schema"),
            table=kwargs.pop("table"),
            domain=kwargs.pop("domain"),
        )
        return command(store=store, **kwargs)

    # The command's own options (click keeps them on the function) come along.
    functools.update_wrapper(gather, command)
    options = [
        click.option(
            "--dsn",
            metavar="DSN",
            default=None,
            help="PostgreSQL connection string (default: DATABASE_URL, else the embedded server)",
        ),
        click.option(
            "--schema", default="public", show_default=True, help="schema of the store's table"
        ),
        click.option(
            "--table", default="pgvs_embeddings", show_default=True, help="the store's table"
        ),
        click.option(
            "--domain",
            metavar="DOMAIN",
            default=None,
            help="tenant (domain_id): every read and write is scoped to it",
        ),
    ]
    wrapped: Any = gather
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="print JSON (one document on stdout) for scripts"
    )(command)


def metric_choice() -> click.Choice[str]:
    return click.Choice([*METRICS, *sorted(METRIC_ALIASES)], case_sensitive=False)


def parse_json_value(text: str, what: str) -> Any:
    """A JSON option value: inline, or ``@FILE`` to read it from a file."""
    source = text
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(
                f"{what}: cannot read {path}: {exc.strerror}", code=EXIT_USAGE
            ) from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code=EXIT_USAGE,
            hint='Quote it for the shell, e.g. --filter \'{"genre": "sf"}\', or give @FILE.',
        ) from None


def parse_filter(text: str | None) -> Mapping[str, Any] | None:
    """``--filter``: a JSON object in pgvs's filter language (checked by the store)."""
    if text is None:
        return None
    value = parse_json_value(text, "--filter")
    if not isinstance(value, dict):
        raise CommandError(
            f"--filter must be a JSON object, got {type(value).__name__}",
            code=EXIT_USAGE,
            hint='For example --filter \'{"year": {"$gte": 2020}}\'.',
        )
    return value


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
