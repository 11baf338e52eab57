"""The layout's rules (README "Layout"), read from the code's own imports.

Every ``import`` counts, lazy ones inside functions and ``TYPE_CHECKING`` blocks included:
a cycle that only closes at run time is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runbook"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {i for i in _imports(path, name) if i in files and i != name}
        for name, path in files.items()
    }


GRAPH = _graph()


def _stage(module: str) -> str:
    """``runbook.plan.planner`` → ``plan``; a top-level module is its own stage."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges_from(stage: str) -> Iterator[tuple[str, str]]:
    for module, targets in GRAPH.items():
        if _stage(module) == stage:
            yield from ((module, t) for t in targets)


@pytest.mark.parametrize(
    ("stage", "forbidden"),
    [
        ("model", {"load", "plan", "run", "templating", "inventory", "journal", "cli", "diff"}),
        ("plan", {"run", "cli", "journal"}),
        ("load", {"plan", "run", "cli", "journal"}),
        ("templating", {"plan", "run", "cli", "journal"}),
        ("errors", {s for s in {_stage(m) for m in GRAPH} if s != "errors"}),
        ("remote", {s for s in {_stage(m) for m in GRAPH} if s != "remote"}),
    ],
)
def test_a_stage_imports_nothing_above_it(stage: str, forbidden: set[str]) -> None:
    wrong = sorted(f"{m} -> {t}" for m, t in _edges_from(stage) if _stage(t) in forbidden)
    assert wrong == []


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    """``python -m runbook`` (``__main__``) is the one way in."""
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if _stage(t) == "cli" and _stage(m) not in ("cli", "__main__")
    )
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(GRAPH) == []


def test_no_package_imports_itself_through_others() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        source = _stage(module) or module
        packages.setdefault(source, set()).update(
            _stage(t) or t for t in targets if (_stage(t) or t) != source
        )
    assert _cycles(packages) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checks above pass on an empty answer; this one shows the finder can fail them."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_top_level_stays_small() -> None:
    """The pipeline is read from ``ls runbook/``: a handful of modules, the rest packages."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 10, modules
