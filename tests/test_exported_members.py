"""The public surface of each blameset package, pinned the way httpx's
tests/test_exported_members.py pins its own: what a package exports is exactly what it says it
exports, and each of its modules is private or named public in the package docstring."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

PACKAGES = ["blameset.instrument", "blameset.analyze", "blameset.cli"]


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_all_is_sorted_and_every_name_in_it_exists_and_is_public(package: ModuleType) -> None:
    """__all__ is sorted as ruff keeps it (constants, classes, functions; each alphabetical), and
    each of its names is a public attribute of the package."""

    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert package.__all__ == sorted(package.__all__, key=order)
    for name in package.__all__:
        assert not name.startswith("_"), name
        assert hasattr(package, name), name


def test_every_public_attribute_of_the_package_is_in_all(package: ModuleType) -> None:
    """Nothing public reaches the package without being listed in __all__ (modules aside)."""
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(package.__all__)


def test_every_module_is_private_or_named_public_in_the_package_docstring(
    package: ModuleType,
) -> None:
    """A module or subpackage without a leading underscore is one users may import: the package
    docstring names it."""
    assert package.__file__ is not None
    folder = Path(package.__file__).parent
    listed = set(re.findall(r"``([a-z_]+)``", package.__doc__ or ""))
    modules = {p.stem for p in folder.glob("*.py")}
    modules |= {p.parent.name for p in folder.glob("*/__init__.py")}
    public = {m for m in modules if not m.startswith("_")}
    assert public <= listed, sorted(public - listed)
