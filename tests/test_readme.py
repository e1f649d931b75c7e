"""The README's promises that code can check: its service example is examples/service.py, and
that example runs and writes the spans it says it does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_readme_shows_the_example_that_runs() -> None:
    """The README's service example is examples/service.py, verbatim."""
    code = (ROOT / "examples" / "service.py").read_text()
    assert f"```python\n{code}```" in (ROOT / "README.md").read_text()


def test_the_service_example_runs(tmp_path: Path) -> None:
    """The example runs and writes the request spans, costs, TTFT and idempotency hits it shows."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "service.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spans = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    requests = [s for s in spans if s["attributes"].get("blameset.span.kind") == "request"]
    assert [r["name"] for r in requests].count("generate_outline") == 2
    outline = next(r for r in requests if r["name"] == "generate_outline")["attributes"]
    assert outline["blameset.final_status"] == "success"
    assert outline["blameset.cost.usd"] > 0
    assert outline["blameset.latency.ttft_ms"] > 0
    hits = [
        r["attributes"].get("blameset.idempotency.hit")
        for r in requests
        if r["name"] == "export_document"
    ]
    assert hits == [False, True]
    canary = {
        r["attributes"]["blameset.version_set.id"]
        for r in requests
        if r["name"] == "generate_outline"
    }
    assert len(canary) == 2  # the prompt override is its own version set
