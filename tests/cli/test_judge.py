"""`blameset judge` as a CI step runs it: a subprocess whose exit code is the decision (0 PASS,
1 FAIL, 3 INCONCLUSIVE, 2 bad input), a short table for people and one JSON document with
--json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from bench.scenarios import Rollout, Scenario, generate, write_dataset

BLAMESET = str(Path(sys.executable).with_name("blameset"))  # the console script, as CI runs it
HANG_LIMIT_S = 300  # a bound on a hung process, not a timing assertion

HARMLESS = Scenario(
    "harmless_canary", rollouts=(Rollout({"config": "t0.7b"}, 0.2, share=0.3),), null=True
)


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An ingested dataset of a harmless config canary (60,000 requests), and the time just
    before the canary's 40th request."""
    spans = generate(HARMLESS, 60_000, seed=0)
    out = tmp_path_factory.mktemp("canary")
    write_dataset(spans, out)
    starts = (
        spans.filter(pl.col("is_root") & (pl.col("version.config") == "t0.7b"))
        .sort("start")["start"]
        .to_list()
    )
    return out, starts[40].isoformat()


def _judge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLAMESET, "judge", *args],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT_S,
        check=False,
    )


def test_a_harmless_canary_passes_with_exit_0(canary: tuple[Path, str]) -> None:
    """Exit 0 and the table says PASS, metric by metric, and what was compared."""
    result = _judge(str(canary[0]), "--candidate", "config=t0.7b")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASS")
    assert "latency_ms.p95" in result.stdout
    assert "Compared: baseline" in result.stdout and "side by side" in result.stdout


def test_a_harmful_change_fails_with_exit_1_naming_the_metric(dataset: Path) -> None:
    """The seeded prompt regression: exit 1, and the JSON names input_tokens.mean as failed."""
    result = _judge(str(dataset), "--candidate", "prompt=outline@v4", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["decision"] == "FAIL" and document["exit_code"] == 1
    failed = {m["metric"] for m in document["metrics"] if m["status"] == "fail"}
    assert "input_tokens.mean" in failed
    assert document["window"]["mode"] == "before_after"


def test_too_little_data_is_exit_3_with_the_requests_to_wait_for(canary: tuple[Path, str]) -> None:
    """--until the canary's 40th request: exit 3, and every open metric has a number."""
    result = _judge(str(canary[0]), "--candidate", "config=t0.7b", "--until", canary[1], "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["decision"] == "INCONCLUSIVE"
    opened = [m for m in document["metrics"] if m["status"] == "open"]
    assert opened and all(m["needed_requests"] > 0 for m in opened)
    assert "more config=t0.7b requests" in document["summary"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--candidate", "temperature=1"], "no component 'temperature'"),
        (["--candidate", "prompt=outline@v4", "--metric", "latency_ms.p95"], "NAME:LIMIT"),
        (["--candidate", "prompt=outline@v4", "--alpha", "2"], "alpha"),
    ],
)
def test_bad_input_is_exit_2_in_one_line(dataset: Path, args: list[str], says: str) -> None:
    """2 stays bad input: a sentence on stderr, no traceback."""
    result = _judge(str(dataset), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
