"""dev.py, the Quick start's entry point: it reinstalls exactly when the install would differ."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parents[1]


def _dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_install_stamp_notices_a_new_module_and_a_changed_c_source(tmp_path: Path) -> None:
    """A new module, or an edit of the native decoder's source, changes the stamp; an edit of a
    module's body (which the editable install serves live) does not."""
    dev = _dev()
    for name in ("instrument", "analyze", "cli"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "analyze" / "_spanjson.c").write_text("int x;\n")
    first = dev.install_stamp(tmp_path)
    (tmp_path / "cli" / "__init__.py").write_text("X = 1\n")
    assert dev.install_stamp(tmp_path) == first
    (tmp_path / "cli" / "demo").mkdir()
    (tmp_path / "cli" / "demo" / "__init__.py").write_text("")
    second = dev.install_stamp(tmp_path)
    assert second != first
    (tmp_path / "analyze" / "_spanjson.c").write_text("int y;\n")
    assert dev.install_stamp(tmp_path) != second
