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


def test_the_demo_is_served_by_a_light_or_a_full_install_and_the_tests_only_by_a_full_one() -> None:
    """An install of the demo's extras serves the demo but not the tests (which need Spark and
    the real clients); a full install serves both; a stale digest serves neither."""
    dev = _dev()
    assert dev.installed("abc analyze,redis", "abc", "analyze,redis")
    assert dev.installed("abc dev", "abc", "analyze,redis")
    assert not dev.installed("abc analyze,redis", "abc", "dev")
    assert not dev.installed("old dev", "abc", "dev")
    assert not dev.installed("abc", "abc", "dev")  # a stamp from before extras were recorded
