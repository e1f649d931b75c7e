"""What report and attribute share (cli/_common.py): reading their inputs, times and windows from
the command line, and writing the page; each failure is a message and exit 2, not a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from blameset.cli._common import span_window, when
from blameset.cli.app import app

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"
runner = CliRunner()


@pytest.mark.parametrize("command", ["report", "attribute"])
def test_bad_input_is_a_message_and_exit_2(command: str, tmp_path: Path) -> None:
    """A malformed trace file or a missing one is exit 2 naming the file, no traceback."""
    result = runner.invoke(app, [command, str(OTLP / "invalid" / "malformed.json")])
    assert result.exit_code == 2
    assert "malformed.json" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(app, [command, str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    assert "nope.jsonl" in missing.output


@pytest.mark.parametrize("command", ["report", "attribute"])
def test_an_unwritable_html_path_is_a_message(command: str, dataset: Path, tmp_path: Path) -> None:
    """--html into a folder that does not exist is exit 2, saying the page was not written."""
    result = runner.invoke(app, [command, str(dataset), "--html", str(tmp_path / "no" / "r.html")])
    assert result.exit_code == 2
    assert "cannot write the HTML report" in result.output


def test_times_without_a_zone_are_utc():
    """An ISO date or datetime from the command line is UTC unless it names its zone."""
    assert when("2026-11-02", "--since") == datetime(2026, 11, 2, tzinfo=UTC)
    assert when("2026-11-02T10:00+01:00", "--since") == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert when(None, "--since") is None


@pytest.mark.parametrize("text", ["2026-11-02", "2026-11-03..2026-11-02", "..2026-11-02"])
def test_a_window_is_from_before_to(text: str):
    """FROM..TO needs both ends, FROM first: anything else exits 2."""
    with pytest.raises(typer.Exit) as info:
        span_window(text, "--before")
    assert info.value.exit_code == 2


def test_a_window_reads_both_ends():
    """FROM..TO gives the two datetimes, in UTC."""
    assert span_window("2026-11-02..2026-11-03T12:00", "--after") == (
        datetime(2026, 11, 2, tzinfo=UTC),
        datetime(2026, 11, 3, 12, tzinfo=UTC),
    )
