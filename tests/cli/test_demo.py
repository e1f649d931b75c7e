"""`blameset demo`: the simulated writing assistant's traffic leads the attribution to the injected
prompt regression, sees the model canary, uses the guard rails as a service would, and leaves one
self-contained HTML report and telemetry switched off as it found it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset.analyze import describe_finding
from blameset.cli.app import app
from blameset.cli.demo import GPT_4O, GPT_4O_MINI, DemoResult, plan_traffic, run
from blameset.instrument.audit import verify

REQUESTS = 1200  # fewer than the default 3000, still far past what the finding needs
SEED = 7


@pytest.fixture(scope="module")
def demo(demo_run: DemoResult) -> DemoResult:
    """The session's demo run (tests/conftest.py), shared with the notebook tests."""
    assert demo_run.requests >= REQUESTS
    return demo_run


def _spans(demo: DemoResult) -> list[dict]:
    with demo.spans_file.open() as handle:
        return [json.loads(line) for line in handle]


def _prompt_findings(demo: DemoResult, metric: str) -> list:
    return [
        f
        for f in demo.attribution.findings
        if f.metric == metric
        and f.scope.get("changes", {}).get("prompt") == ["outline@v3", "outline@v4"]
    ]


@pytest.mark.parametrize("metric", ["cost_usd.mean", "input_tokens.mean"])
def test_attribution_names_the_prompt_change(demo, metric):
    """v4's longer system prompt is found as a regression of the prompt component alone."""
    (finding,) = _prompt_findings(demo, metric)
    assert finding.verdict == "regression"
    assert finding.components == ["prompt"]
    assert finding.ci[0] > 1.0


def test_the_cost_regression_is_about_38_percent(demo):
    """The injected size comes back: cost per request up by roughly 38%, and the printed
    sentence says so."""
    (finding,) = _prompt_findings(demo, "cost_usd.mean")
    assert 1.30 < finding.effect < 1.46
    sentence = describe_finding(finding)
    assert sentence.startswith("prompt outline@v3 -> outline@v4 raised cost_usd.mean by ")
    assert "(regression)" in sentence


def test_no_finding_blames_the_model_for_the_prompt_change(demo):
    """Findings of the cutover name the prompt; the model only in the canary's episode."""
    for finding in demo.attribution.findings:
        changes = finding.scope.get("changes", {})
        if "prompt" in changes:
            assert finding.components == ["prompt"]
        if finding.components == ["model"]:
            assert changes == {"model": [GPT_4O, GPT_4O_MINI]}


def test_the_model_canary_is_an_episode(demo):
    """A tenth of day one's traffic on gpt-4o-mini is seen as a canary that changed the model."""
    canaries = [e for e in demo.attribution.episodes if e.kind == "canary"]
    assert [e.changes for e in canaries] == [{"model": (GPT_4O, GPT_4O_MINI)}]
    cutovers = [e for e in demo.attribution.episodes if e.kind == "cutover"]
    assert [e.changes for e in cutovers] == [{"prompt": ("outline@v3", "outline@v4")}]


def test_the_report_is_one_self_contained_file(demo):
    """report.html inlines plotly.js and loads nothing from the network."""
    html = demo.html.read_text(encoding="utf-8")
    assert demo.html == demo.out / "report.html"
    assert html.count('class="plotly-graph-div"') >= 5
    assert "Plotly.newPlot" in html
    assert len(html) > 1_000_000  # plotly.js itself (~4.5 MB) is in the page
    loads = re.compile(
        r"""<(script|link|img|iframe)\b[^>]*\s(src|href)\s*=\s*["']?(https?:)?//""", re.IGNORECASE
    )
    assert not loads.search(html)
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.IGNORECASE)


