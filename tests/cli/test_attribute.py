"""blameset attribute from the shell: findings as a table or JSON, options that shape them, and
bad values named in one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset.cli.app import app

runner = CliRunner()


def test_attribute_json_names_the_prompt(dataset: Path) -> None:
    """--json: the token regression is put down to the prompt alone, the cost change to tokens."""
    result = runner.invoke(app, ["attribute", str(dataset), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    tokens = [f for f in document["findings"] if f["metric"] == "input_tokens.mean"]
    assert [f["components"] for f in tokens] == [["prompt"]]
    assert document["cost_decomposition"]["terms"]["tokens_per_call"] > 0


def test_attribute_table_reads_like_a_finding(dataset: Path) -> None:
    """The table names the verdict, the component change and the cost term that moved."""
    result = runner.invoke(app, ["attribute", str(dataset)])
    assert result.exit_code == 0, result.output
    assert "regression" in result.output
    assert "prompt: outline@v3 -> outline@v4" in result.output
    assert "tokens_per_call" in result.output


def test_a_bigger_min_effect_drops_the_smaller_finding(dataset: Path) -> None:
    """--min-effect 0.25 keeps the ~38% token rise and drops the ~14% cost rise."""
    result = runner.invoke(app, ["attribute", str(dataset), "--json", "--min-effect", "0.25"])
    assert result.exit_code == 0, result.output
    metrics = {f["metric"] for f in json.loads(result.output)["findings"]}
    assert metrics == {"input_tokens.mean"}  # cost rose ~14%, tokens ~38%


def test_a_cost_window_needs_both_sides(dataset: Path) -> None:
    """--before without --after is exit 2."""
    result = runner.invoke(app, ["attribute", str(dataset), "--before", "2026-11-01..2026-11-02"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--strata", "rout"], "cannot stratify by 'rout'"),
        (["--min-effect", "-1"], "min_effect"),
        (["--alpha", "2"], "alpha"),
        (["--before", "2026-11-02"], "FROM..TO"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(dataset: Path, args: list[str], says: str) -> None:
    """A value attribute cannot use is named, exit 2, no traceback."""
    result = runner.invoke(app, ["attribute", str(dataset), *args])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output
