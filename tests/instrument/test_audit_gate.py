"""The audit log's hash chain, the design gate, and their commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset import instrument
from blameset.analyze.gate import check_design
from blameset.cli.app import app
from blameset.instrument import request_context, traced
from blameset.instrument.audit import AuditLog, AuditLogDamaged, set_default, verify
from blameset.instrument.errors import PolicyViolation, taxonomy_markdown
from blameset.instrument.idempotency import idempotent
from blameset.instrument.testing import CapturedSpans
from tests.conftest import VS

runner = CliRunner()
DOCS = Path(__file__).parents[2] / "docs" / "backend"


def _log(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(n):
        log.record(actor=f"user-{i}", action="export_document", target=f"doc-{i}", result="ok")
    return path


def test_records_carry_who_what_when_trace_and_version(tmp_path: Path, spans: CapturedSpans):
    """Each record has actor, action, target, result, time, trace_id, version set and a chain."""
    log = AuditLog(tmp_path / "audit.jsonl")
    with request_context(tenant="acme", action_id="act-7"), traced("export_document"):
        record = log.record(actor="u1", action="export", target="doc-1", result="ok", bytes=1200)
    assert record["trace_id"] == f"{spans.one('export_document').context.trace_id:032x}"
    assert record["version_set_id"] == VS.id
    assert record["tenant"] == "acme"
    assert record["action_id"] == "act-7"
    assert record["details"] == {"bytes": 1200}
    assert record["seq"] == 1
    assert record["prev_hash"] == "0" * 64
    assert log.last_hash == record["hash"]
    assert verify(log.path).ok


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
def test_verify_names_the_first_tampered_line(tmp_path: Path, tamper: str):
    """An edited, a deleted and a reordered record are each caught, at the right line."""
    path = _log(tmp_path, 5)
    lines = path.read_text().splitlines()
    if tamper == "edit":
        record = json.loads(lines[2])
        record["result"] = "denied"
        lines[2] = json.dumps(record)
        expected_line, words = 3, "edited"
    elif tamper == "delete":
        del lines[1]
        expected_line, words = 2, "removed"
    else:
        lines[1], lines[2] = lines[2], lines[1]
        expected_line, words = 2, "reordered"
    path.write_text("\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok
    assert result.line == expected_line
    assert words in result.problem
    cli = runner.invoke(app, ["audit", "verify", str(path)])
    assert cli.exit_code == 1
    assert f"line {expected_line}" in cli.output


def test_a_cut_off_tail_is_caught_against_the_last_hash(tmp_path: Path):
    """Dropping the newest records leaves a valid chain; the kept last hash catches it."""
    path = _log(tmp_path, 3)
    last = AuditLog(path).last_hash
    path.write_text("\n".join(path.read_text().splitlines()[:2]) + "\n")
    assert verify(path).ok
    assert not verify(path, expect_last=last).ok
    assert runner.invoke(app, ["audit", "verify", str(path), "--expect-last", last]).exit_code == 1


def test_an_intact_log_verifies(tmp_path: Path):
    """blameset audit verify exits 0 on an intact chain."""
    path = _log(tmp_path, 3)
    result = runner.invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == 0
    assert "chain intact (3 records)" in result.output
    # it prints the last hash, so the next check can pass it as --expect-last
    assert AuditLog(path).last_hash in result.output
    assert verify(path).last_hash == AuditLog(path).last_hash


def test_audited_errors_are_recorded(tmp_path: Path, spans: CapturedSpans):
    """A SAFETY_VIOLATION (or its alias POLICY_VIOLATION) raised in a span is audited."""
    log = AuditLog(tmp_path / "audit.jsonl", emit=False)
    set_default(log)
    try:

        @traced("generate_outline")
        def handler() -> None:
            raise PolicyViolation("asked for a competitor's customer list")

        with request_context(actor="user-9", action_id="act-3"), pytest.raises(PolicyViolation):
            handler()
    finally:
        set_default(None)
    (record,) = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert record["trace_id"] == f"{spans.one('generate_outline').context.trace_id:032x}"
    assert record["actor"] == "user-9"
    assert record["action"] == "generate_outline"
    assert record["result"] == "SAFETY_VIOLATION"
    assert record["target"] == "act-3"


def test_audit_records_go_out_as_log_records(tmp_path: Path):
    """With telemetry configured, each audit record is also an OTel log record."""
    out = tmp_path / "spans.jsonl"
    with instrument.configured(version_set=VS, exporter=f"jsonl:{out}"):  # shut, then restored
        AuditLog(tmp_path / "audit.jsonl").record(actor="u", action="a", target="t", result="ok")
    (event,) = [json.loads(x) for x in (tmp_path / "spans.logs.jsonl").read_text().splitlines()]
    assert event["event_name"] == "blameset.audit"
    assert event["attributes"]["blameset.audit.result"] == "ok"


# --- taxonomy and gate commands -----------------------------------------------------------------


def test_taxonomy_command_prints_md_and_json():
    """blameset taxonomy --format md|json prints the table from code."""
    md = runner.invoke(app, ["taxonomy", "--format", "md"])
    assert md.exit_code == 0
    assert md.output == taxonomy_markdown()
    js = runner.invoke(app, ["taxonomy", "--format", "json"])
    rows = json.loads(js.output)
    assert {r["code"] for r in rows} >= {"INVALID_INPUT", "QUOTA_EXCEEDED", "INTERNAL"}
    assert runner.invoke(app, ["taxonomy", "--format", "xml"]).exit_code == 2


def test_the_design_doc_is_generated_from_code():
    """docs/backend/error-taxonomy.md holds the table the code prints, word for word."""
    assert taxonomy_markdown() in (DOCS / "error-taxonomy.md").read_text(encoding="utf-8")


def test_the_shipped_design_docs_pass_the_gate():
    """Both backend design documents name the four required elements."""
    result = runner.invoke(app, ["gate", *map(str, sorted(DOCS.glob("*.md")))])
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 2


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("幂等键 trace_id version_set 重试预算", []),
        ("Idempotency keys, trace id, version set and a retry budget.", []),
        ("trace_id and version_set only", ["idempotency key", "retry budget"]),
        ("", ["idempotency key", "trace_id", "version_set", "retry budget"]),
    ],
)
def test_gate_accepts_chinese_or_english_and_names_what_is_missing(tmp_path, text, missing):
    """Exit 0 with a pass line, or exit 1 listing each missing element and why it matters."""
    doc = tmp_path / "design.md"
    doc.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["gate", str(doc)])
    assert result.exit_code == (1 if missing else 0)
    for name in missing:
        assert f"- {name}:" in result.output


def test_the_idempotency_card_matches_the_code():
    """The card's promises (wait time, conflict code) are the decorator's defaults."""
    import inspect

    card = (DOCS / "idempotency.md").read_text(encoding="utf-8")
    wait = inspect.signature(idempotent).parameters["wait_s"].default
    assert f"waits up to {wait:g} s" in card
    assert "`IN_PROGRESS` (409)" in card


def test_an_edit_hidden_behind_a_duplicate_key_is_caught(tmp_path: Path):
    """A second "result" key placed before the real one would be ignored by JSON readers."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, emit=False)
    for i in range(3):
        log.record(actor="u", action="a", target=str(i), result="denied")
    lines = path.read_text().splitlines()
    lines[1] = '{"result":"ok",' + lines[1][1:]
    path.write_text("\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok
    assert result.line == 2


def test_a_partial_last_line_stops_appends_with_a_clear_error(tmp_path: Path):
    """After a crash mid-write, record() refuses with a message naming the file."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, emit=False)
    log.record(actor="u", action="a", target="t", result="ok")
    with path.open("a") as handle:
        handle.write('{"seq": 2, "actor": "u"')
    with pytest.raises(AuditLogDamaged, match=r"audit\.jsonl"):
        log.record(actor="u", action="a", target="t", result="ok")


def test_audit_failures_never_cost_the_span_its_outcome(tmp_path: Path, spans: CapturedSpans):
    """A broken audit log: the span still records the error; the violation audits once."""
    path = tmp_path / "audit.jsonl"
    path.write_text('{"broken')
    set_default(AuditLog(path, emit=False))
    try:

        @traced("inner")
        def inner() -> None:
            raise PolicyViolation("nope")

        @traced("outer")
        def outer() -> None:
            inner()

        with pytest.raises(PolicyViolation):
            outer()
    finally:
        set_default(None)
    assert spans.attributes("inner")["error.type"] == "SAFETY_VIOLATION"
    assert spans.attributes("outer")["blameset.final_status"] == "blocked"


def test_violations_are_audited_once_through_nested_spans(tmp_path: Path, spans: CapturedSpans):
    """One violation passing through three spans makes one audit record."""
    log = AuditLog(tmp_path / "audit.jsonl", emit=False)
    set_default(log)
    try:

        @traced.step("c")
        def c() -> None:
            raise PolicyViolation("x")

        @traced.step("b")
        def b() -> None:
            c()

        @traced("a")
        def a() -> None:
            b()

        with request_context(actor="u1"), pytest.raises(PolicyViolation):
            a()
    finally:
        set_default(None)
    records = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert [r["action"] for r in records] == ["c"]


def test_audit_verify_names_a_line_that_is_not_utf8(tmp_path: Path):
    """Invalid bytes are malformed input, not proven tampering: exit 2 naming the line, no
    traceback (issue 14: exit 1 only on proven tampering)."""
    path = tmp_path / "audit.jsonl"
    AuditLog(path, emit=False).record(actor="u", action="a", target="t", result="ok")
    with path.open("ab") as handle:
        handle.write(b"\xff\xfe not text\n")
    result = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == 2
    assert "line 2" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "text",
    [
        "每次写操作都要幂等键；日志记录trace_id和version_set；重试预算为3次。",
        "Writes carry idempotency keys; logs carry trace IDs and the version sets; retry budgets.",
        "幂等 key 由 action_id 构成；trace_id；version_set；重试次数预算 2。",
    ],
)
def test_the_gate_passes_realistic_documents(tmp_path: Path, text: str):
    """Terms run into Chinese text, plurals, and common Chinese phrasings all count."""
    doc = tmp_path / "design.md"
    doc.write_text(text, encoding="utf-8")
    assert check_design(doc).ok, [r.name for r in check_design(doc).missing]
