"""The layout's rules, checked on the source: the core imports no tooling and has no circles.

Every ``import`` statement under ``shared/`` counts, at top level or inside a function; only
imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "shared"
TOOLING = ("devstack", "deploy", "bench", "tests", "chalice_app", "gcp_functions")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path) -> list[str]:
    """Dotted names each import statement of ``path`` loads (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


def import_graph() -> dict[str, set[str]]:
    """Core module -> the core modules its import statements load."""
    modules = core_modules()
    return {
        name: {n for n in imported_names(path) if n in modules and n != name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_core_imports_no_tooling() -> None:
    offenders = [
        f"{name} imports {imported}"
        for name, path in core_modules().items()
        for imported in imported_names(path)
        if imported.split(".")[0] in TOOLING
    ]
    assert offenders == []


def test_the_core_has_no_import_circle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_checker_sees_a_circle_and_function_level_imports() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # A function-level import counts; a TYPE_CHECKING one does not.
    names = imported_names(CORE / "run" / "context.py")
    assert "shared.drive" in names  # imported inside open_sync


@pytest.mark.parametrize("folder", ["triggers", "run", "drive", "transform", "storage"])
def test_the_flow_folders_exist(folder: str) -> None:
    assert (CORE / folder / "__init__.py").is_file()


def _string_parts(tree: ast.AST) -> list[str]:
    """String literals and f-string pieces, docstrings (bare expression statements) aside."""
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_bucket_keys_are_built_only_in_storage_layout() -> None:
    from shared.storage.layout import RESERVED_PREFIXES

    offenders = [
        f"{name}: {part!r}"
        for name, path in core_modules().items()
        if name != "shared.storage.layout"
        for part in _string_parts(ast.parse(path.read_text()))
        if any(prefix in part for prefix in (*RESERVED_PREFIXES, "sync/", "finalize/", "events/"))
    ]
    assert offenders == []
    assert not [n for n in imported_names(CORE / "storage" / "layout.py") if "shared.run" in n]
