"""The ``pgvs`` command (also ``python -m pgvs``): stores, ingest, search, indexes, stats, doctor.

Built on Click and Rich, which come with the ``cli`` extra (``pip install 'pgvs[cli]'``); the
package root never imports this package, so ``import pgvs`` needs neither. Without the extra the
command says so in one line and exits 2. One module per command group (``server``, ``store``,
``ingest``, ``search``, ``index``, ``stats``, ``doctor``), each on the public store API only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

MISSING_EXTRA = "pgvs: the command line needs the cli extra: pip install 'pgvs[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 findings or failure, 2 usage)."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        return 2
    from ._app import run

    return run(argv)


if __name__ == "__main__":  # pragma: no cover - python -m pgvs.cli
    sys.exit(main())
