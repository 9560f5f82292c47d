"""The codebase's own rules, checked on its source: no import cycles, small modules, one place for settings,
one list of models."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "mlops_onnx"
MAX_MODULE_LINES = 450


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every mlops_onnx module `path` imports, at the top or inside a function (a lazy import is still an edge)."""
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            edges |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                edges.add(node.module)
            edges |= {f"{node.module}.{alias.name}" for alias in node.names} & known
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus modules importing themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_lazy_imports():
    known = modules()
    graph = {name: imported_modules(path, set(known)) - {name} for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_450_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def environment_reads(path: Path) -> list[str]:
    """`MLOPS_*` variables `path` reads from the environment (os.environ.get / os.getenv / os.environ[...])."""
    reads = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target = ast.unparse(node.func)
            if target in ("os.environ.get", "os.getenv", "environ.get", "os.environ.setdefault"):
                key = node.args[0]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) in ("os.environ", "environ")
        ):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("MLOPS_"):
            reads.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {key.value}")
    return reads


def test_settings_are_read_from_the_environment_only_in_settings_py():
    reads = [
        read for name, path in modules().items() if name != "mlops_onnx.settings" for read in environment_reads(path)
    ]
    assert reads == []
    assert environment_reads(PACKAGE / "settings.py")  # the checker sees reads where they are


def test_a_models_name_is_written_only_in_its_specs_and_the_catalog():
    from mlops_onnx.catalog import PIPELINES

    offenders = []
    for pipeline in PIPELINES.values():
        allowed = {PACKAGE / "catalog.py"} | {modules()[c.spec_module] for c in pipeline.candidates}
        pattern = re.compile(rf"\b{re.escape(pipeline.model)}\b")
        offenders += [
            f"{path.relative_to(REPO_ROOT)} names {pipeline.model}"
            for path in modules().values()
            if path not in allowed and pattern.search(path.read_text())
        ]
    assert offenders == []