def test_requests_span_the_three_actions_with_the_latency_breakdown(demo):
    """Each action is a request span with its route; LLM spans carry TTFT and priced usage;
    tools and the publish queue show up in the breakdown."""
    spans = _spans(demo)
    routes = {s["attributes"].get("http.route") for s in spans if s["parent_span_id"] is None}
    assert routes == {"/v1/outline", "/v1/expand", "/v1/export"}
    llm = [s for s in spans if s["attributes"].get("blameset.span.kind") == "llm"]
    assert llm
    assert all(
        s["attributes"].get("blameset.cost.usd", 0) > 0 for s in llm if s["status"] != "error"
    )
    ttft = [s["attributes"]["blameset.latency.ttft_ms"] for s in llm if s["status"] != "error"]
    assert 150 < sorted(ttft)[len(ttft) // 2] < 1500  # a few hundred ms, simulated
    tools = {s["attributes"].get("gen_ai.tool.name") for s in spans}
    assert {"search_sources", "render_document"} <= tools
    queued = [s for s in spans if s["attributes"].get("blameset.span.kind") == "queue"]
    assert queued
    assert all(s["attributes"]["blameset.boundary"] == "async" for s in queued)


def test_spans_are_on_the_simulated_clock(demo):
    """Two days of traffic in simulated time, starting at the demo's fixed date."""
    starts = [s["start_time_unix_nano"] for s in _spans(demo)]
    first, last = min(starts) / 1e9, max(starts) / 1e9
    assert 1.9 * 86_400 < last - first < 2.0 * 86_400
    plan = plan_traffic(REQUESTS, SEED)
    assert demo.requests == len(plan)


def test_guard_rails_did_their_work(demo):
    """Budgets degraded some free-tier requests, failures carry taxonomy codes, duplicate
    exports were answered from the idempotency store, and the audit chain is intact."""
    assert demo.statuses.get("degraded", 0) > 0
    roots = [s for s in _spans(demo) if s["parent_span_id"] is None]
    codes = {s["attributes"].get("error.type") for s in roots} - {None}
    assert codes <= {
        "INVALID_INPUT",
        "QUOTA_EXCEEDED",
        "UPSTREAM_TIMEOUT",
        "BUDGET_EXHAUSTED",
        "SAFETY_VIOLATION",
    }
    assert "BUDGET_EXHAUSTED" in codes
    degraded = [s for s in roots if s["attributes"].get("blameset.final_status") == "degraded"]
    assert all(s["attributes"]["blameset.boundary"] == "degraded" for s in degraded)
    hits = [s for s in roots if s["attributes"].get("blameset.idempotency.hit") is True]
    assert hits, "no client retry of an export was answered from the store"
    check = verify(demo.audit_log)
    assert check.ok, check.problem
    exports = [s for s in roots if s["attributes"].get("http.route") == "/v1/export"]
    succeeded = [s for s in exports if s["attributes"]["blameset.final_status"] == "success"]
    assert check.records >= len(succeeded)


def _without_event_times(line: str) -> dict:
    # Budget and retry events are added without a timestamp, so the OpenTelemetry SDK stamps them
    # with the wall clock, not the configured one (instrument/budget.py _event, retry.note).
    span = json.loads(line)
    for event in span["events"]:
        if event["name"].startswith(("blameset.budget.", "blameset.retry")):
            event.pop("time_unix_nano")
    return span


def test_same_seed_same_spans(tmp_path):
    """Everything is seeded: two runs write the same spans, ids and times included."""
    first = run(tmp_path / "a", requests=60, seed=3)
    second = run(tmp_path / "b", requests=60, seed=3)
    spans = [
        sorted(
            (_without_event_times(line) for line in r.spans_file.read_text().splitlines()),
            key=lambda s: s["span_id"],
        )
        for r in (first, second)
    ]
    assert spans[0] == spans[1]
    findings = [[f.to_dict() for f in r.attribution.findings] for r in (first, second)]
    assert findings[0] == findings[1]


def test_cli_runs_the_demo_and_says_where_the_files_are(tmp_path):
    """`blameset demo --out DIR` exits 0, prints the findings heading and the report's path;
    a second run into the same folder replaces the demo's files instead of appending."""
    out = tmp_path / "demo"
    for _ in range(2):
        result = CliRunner().invoke(
            app, ["demo", "--out", str(out), "--requests", "80", "--seed", "1"]
        )
        assert result.exit_code == 0, result.output
    assert "Findings" in result.output
    assert str(out / "report.html") in result.output.replace("\n", "")
    spans = [json.loads(line) for line in (out / "spans.jsonl").read_text().splitlines()]
    assert len({s["span_id"] for s in spans}) == len(spans)
    assert verify(out / "audit.jsonl").ok


def test_help_says_where_the_default_folder_is():
    """--help names the default output folder."""
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "blameset-demo" in result.output


def test_requests_must_be_positive(tmp_path):
    """--requests 0 is refused with a usage error, before anything runs."""
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--requests", "0"])
    assert result.exit_code == 2
    assert not any(tmp_path.iterdir())


def test_files_listed_exist(demo):
    """Every file the demo prints exists."""
    for label, path in demo.files.items():
        assert Path(path).exists(), label


def test_the_demo_will_not_take_over_a_folder_it_did_not_write(tmp_path):
    """`--out` names the files a real service writes (spans.jsonl, audit.jsonl, dataset/): a
    folder with other files in it is refused, untouched."""
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.txt").write_text("keep")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--requests", "20"])
    assert result.exit_code == 2
    assert "not written by blameset demo" in result.output
    assert (tmp_path / "dataset" / "mine.txt").read_text() == "keep"


def test_the_demo_uses_only_public_names_of_blameset():
    """The demo is written as a user's service: it imports no private module or name of
    blameset.instrument or blameset.analyze (no `_runtime` state swapping)."""
    import ast

    import blameset.cli.demo as package

    private = []
    for source in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("blameset."):
                parts = node.module.split(".")
                names = [alias.name for alias in node.names]
                if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
                    private.append(f"{source.name}:{node.lineno} {node.module} {names}")
            if isinstance(node, ast.Attribute) and node.attr == "_runtime":
                private.append(f"{source.name}:{node.lineno} ._runtime")
    assert private == []
