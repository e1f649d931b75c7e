"""The blameset command line as a whole: the root app, its commands, `python -m blameset.cli`,
and a base install without the CLI stack."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

from blameset.cli.app import app

runner = CliRunner()

COMMANDS = (
    "taxonomy",
    "ingest",
    "check",
    "gate",
    "report",
    "attribute",
    "demo",
    "audit",
    "budget",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


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


def test_help_lists_every_command_in_order():
    """--help lists each command and noun, the commands in the order they were always shown."""
    result = runner.invoke(app, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    lines = [line.strip("│ ").split(" ")[0] for line in result.stdout.splitlines()]
    assert [name for name in lines if name in COMMANDS] == list(COMMANDS)


def test_no_command_shows_the_help():
    """`blameset` alone, or a noun alone, prints the usage and exits 2."""
    for args in ([], ["audit"], ["budget"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert "Usage" in result.output


def test_python_m_runs_the_same_command():
    """`python -m blameset.cli --help` is the blameset command."""
    result = subprocess.run(
        [sys.executable, "-m", "blameset.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    for command in COMMANDS:
        assert command in result.stdout


def test_without_typer_the_command_names_the_extra():
    """A base install (no typer) gets one sentence naming blameset[analyze], no traceback,
    from the console script's entry point and from python -m."""
    for run in (
        "from blameset.cli.app import main; main()",
        "import runpy; runpy.run_module('blameset.cli', run_name='__main__')",
    ):
        result = _python(f"import sys; sys.modules['typer'] = None\n{run}")
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "blameset: the command line needs the analysis extra: pip install 'blameset[analyze]'"
        )


def test_importing_the_cli_loads_no_analysis_or_telemetry():
    """`import blameset.cli.app` builds the commands without loading polars, rich, asyncio or
    instrument: they load when a command runs."""
    result = _python(
        "import sys, blameset.cli.app\n"
        "heavy = {'polars', 'rich', 'asyncio', 'opentelemetry', 'blameset.instrument'}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
