"""The public surface of blameset.instrument, pinned the way httpx's tests/test_exported_members.py
pins its own: what the package exports is exactly what it says it exports."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from blameset import instrument

FOLDER = Path(instrument.__file__).parent


def test_all_is_sorted_and_every_name_in_it_exists_and_is_public() -> None:
    """__all__ is sorted, and each of its names is a public attribute of the package."""
    assert instrument.__all__ == sorted(instrument.__all__)
    for name in instrument.__all__:
        assert not name.startswith("_"), name
        assert hasattr(instrument, name), name


def test_every_public_attribute_of_the_package_is_in_all() -> None:
    """Nothing public reaches the package without being listed in __all__ (modules aside)."""
    public = {
        name
        for name, value in vars(instrument).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(instrument.__all__)


def test_every_module_is_private_or_named_public_in_the_package_docstring() -> None:
    """A module without a leading underscore is one users may import: the docstring lists it."""
    doc = instrument.__doc__ or ""
    listed = set(re.findall(r"``([a-z_]+)``", doc))
    public = {p.stem for p in FOLDER.glob("*.py") if not p.stem.startswith("_")}
    assert public <= listed, sorted(public - listed)
