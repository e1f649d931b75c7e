"""No import cycle inside a package: the imports of every module, function-level ones included,
read with ``ast`` (a cycle hidden in a function still breaks when that function first runs)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NAMESPACE = "blameset"


def modules(package: str) -> dict[str, Path | None]:
    """Dotted name -> source file for every module of ``blameset.<package>`` (its folder at the
    root); a native extension (``_spanjson.c``, known by its stub) has no Python source: None."""
    folder = ROOT / package
    found: dict[str, Path | None] = {}
    for path in sorted(folder.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = [NAMESPACE, package, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if path.suffix == ".py":
            found[name] = path
        else:
            found.setdefault(name, None)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: module level and in functions, not under ``if TYPE_CHECKING``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.orelse:
            yield from _import_nodes(child)
        return
    for child in ast.iter_child_nodes(node):
        yield from _import_nodes(child)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports.

    ``from . import x`` is an edge to submodule ``x`` when there is one, else to the package
    (its ``__init__``); ``import a.b.c`` is an edge to the deepest of them that is known."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    found.add(target)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in known:
                found.add(submodule)
            elif source in known:
                found.add(source)
    found.discard(name)
    return found


def graph(package: str) -> dict[str, set[str]]:
    """The package's internal import graph: module -> the package's modules it imports."""
    files = modules(package)
    known = set(files)
    return {
        name: imports_of(name, path, known) if path is not None else set()
        for name, path in files.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search, sorted for a stable answer)."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt in on_stack:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for start in sorted(edges):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


PACKAGES = [
    pytest.param("instrument", id="instrument"),
    pytest.param("analyze", id="analyze"),
    pytest.param("cli", id="cli"),
]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_has_no_import_cycle(package: str) -> None:
    """No module of the package imports, directly or through others, a module that imports it."""
    cycle = find_cycle(graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_walk_sees_function_level_relative_and_submodule_imports(tmp_path: Path) -> None:
    """The walk counts imports inside functions, resolves ``..`` and ``from . import module``,
    and skips imports under ``if TYPE_CHECKING:``."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n"
        "from .. import name_in_init\n"
    )
    files = {
        "pkg": pkg / "__init__.py",
        "pkg.a": pkg / "a.py",
        "pkg.sub": pkg / "sub" / "__init__.py",
        "pkg.sub.b": pkg / "sub" / "b.py",
    }
    known = set(files)
    edges = {name: imports_of(name, path, known) for name, path in files.items()}
    assert edges == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg"},
    }
    assert find_cycle(edges) == ["pkg", "pkg.a", "pkg.sub.b", "pkg"]
