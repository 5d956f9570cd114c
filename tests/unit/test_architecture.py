"""The layers of docs/architecture.md, enforced: imports point down, never up or sideways, and never in a circle.

Every `import` in the package counts, including those inside functions (a lazy import is still a
dependency, and still a cycle when the imported module imports back).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "operator" / "ballast"

# Top to bottom. A package may import its own modules and packages of lower layers; packages that
# share a layer are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "kubectl"),
    ("handlers", "devstack"),
    ("shell",),
    ("observability", "analysis", "traffic", "hooks"),
    ("rollout", "workloads", "kube", "servers"),
    ("api",),
)
# `ballast/__init__.py` holds constants every layer may read; `__main__` only starts the CLI.
ROOT_MODULES = {"ballast": len(LAYERS), "ballast.__main__": -1}

Graph = dict[str, set[str]]


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: Path) -> Graph:
    """Module -> the package's modules it imports (a `from a import b` names module `a.b` when it exists)."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: Graph = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    targets.add(candidate if candidate in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> tuple[int, str]:
    """(layer index, top-level package) of a module of the package."""
    if module in ROOT_MODULES:
        return ROOT_MODULES[module], module
    top = module.split(".")[1]
    for index, packages in enumerate(layers):
        if top in packages:
            return index, top
    raise AssertionError(f"{module}: package {top!r} is in no layer of docs/architecture.md; add it to LAYERS")


def layer_violations(graph: Mapping[str, Iterable[str]], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    found = []
    for source, targets in sorted(graph.items()):
        source_layer, source_package = layer_of(source, layers)
        for target in sorted(targets):
            target_layer, target_package = layer_of(target, layers)
            if target_package == source_package or target_layer > source_layer:
                continue
            direction = "up" if target_layer < source_layer else "sideways"
            found.append(f"{source} imports {target} ({direction}: {source_package} -> {target_package})")
    return found


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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


def test_imports_point_down_the_layers() -> None:
    assert layer_violations(import_graph(PACKAGE)) == []


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_every_top_level_package_has_a_layer_and_no_module_sits_outside_one() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    placed = {package for layer in LAYERS for package in layer}
    assert packages == placed
    # Modules at the top level would belong to no layer: only the package's constants and entry point live there.
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py"}


@pytest.mark.parametrize(
    ("source", "target", "direction"),
    [
        ("ballast.api.types", "ballast.rollout.core", "up"),
        ("ballast.rollout.core", "ballast.shell.reconciler", "up"),
        ("ballast.traffic.gateway_api", "ballast.shell.reconciler", "up"),
        ("ballast.analysis.check", "ballast.traffic.router", "sideways"),
        ("ballast.kube.client", "ballast.handlers.indexes", "up"),
    ],
)
def test_the_layer_check_refuses_an_import_against_the_layers(source: str, target: str, direction: str) -> None:
    graph = import_graph(PACKAGE)
    graph[source] = {*graph[source], target}
    assert any(v.startswith(f"{source} imports {target} ({direction}") for v in layer_violations(graph))


def test_the_cycle_check_finds_a_cycle_inside_one_package(tmp_path: Path) -> None:
    package = tmp_path / "ballast"
    (package / "traffic").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "traffic" / "__init__.py").write_text("")
    (package / "traffic" / "router.py").write_text("def pick():\n    from ballast.traffic.one import One\n")
    (package / "traffic" / "one.py").write_text("from ballast.traffic.router import pick\n")
    (package / "traffic" / "two.py").write_text("from ballast.traffic import one\n")
    graph = import_graph(package)
    assert cycles(graph) == [["ballast.traffic.one", "ballast.traffic.router"]]
    assert layer_violations(graph) == []  # inside one package: a cycle, not a layer problem
