"""The shape of the package: layers that point down, a generated facade, results as tuples.

The import graph is read from the source with ``ast`` (every import counts: module level, inside
functions, under ``TYPE_CHECKING``), so a cycle fails here before it can bite at run time.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pgvs
from pgvs import AsyncPGVectorStore, PGVectorStore

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pgvs"


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _imports(path: Path, name: str, is_package: bool) -> Iterator[str]:
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """pgvs module -> the pgvs modules it imports (importing a.b.c also imports a.b)."""
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, is_package = _module_name(path)
        sources[name] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in sources.items():
        targets = set()
        for imported in _imports(path, name, is_package):
            parts = imported.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                # A module's own parent packages are already imported when it runs.
                if (
                    candidate in sources
                    and candidate != name
                    and not name.startswith(candidate + ".")
                ):
                    targets.add(candidate)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_pgvs_modules() -> None:
    graph = import_graph()
    assert {"pgvs.store.core", "pgvs.sync", "pgvs.types._vector"} <= set(graph)
    assert "pgvs.store" in graph["pgvs.sync"]  # the walk sees real edges
    assert cycles(graph) == []


# Lower layers never import higher ones (each layer may import any layer below it).
LAYERS = [
    ("foundation", {"pgvs.errors", "pgvs.results", "pgvs.server", "pgvs._speedups"}),
    ("types", {"pgvs.types"}),
    ("codecs", {"pgvs.codecs"}),
    (
        "pure rules and SQL",
        {
            "pgvs._sql",
            "pgvs.indexes",
            "pgvs.config",
            "pgvs.filters",
            "pgvs.partial",
            "pgvs.planning",
            "pgvs._index_decisions",
            "pgvs._statements",
            "pgvs._schema_check",
            "pgvs._rows",
            "pgvs._batches",
            "pgvs._copy_sql",
            "pgvs._stats_sql",
            "pgvs.progress",
            "pgvs.search",
            "pgvs.tuning",
            "pgvs.query_log",
            "pgvs.scale",
        },
    ),
    ("store parts", {"pgvs.store"}),
    ("facade and entry points", {"pgvs.sync", "pgvs._sync_base", "pgvs.ingest"}),
    ("integrations and CLI", {"pgvs.integrations", "pgvs.cli", "pgvs.__main__", "pgvs.compat"}),
]


def _layer(module: str) -> int | None:
    for number, (_, members) in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return number
    return None


def test_layers_point_down() -> None:
    graph = import_graph()
    unplaced = sorted(m for m in graph if m != "pgvs" and _layer(m) is None)
    assert unplaced == [], "give each new module a layer here and in the README"
    upward = [
        f"{module} ({LAYERS[_layer(module) or 0][0]}) imports {target}"
        for module, targets in graph.items()
        if module != "pgvs"
        for target in targets
        if target != "pgvs" and (_layer(target) or 0) > (_layer(module) or 0)
    ]
    assert upward == []


def test_modules_stay_small() -> None:
    # filters.py is the one exception, kept whole on purpose: it is one compiler whose first 60
    # lines are the filter language's specification (see the README's Architecture section).
    exceptions = {"filters.py": 950}
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    too_big = {name: lines for name, lines in sizes.items() if lines > exceptions.get(name, 650)}
    assert too_big == {}


def test_the_architecture_section_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    missing = [
        name
        for name in import_graph()
        if name != "pgvs" and name.removeprefix("pgvs.").split(".")[-1] not in section
    ]
    assert missing == []


# -- the generated sync facade ----------------------------------------------------------------


def test_the_generated_facade_is_fresh() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_sync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_stale_check_fails_on_a_stale_facade(tmp_path: Path) -> None:
    generator = importlib.util.spec_from_file_location(
        "generate_sync", ROOT / "scripts" / "generate_sync.py"
    )
    assert generator is not None
    assert generator.loader is not None
    module: Any = importlib.util.module_from_spec(generator)
    generator.loader.exec_module(module)
    stale = tmp_path / "sync.py"
    stale.write_text(module.generate().replace("    asearch = ", "    # asearch = "))
    module.TARGET = stale
    assert module.main(["--check"]) == 1
    module.TARGET = tmp_path / "fresh.py"
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0


def _public_coroutines() -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(AsyncPGVectorStore)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    ]


@pytest.mark.parametrize("name", _public_coroutines())
def test_every_coroutine_has_twins_with_its_signature_defaults_and_docstring(name: str) -> None:
    core = getattr(AsyncPGVectorStore, name)
    assert inspect.getdoc(core), f"AsyncPGVectorStore.{name} needs a docstring"
    expected = inspect.signature(core)
    for twin_name, is_coroutine in ((name, False), (f"a{name}", True)):
        twin = getattr(PGVectorStore, twin_name)
        assert inspect.iscoroutinefunction(twin) is is_coroutine, twin_name
        actual = inspect.signature(twin)
        assert list(actual.parameters.values()) == list(expected.parameters.values()), twin_name
        assert [p.default for p in actual.parameters.values()] == [
            p.default for p in expected.parameters.values()
        ]
        assert actual.return_annotation == expected.return_annotation, twin_name
        assert inspect.getdoc(twin) == inspect.getdoc(core), twin_name
        assert twin.__name__ == twin_name


def test_every_public_facade_method_has_a_docstring() -> None:
    undocumented = [
        name
        for name, member in inspect.getmembers(PGVectorStore)
        if not name.startswith("_") and callable(member) and not inspect.getdoc(member)
    ]
    assert undocumented == []


def test_the_package_root_exports_what_all_lists() -> None:
    for name in pgvs.__all__:
        assert getattr(pgvs, name) is not None


def test_the_pgvs_command_of_this_environment() -> None:
    # The console script pip installed next to this interpreter (CI installs the checkout).
    command = Path(sys.executable).parent / "pgvs"
    assert command.exists(), "pip install -e . creates it"
    shown = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: pgvs")  # Click's usage line
    module = subprocess.run(
        [sys.executable, "-m", "pgvs", "--version"], capture_output=True, text=True, check=False
    )
    assert module.stdout.strip() == f"pgvs {pgvs.__version__}"
