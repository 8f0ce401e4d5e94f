"""The package's layering: the core never imports an adapter, and module-level imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hcl_plugin"
ADAPTERS = ("lightly", "mmselfsup", "mmdet", "mmengine_support")
CORE = ("geometry", "losses", "modules", "data", "uhml", "checkpoints", "utils", "eval", "cluster", "orl")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def hcl_imports(path: Path, top_level_only: bool) -> Set[str]:
    """The ``hcl_plugin.*`` modules a file imports (``top_level_only``: outside functions and TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if top_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("hcl_plugin"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.startswith("hcl_plugin"):
                    found.add(base)
            visit(child)

    visit(tree)
    return found


def all_modules() -> Dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("core", CORE)
def test_core_never_imports_an_adapter(core):
    offenders: List[str] = []
    for name, path in all_modules().items():
        if name.split(".")[1:2] != [core]:
            continue
        for imported in hcl_imports(path, top_level_only=False):
            if imported.split(".")[1:2] and imported.split(".")[1] in ADAPTERS:
                offenders.append(f"{name} imports {imported}")
    assert not offenders, "\n".join(offenders)


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """A cycle of module-level imports, or ``[]``; a package and its own submodules do not count."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    def dfs(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not all(related(a, b) for a, b in zip(cycle, cycle[1:])):
                    return cycle
            elif nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for name in sorted(graph):
        if name not in state:
            found = dfs(name)
            if found:
                return found
    return []


def test_cycle_finder_sees_a_planted_cycle():
    assert find_cycle({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"p.a": {"p.a.x"}, "p.a.x": {"p.a"}}) == []  # a package importing its submodule


def test_module_level_imports_have_no_cycle():
    modules = all_modules()

    def resolve(target: str) -> str:
        while target and target not in modules:  # ``from pkg.mod import name`` names a module or a package
            target = target.rpartition(".")[0]
        return target

    graph = {name: {resolve(t) for t in hcl_imports(path, top_level_only=True)} - {"", name}
             for name, path in modules.items()}
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)
