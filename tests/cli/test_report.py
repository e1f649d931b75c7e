"""blameset report from the shell: datasets and trace files in, a table, JSON or an HTML page
out; bad options are named with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from blameset.cli.app import app

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"
runner = CliRunner()


def test_report_groups_by_what_is_asked(dataset: Path) -> None:
    """--by route,prompt: one row per route and prompt, every request counted once."""
    result = runner.invoke(app, ["report", str(dataset), "--by", "route,prompt", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["by"] == ["route", "version.prompt"]
    assert len(document["rows"]) == 6  # 3 routes x 2 prompts
    assert sum(r["requests"] for r in document["rows"]) == document["totals"]["requests"] == 6000
    row = document["rows"][0]
    for key in ("latency_ms.p95", "ttft_ms.p50", "tpot_ms.p50", "cost_usd.mean", "error_rate"):
        assert key in row


def test_report_since_until_window(dataset: Path) -> None:
    """--since/--until keep the requests of that window only."""
    result = runner.invoke(
        app, ["report", str(dataset), "--json", "--since", "2026-11-02", "--until", "2026-11-03"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert len(rows) == 1  # only the candidate ran on the second day


def test_report_table_shows_the_totals(dataset: Path) -> None:
    """Without --json the report is a table titled with the requests and the total cost."""
    result = runner.invoke(app, ["report", str(dataset), "--by", "route"])
    assert result.exit_code == 0, result.output
    assert "6,000 requests" in result.output
    assert "$/request" in result.output


def test_report_writes_one_html_file(dataset: Path, tmp_path: Path) -> None:
    """--html writes one self-contained page (plotly inline) and says where."""
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(dataset), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert f"HTML report: {page}" in result.output.replace("\n", "")
    text = page.read_text()
    assert text.count('class="plotly-graph-div"') >= 5
    assert "<script src=" not in text  # plotly.js is inline: the file opens offline


def test_report_reads_other_tools_trace_files() -> None:
    """An OpenTelemetry demo capture (OTLP JSON lines) is reported like our own spans."""
    result = runner.invoke(app, ["report", str(OTLP / "otel-demo-capture.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["totals"]["requests"] > 0
    assert sum(r["requests"] for r in document["rows"]) == document["totals"]["requests"]


def test_bad_options_are_named(dataset: Path) -> None:
    """An unreadable --since and an unknown --by column are exit 2, naming what was wrong."""
    result = runner.invoke(app, ["report", str(dataset), "--since", "yesterday"])
    assert result.exit_code == 2
    assert "--since" in result.output
    result = runner.invoke(app, ["report", str(dataset), "--by", "colour"])
    assert result.exit_code == 2
    assert "colour" in result.output


def test_a_bad_bucket_is_one_line_and_exit_2(dataset: Path) -> None:
    """--bucket 2x is named, exit 2, no traceback."""
    result = runner.invoke(app, ["report", str(dataset), "--by", "time", "--bucket", "2x"])
    assert result.exit_code == 2, result.output
    assert "--bucket" in result.output
    assert "Traceback" not in result.output


def test_a_span_repeated_in_the_files_counts_once(tmp_path: Path) -> None:
    """The same spans twice in the input give the same totals as once."""
    source = OTLP / "python-style-base64-ids.jsonl"
    once = runner.invoke(app, ["report", str(source), "--json"])
    doubled = tmp_path / "twice.jsonl"
    doubled.write_bytes(source.read_bytes() * 2)
    twice = runner.invoke(app, ["report", str(doubled), "--json"])
    assert once.exit_code == twice.exit_code == 0
    assert json.loads(once.output)["totals"] == json.loads(twice.output)["totals"]
