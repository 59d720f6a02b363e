"""The shape of the code: no import cycles, and the engine never reaches into a framework.

Read from the source with ``ast`` (nothing is imported), so the test sees
every import: those inside functions count as edges, since they still tie
two modules together; those under ``if TYPE_CHECKING:`` do not, since they
never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("qengine", "qdjango", "tui")

FORBIDDEN = {
    # The engine is framework-agnostic: Django lives in qdjango, the terminal UI in tui.
    "qengine": ("django", "qdjango", "tui", "textual"),
    # The monitor reads through the engine, whatever the project's framework.
    "tui": ("django", "qdjango"),
}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for other in node.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _imported_names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute names an import statement reaches (``from x import y``: x.y, or x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Edges between our modules, and every top-level package each module imports."""
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    externals: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, (path, is_package) in MODULES.items():
        for node in _imports(ast.parse(path.read_text(), str(path))):
            names = _imported_names(module, is_package, node)
            if isinstance(node, ast.ImportFrom):
                # ``from pkg import sub``: the submodule when it is one, else the module.
                names = [n for n in names[:-1] if n in MODULES] or names[-1:]
            for name in names:
                externals[module].add(name.split(".")[0])
                target = _resolve(name)
                if target is not None and target != module:
                    edges[module].add(target)
    return edges, externals


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
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

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycles() -> None:
    edges, _ = _graph()
    assert edges["qengine.runtime"], "the graph is empty: the reader is broken"
    cycles = _cycles(edges)
    described = [
        " ; ".join(f"{m} -> {sorted(edges[m] & set(cycle))}" for m in cycle) for cycle in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_does_not_import_what_lies_beyond_its_boundary(package: str) -> None:
    _, externals = _graph()
    crossing = {
        module: sorted(set(FORBIDDEN[package]) & imported)
        for module, imported in externals.items()
        if module.split(".")[0] == package and set(FORBIDDEN[package]) & imported
    }
    assert not crossing, f"{package} imports beyond its boundary: {crossing}"


def test_a_worker_process_loads_no_broker_or_database_client() -> None:
    """Pool workers import the cluster's main module and the pool: both stay light.

    multiprocessing imports the parent's main module (``qengine.cli`` for
    ``qcluster``) in every worker; a top-level import of the runtime there cost
    each worker some 35 MB of SQLAlchemy and redis-py it never uses.
    """
    import subprocess
    import sys

    code = (
        "import sys, qengine.cli, qengine.cluster.pool, qengine.cluster.worker\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'redis'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
