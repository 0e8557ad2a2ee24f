"""The layering holds: ui -> assistant -> ingest, evals -> assistant; no cycles; backends stand alone."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("ingest", "assistant", "ui", "evals")
# what each package may import (besides itself); harness is the shared test/bench helper
ALLOWED = {"ingest": set(), "assistant": {"ingest"}, "ui": {"assistant", "ingest"}, "evals": {"assistant", "ingest", "harness"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of our packages that `path` imports (absolute or relative, at any depth in the file)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import verify` imports a module
    return {m for m in out if m.split(".")[0] in PACKAGES + ("harness",)}


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    names = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for p in files:
        targets = set()
        for m in _imports(p):
            while m and m not in names:  # `from x import name` where name is not a module
                m = m.rpartition(".")[0]
            me = _module_name(p)
            if m and m != me and not me.startswith(m + "."):  # a module's own parent package is no edge
                targets.add(m)
        graph[_module_name(p)] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _package_of(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read_from_the_sources():
    graph = _graph()
    assert "assistant.pipeline" in graph and "assistant.retrieve" in graph["assistant.pipeline"]
    assert "ingest.store" in graph["assistant.retrieve"]  # a relative and an absolute import are both seen


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_dependencies_point_one_way():
    wrong = [
        f"{a} imports {b}"
        for a, targets in _graph().items()
        for b in targets
        if _package_of(b) != _package_of(a) and _package_of(b) not in ALLOWED[_package_of(a)]
    ]
    assert not wrong, wrong


def test_backends_import_neither_the_pipeline_nor_the_cli():
    graph = _graph()
    backends = [m for m in graph if m.startswith("assistant.backends")]
    assert backends
    for m in backends:
        assert not {t for t in graph[m] if t in ("assistant.pipeline", "assistant.__main__")}, m


def test_a_cycle_and_a_wrong_arrow_would_be_caught():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
