"""blameset budget status reads a store another process wrote, and creates none."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from blameset.cli.app import app

runner = CliRunner()


def test_a_missing_sqlite_store_is_not_created(tmp_path: Path):
    """--store sqlite:PATH of a file that is not there is exit 2, and no file appears."""
    path = tmp_path / "guard.db"
    result = runner.invoke(app, ["budget", "status", "--store", f"sqlite:{path}", "--tenant", "a"])
    assert result.exit_code == 2
    assert f"blameset budget status: no SQLite store at {path}" in result.output
    assert not path.exists()


def test_an_unknown_store_spec_is_named(tmp_path: Path):
    """A spec that is no store is exit 2 quoting it, no traceback."""
    result = runner.invoke(app, ["budget", "status", "--store", "mysql://x", "--tenant", "a"])
    assert result.exit_code == 2
    assert "cannot read store 'mysql://x': unknown store 'mysql://x'" in result.output
    assert "Traceback" not in result.output
