"""The ``pgvs`` group, its commands, and the one place errors become messages and exit codes."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

import click

from .. import __version__
from ..errors import ConfigurationError, FilterError, PGVSError
from . import doctor, index, ingest, search, server, stats, store
from ._common import EXIT_FAILURE, EXIT_USAGE, CommandError
from ._output import silence_stdout

__all__ = ["cli", "run"]

_INTERRUPTED = 130


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="pgvs", message="%(prog)s %(version)s")
def cli() -> None:
    """PostgreSQL + pgvector as a vector store, from the shell.

    Store commands take --dsn (else DATABASE_URL, else the embedded server), --schema, --table
    and --domain; --json prints one JSON document for scripts. Exit codes: 0 ok, 1 findings or
    failure, 2 usage error.
    """


cli.add_command(server.server)
cli.add_command(store.init)
cli.add_command(ingest.ingest)
cli.add_command(search.search)
cli.add_command(store.get)
cli.add_command(store.delete)
cli.add_command(store.count)
cli.add_command(index.index)
cli.add_command(stats.stats)
cli.add_command(doctor.doctor)
cli.add_command(doctor.tune)


def _setup_logging() -> None:
    # pgvs logs what an operator should see (the embedded server in use, an INVALID index being
    # rebuilt) at WARNING: show those as one line each, the rest stays quiet.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pgvs: %(levelname)s: %(message)s"))
    logger = logging.getLogger("pgvs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if os.environ.get("PGVS_DEBUG") else logging.WARNING)
    logger.propagate = False


def _fail(message: str, hint: str | None, code: int) -> int:
    click.echo(f"pgvs: error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return code


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``pgvs`` with ``argv`` (default: the process's); returns the exit code."""
    _setup_logging()
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="pgvs", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("pgvs: interrupted (committed work stays; an ingest can be run again)", err=True)
        return _INTERRUPTED
    except CommandError as exc:
        return _fail(str(exc), exc.hint, exc.code)
    except PGVSError as exc:
        message = Exception.__str__(exc)
        # A bad option value found by the store (a filter, a metric, a setting) is a usage error.
        code = EXIT_USAGE if isinstance(exc, ConfigurationError | FilterError) else EXIT_FAILURE
        return _fail(message, exc.hint, code)
    except BrokenPipeError:  # `pgvs search ... | head`: the reader has what it wanted
        silence_stdout()
        return 0
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("PGVS_DEBUG"):
            traceback.print_exc()
        return _fail(
            f"unexpected {type(exc).__name__}: {exc}",
            "Set PGVS_DEBUG=1 for the traceback, and please report it.",
            EXIT_FAILURE,
        )
    return result if isinstance(result, int) else 0
