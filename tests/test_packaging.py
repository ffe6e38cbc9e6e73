"""What users install: the sdist, and wheels built from it with and without a C compiler.

Builds run without build isolation (hatchling, setuptools and editables come with the dev extras)
so the test needs no network. A missing compiler is simulated with ``CC=false``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
BUILD_ENV_DROPS = ("PGVS_NO_EXTENSIONS", "PGVS_REQUIRE_EXTENSIONS", "CC")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BUILD_ENV_DROPS}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    result = _run(
        [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(out)],
        _clean_env(),
        ROOT,
    )
    assert result.returncode == 0, result.stderr
    (archive,) = out.glob("pgvs-*.tar.gz")
    return archive


def _wheel_from(sdist: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-w",
            str(out),
            str(sdist),
        ],
        _clean_env(**env),
        out,
    )


def _assert_imports_from(wheel: Path, unpack: Path, *, speedups: bool) -> None:
    """A fresh interpreter imports pgvs from the unpacked ``wheel``, with or without the C
    encoder as expected."""
    location, loaded = _import_from(wheel, unpack).rsplit(" ", 1)
    assert location.startswith(str(unpack))
    assert loaded == str(speedups)


def _import_from(wheel: Path, unpack: Path) -> str:
    """Unpack ``wheel`` and report, from a fresh interpreter, where pgvs came from and whether
    the C encoder is in use."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpack)
    script = textwrap.dedent(
        """
        import numpy as np
        import pgvs, pgvs.types
        from pgvs.types import Vector
        assert Vector(np.array([1.5, -2.0], np.float32)).to_text() == "[1.5,-2]"
        print(pgvs.__file__, pgvs.types.SPEEDUPS)
        """
    )
    env = _clean_env(PYTHONPATH=str(unpack))
    result = _run([sys.executable, "-c", script], env, unpack)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sdist_ships_sources_not_binaries(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"hatch_build.py", "src/pgvs/_speedups.c", "src/pgvs/_speedups.pyi"} <= names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


def test_wheel_with_a_compiler_carries_the_extension(sdist: Path, tmp_path: Path) -> None:
    result = _wheel_from(sdist, tmp_path, PGVS_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert not wheel.name.endswith("-py3-none-any.whl")  # a platform wheel
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (wheel_file,) = [n for n in names if n.endswith(".dist-info/WHEEL")]
        wheel_meta = archive.read(wheel_file).decode()
    assert f"pgvs/_speedups{EXT_SUFFIX}" in names
    assert "pgvs/_speedups.c" not in names
    assert "Root-Is-Purelib: false" in wheel_meta
    _assert_imports_from(wheel, tmp_path / "unpacked", speedups=True)


def test_wheel_without_a_compiler_is_pure_python_and_works(sdist: Path, tmp_path: Path) -> None:
    result = _wheel_from(sdist, tmp_path, CC="false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "could not compile the optional C encoder" in result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.endswith((".so", ".pyd", ".c"))]
    _assert_imports_from(wheel, tmp_path / "unpacked", speedups=False)


def test_required_extension_fails_the_build_without_a_compiler(sdist: Path, tmp_path: Path) -> None:
    result = _wheel_from(sdist, tmp_path, CC="false", PGVS_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "CompileError" in output  # failed for the right reason, not any reason
    assert "could not compile the optional C encoder" not in output  # no fallback taken
    assert not list(tmp_path.glob("*.whl"))


def test_no_extensions_builds_pure_python(sdist: Path, tmp_path: Path) -> None:
    result = _wheel_from(sdist, tmp_path, PGVS_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PGVS_NO_EXTENSIONS is set" in result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    _assert_imports_from(wheel, tmp_path / "unpacked", speedups=False)


def test_the_installed_pgvs_command_runs(sdist: Path, tmp_path: Path) -> None:
    # Installed from the wheel as a user would get it (console script and all), then run as a
    # program: the entry point must name a module and function that exist.
    result = _wheel_from(sdist, tmp_path, PGVS_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    target = tmp_path / "installed"
    install = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        _clean_env(),
        tmp_path,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    command = target / "bin" / "pgvs"
    env = _clean_env(PYTHONPATH=str(target))
    shown = _run([str(command), "--help"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Usage: pgvs" in shown.stdout
    assert "server" in shown.stdout
    # Without the cli extra (a `click` that fails to import stands in for it): one line, exit 2.
    shadow = tmp_path / "no-cli-extra"
    shadow.mkdir()
    (shadow / "click.py").write_text("raise ImportError('No module named click')\n")
    bare = _run([str(command), "--help"], _clean_env(PYTHONPATH=f"{shadow}:{target}"), tmp_path)
    assert bare.returncode == 2
    assert (
        bare.stderr.strip() == "pgvs: the command line needs the cli extra: pip install 'pgvs[cli]'"
    )
    version = _run([str(command), "--version"], env, tmp_path)
    assert version.returncode == 0, version.stderr
    located = _run(
        [sys.executable, "-c", "import pgvs; print(pgvs.__file__, pgvs.__version__)"], env, tmp_path
    )
    where, number = located.stdout.split()
    assert where.startswith(str(target))  # the installed copy ran, not the checkout
    assert version.stdout.strip() == f"pgvs {number}"
    assert _run([str(command), "no-such-command"], env, tmp_path).returncode == 2


def test_contradictory_switches_fail_the_build(sdist: Path, tmp_path: Path) -> None:
    result = _wheel_from(sdist, tmp_path, PGVS_NO_EXTENSIONS="1", PGVS_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "both set" in result.stdout + result.stderr


def _editable_build(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel:editable", "-d", "dist"],
        _clean_env(**env),
        project,
    )


def test_editable_builds_never_leave_a_stale_module(tmp_path: Path) -> None:
    # A copy of the project, so the real source tree is not touched.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    for name in ("pyproject.toml", "hatch_build.py", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    in_place = project / "src" / "pgvs" / f"_speedups{EXT_SUFFIX}"

    result = _editable_build(project, PGVS_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert in_place.is_file()
    (wheel,) = (project / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:  # the editable wheel points at src/, no binaries
        assert not [n for n in archive.namelist() if n.endswith((".so", ".pyd"))]

    for switch in ({"PGVS_NO_EXTENSIONS": "1"}, {"CC": "false"}):
        in_place.write_bytes(b"stale")
        result = _editable_build(project, **switch)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not in_place.exists(), switch
