"""The ``pgvs`` command (also ``python -m pgvs``).

Today: ``--version``, ``--help`` and ``pgvs server start|status|stop`` (the embedded PostgreSQL).
Store commands (ingest, search, index, stats, doctor) land here, one module per command group,
on top of the public store API only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="pgvs",
        description="PostgreSQL + pgvector as a fast, safe, complete vector store.",
    )
    parser.add_argument("--version", action="version", version=f"pgvs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    server = commands.add_parser(
        "server", help="the embedded PostgreSQL server (start, status, stop)"
    )
    server.add_argument("action", choices=["start", "status", "stop"])
    server.add_argument("--data-dir", default=None, help="default: the per-user directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "server":
        from ..server import main as server_main

        extra = ["--data-dir", args.data_dir] if args.data_dir else []
        return server_main([args.action, *extra])
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - python -m pgvs.cli
    sys.exit(main())
