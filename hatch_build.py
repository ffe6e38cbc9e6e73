"""Wheel build hook: compile ``pgvs._speedups``, the optional C fast path of the vector encoder.

pgvs works without it (the pure-Python encoder is the reference implementation and is always
shipped), so a machine without a C compiler still gets a working, pure-Python wheel, with a
warning saying what was skipped. Environment switches:

- ``PGVS_NO_EXTENSIONS=1``: do not compile (and, at run time, do not load) the extension.
- ``PGVS_REQUIRE_EXTENSIONS=1``: a failed compilation fails the build (CI sets this, so a broken
  extension cannot hide behind the fallback). Setting both switches is an error.

Values ``""``, ``0``, ``false`` and ``no`` mean unset, here and in ``pgvs.types._native``.

Editable installs (``pip install -e``) put the compiled module next to the sources in
``src/pgvs/``, as ``setup.py build_ext --inplace`` would; it is git-ignored and excluded from
wheels, which always carry a freshly compiled copy. Every editable build first removes the old
in-place module, so a failed or skipped compile cannot leave stale machine code running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXTENSION = "pgvs._speedups"
SOURCE = "src/pgvs/_speedups.c"


@contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # setuptools wants source paths relative to the current directory.
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def compile_extension(root: Path, build_dir: Path) -> Path:
    """Compile the extension for the running interpreter; the path of the built module."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(EXTENSION, sources=[SOURCE])
    command = build_ext(Distribution({"name": "pgvs", "ext_modules": [extension]}))
    command.build_lib = str(build_dir / "lib")
    command.build_temp = str(build_dir / "temp")
    with _working_directory(root):
        command.ensure_finalized()
        command.run()
        return Path(command.get_ext_fullpath(EXTENSION)).resolve()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class SpeedupsBuildHook(BuildHookInterface[Any]):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        editable = version == "editable"
        if editable:
            # Whatever happens below, an old in-place module must not outlive this build (it
            # would keep running code the sources no longer contain).
            _remove_in_place_modules(root)
        if _flag("PGVS_NO_EXTENSIONS"):
            if _flag("PGVS_REQUIRE_EXTENSIONS"):
                raise ValueError(
                    "PGVS_NO_EXTENSIONS and PGVS_REQUIRE_EXTENSIONS are both set; unset one"
                )
            self.app.display_info("PGVS_NO_EXTENSIONS is set: building pure-Python pgvs")
            return
        self._build_dir = Path(tempfile.mkdtemp(prefix="pgvs-build-"))
        try:
            built = compile_extension(root, self._build_dir)
        except Exception as exc:  # any compiler or toolchain failure
            if _flag("PGVS_REQUIRE_EXTENSIONS"):
                shutil.rmtree(self._build_dir, ignore_errors=True)
                raise
            self.app.display_warning(
                f"pgvs: could not compile the optional C encoder ({type(exc).__name__}: {exc}); "
                "installing the pure-Python implementation, which is complete but slower. "
                "Install a C compiler and the Python headers to get it (and rebuild without "
                "pip's wheel cache, which keeps this pure-Python wheel: --no-cache-dir)."
            )
            return
        if editable:
            # The editable wheel only puts src/ on sys.path, so the module must sit in
            # src/pgvs/. Copy then rename: a process that has the old file mapped keeps it.
            target = root / "src" / "pgvs" / built.name
            staging = target.with_name(target.name + ".tmp")
            shutil.copy2(built, staging)
            os.replace(staging, target)
            return
        build_data["force_include"][str(built)] = f"pgvs/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        build_dir = getattr(self, "_build_dir", None)
        if build_dir is not None:
            shutil.rmtree(build_dir, ignore_errors=True)


def _remove_in_place_modules(root: Path) -> None:
    package = root / "src" / "pgvs"
    for pattern in ("_speedups*.so", "_speedups*.pyd"):
        for path in package.glob(pattern):
            path.unlink()
