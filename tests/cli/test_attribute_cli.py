"""blameset report / attribute from the shell: datasets and trace files in, tables, JSON and an
HTML page out; bad input is a message and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.scenarios import generate, write_dataset
from blameset.cli.app import app

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"
runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    write_dataset(generate("prompt_regression", 6000, seed=5), out)
    return out


def test_attribute_json_names_the_prompt(dataset: Path) -> None:
    result = runner.invoke(app, ["attribute", str(dataset), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    tokens = [f for f in document["findings"] if f["metric"] == "input_tokens.mean"]
    assert [f["components"] for f in tokens] == [["prompt"]]
    assert document["cost_decomposition"]["terms"]["tokens_per_call"] > 0


def test_attribute_table_reads_like_a_finding(dataset: Path) -> None:
    result = runner.invoke(app, ["attribute", str(dataset)])
    assert result.exit_code == 0, result.output
    assert "regression" in result.output
    assert "prompt: outline@v3 -> outline@v4" in result.output
    assert "tokens_per_call" in result.output


def test_a_bigger_min_effect_drops_the_smaller_finding(dataset: Path) -> None:
    result = runner.invoke(app, ["attribute", str(dataset), "--json", "--min-effect", "0.25"])
    assert result.exit_code == 0, result.output
    metrics = {f["metric"] for f in json.loads(result.output)["findings"]}
    assert metrics == {"input_tokens.mean"}  # cost rose ~14%, tokens ~38%


def test_report_groups_by_what_is_asked(dataset: Path) -> None:
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
    result = runner.invoke(
        app, ["report", str(dataset), "--json", "--since", "2026-11-02", "--until", "2026-11-03"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert len(rows) == 1  # only the candidate ran on the second day


def test_report_writes_one_html_file(dataset: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(dataset), "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.count('class="plotly-graph-div"') >= 5
    assert "<script src=" not in text  # plotly.js is inline: the file opens offline


def test_report_reads_other_tools_trace_files() -> None:
    result = runner.invoke(app, ["report", str(OTLP / "otel-demo-capture.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["totals"]["requests"] > 0
    assert sum(r["requests"] for r in document["rows"]) == document["totals"]["requests"]


@pytest.mark.parametrize("command", ["report", "attribute"])
def test_bad_input_is_a_message_and_exit_2(command: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, str(OTLP / "invalid" / "malformed.json")])
    assert result.exit_code == 2
    assert "malformed.json" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(app, [command, str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    assert "nope.jsonl" in missing.output


def test_bad_options_are_named(dataset: Path) -> None:
    result = runner.invoke(app, ["report", str(dataset), "--since", "yesterday"])
    assert result.exit_code == 2
    assert "--since" in result.output
    result = runner.invoke(app, ["report", str(dataset), "--by", "colour"])
    assert result.exit_code == 2
    assert "colour" in result.output
    result = runner.invoke(app, ["attribute", str(dataset), "--before", "2026-11-01..2026-11-02"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report", "--by", "time", "--bucket", "2x"], "--bucket"),
        (["attribute", "--strata", "rout"], "cannot stratify by 'rout'"),
        (["attribute", "--min-effect", "-1"], "min_effect"),
        (["attribute", "--alpha", "2"], "alpha"),
        (["attribute", "--before", "2026-11-02"], "FROM..TO"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(dataset: Path, args: list[str], says: str) -> None:
    result = runner.invoke(app, [args[0], str(dataset), *args[1:]])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_an_unwritable_html_path_is_a_message(dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(dataset), "--html", str(tmp_path / "no" / "r.html")])
    assert result.exit_code == 2
    assert "cannot write the HTML report" in result.output


def test_a_span_repeated_in_the_files_counts_once(tmp_path: Path) -> None:
    source = OTLP / "python-style-base64-ids.jsonl"
    once = runner.invoke(app, ["report", str(source), "--json"])
    doubled = tmp_path / "twice.jsonl"
    doubled.write_bytes(source.read_bytes() * 2)
    twice = runner.invoke(app, ["report", str(doubled), "--json"])
    assert once.exit_code == twice.exit_code == 0
    assert json.loads(once.output)["totals"] == json.loads(twice.output)["totals"]
