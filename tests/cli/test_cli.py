"""The blameset command line."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from blameset.cli.app import app

runner = CliRunner()


def test_version():
    """--version prints the installed distribution's version."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"blameset {version('blameset')}"


def test_help_describes_the_tool():
    """--help exits 0 and says what the tool is for."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "version_set" in result.stdout
