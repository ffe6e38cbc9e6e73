"""Dispatcher: ``python -m bench <name> [args]`` runs ``bench.<name>.main(args)``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    """Benchmark names: the package's modules that do not start with an underscore."""
    package_dir = str(Path(__file__).resolve().parent)
    return sorted(
        info.name
        for info in pkgutil.iter_modules([package_dir])
        if not info.name.startswith("_") and not info.ispkg
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = available()
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m bench <name> [args]   (benchmarks: {', '.join(names)})")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    result: int | None = module.main(rest)
    return result or 0


if __name__ == "__main__":
    sys.exit(main())
