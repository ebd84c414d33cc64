"""The import graph has no cycle: every module can be read before the ones that use it.

Imports are read from the source with `ast`, those inside functions included: a lazy import
still ties two modules together, and one used only to dodge a cycle hides the cycle from
Python, not from a reader. Installed names (denoise_train, denoise_export) are mapped to their
folders.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"denoise_cli": "denoise_cli", "denoise_train": "train", "denoise_export": "export"}


def _modules() -> dict[str, Path]:
    """Every module of the three packages, by its installed dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` names a module; `from mod import name` names its module.
                named = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else node.module for t in named]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_with_function_level_imports():
    """The reader sees what the test relies on: top-level and lazy imports alike."""
    graph = import_graph()
    assert "denoise_cli.run.job" in graph["denoise_cli.run.runners"]  # top level
    assert "denoise_cli.run.runners" in graph["denoise_cli.cli"]  # inside run_and_report
    assert (
        "denoise_cli.files.fastpng" in graph["denoise_cli.files.images"]
    )  # `from denoise_cli import x`


def test_find_cycle_finds_one_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    graph = import_graph()
    within = {m: {t for t in ts if t.split(".")[0] == package} for m, ts in graph.items()}
    cycle = find_cycle({m: ts for m, ts in within.items() if m.split(".")[0] == package})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


#: denoise_cli's layers, lowest first: a module imports only its own layer and those below.
LAYERS = ("core", "files", "model", "trees", "run", "top")


def _layer(module: str) -> int:
    parts = module.split(".")  # a layer's package counts as its layer; cli, api and the root top
    return LAYERS.index(parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top")


def test_the_runtime_folders_are_layers():
    """files < model < trees < run < cli/api: a folder never reaches up, so each can be read
    (and tested) knowing only the folders below it."""
    graph = import_graph()
    runtime = [m for m in graph if m.split(".")[0] == "denoise_cli"]
    loose = [
        m for m in runtime if m.count(".") == 1 and m.split(".")[1] not in (*LAYERS, "cli", "api")
    ]
    assert not loose, f"modules outside a layer folder: {loose}"
    upward = [
        f"{m} -> {t}"
        for m in runtime
        for t in graph[m]
        if t.startswith("denoise_cli") and _layer(t) > _layer(m)
    ]
    assert not upward, "imports that reach a higher layer: " + ", ".join(sorted(upward))
    assert {_layer(m) for m in runtime} == set(range(len(LAYERS)))
