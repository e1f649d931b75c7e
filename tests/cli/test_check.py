"""blameset check: contract coverage per service and span kind, a gate for users' CI."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from typer.testing import CliRunner

from blameset import instrument
from blameset.analyze.check import check
from blameset.cli.app import app
from blameset.instrument import VersionSet, record_usage, traced

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"
runner = CliRunner()


def _our_telemetry(out: Path) -> None:
    app_log = logging.getLogger("checked-app")
    with instrument.configured(
        service="writer", version_set=VersionSet(code="c1", prompt="p1"), exporter=f"jsonl:{out}"
    ):
        handler = instrument.setup_logging(logger=app_log)
        app_log.setLevel(logging.INFO)
        try:

            @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
            def llm() -> None:
                record_usage(input_tokens=10, output_tokens=5)

            @traced.llm(model="gpt-4o-2024-08-06", provider="openai", name="streamed")
            def streamed() -> Iterator[str]:
                record_usage(input_tokens=10, output_tokens=2)
                yield "a"
                yield "b"

            @traced.tool("search")
            def tool() -> None:
                pass

            @traced("handler")
            def handler_fn() -> None:
                app_log.info("working")
                tool()
                llm()
                assert "".join(streamed()) == "ab"

            @traced("fails")
            def fails() -> None:
                raise KeyError("x")

            handler_fn()
            with contextlib.suppress(KeyError):
                fails()
        finally:
            app_log.removeHandler(handler)


def test_blamesets_own_telemetry_passes_at_full_coverage(tmp_path: Path):
    """Spans and log records written by instrument carry every required field."""
    out = tmp_path / "spans.jsonl"
    _our_telemetry(out)
    result = runner.invoke(app, ["check", str(out), str(tmp_path / "spans.logs.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["gaps"] == 0
    fields = {(r["kind"], r["field"]) for r in doc["rows"]}
    assert ("llm", "cost") in fields
    (streamed,) = [r for r in doc["rows"] if r["field"] == "ttft on streamed calls"]
    assert (streamed["kind"], streamed["spans"], streamed["covered"]) == ("llm", 1, 1)
    assert ("request", "error code on failures") in fields
    assert ("log", "trace_id") in fields


def test_other_tools_telemetry_fails_naming_the_gaps():
    """The OTel demo capture carries no version set: exit 1, naming service, kind and field."""
    result = runner.invoke(app, ["check", str(OTLP / "otel-demo-capture.jsonl")])
    assert result.exit_code == 1
    assert "version_set" in result.output
    assert "GAP" in result.output


def test_min_coverage_relaxes_the_gate():
    """--min-coverage 0 passes whatever is missing."""
    result = runner.invoke(
        app, ["check", str(OTLP / "otel-demo-capture.jsonl"), "--min-coverage", "0"]
    )
    assert result.exit_code == 0


def test_unreadable_input_exits_2():
    """A broken file is exit 2 with file and line, as for ingest."""
    result = runner.invoke(app, ["check", str(OTLP / "invalid" / "malformed.json")])
    assert result.exit_code == 2
    assert "malformed.json:21" in result.output


def test_check_reads_an_ingested_dataset(dataset):
    """The folder `blameset ingest` wrote is checked like the files it came from."""
    result = runner.invoke(app, ["check", str(dataset), "--json"])
    document = json.loads(result.output)
    assert {r["field"] for r in document["rows"]} >= {"trace_id", "version_set", "tokens"}


def test_the_json_is_the_results_document():
    """`check --json` prints analyze.check's result as its to_dict() says, gaps counted."""
    capture = str(OTLP / "otel-demo-capture.jsonl")
    result = runner.invoke(app, ["check", capture, "--json", "--min-coverage", "50"])
    assert result.exit_code == 1
    expected = check([capture], min_coverage=50.0)
    assert json.loads(result.stdout) == expected.to_dict()
    assert expected.to_dict()["gaps"] == len(expected.gaps) > 0
    assert not expected.ok


def test_min_coverage_is_a_percent():
    """--min-coverage outside 0-100 is exit 2 before anything is read."""
    result = runner.invoke(app, ["check", "no-such-file.jsonl", "--min-coverage", "150"])
    assert result.exit_code == 2
    assert "--min-coverage is a percent (0-100), not 150" in result.output


def test_no_input_records_says_so(tmp_path: Path):
    """An empty span file passes with a line saying nothing was found."""
    empty = tmp_path / "spans.jsonl"
    empty.write_text("")
    result = runner.invoke(app, ["check", str(empty)])
    assert result.exit_code == 0, result.output
    assert "no spans or log records found" in result.output


def _llm_span(span_id: str, **attributes: object) -> dict[str, object]:
    """One flat-format LLM span that answered: tokens, cost and the version set on it."""
    return {
        "trace_id": "ab" * 16,
        "span_id": span_id,
        "parent_span_id": None,
        "name": "chat gpt-4o-mini",
        "kind": "client",
        "start_time_unix_nano": 1_767_225_600_000_000_000,
        "end_time_unix_nano": 1_767_225_601_000_000_000,
        "status": "unset",
        "status_message": None,
        "attributes": {
            "blameset.span.kind": "llm",
            "blameset.version_set": "code=c1",
            "blameset.version_set.id": "0123456789ab",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
            "blameset.cost.usd": 0.001,
            **attributes,
        },
        "resource": {"service.name": "writer"},
        "events": [],
    }


def test_ttft_is_required_of_streamed_calls_only(tmp_path: Path):
    """A streamed call without a TTFT is a gap; a whole answer without one, or a stream the
    consumer closed before its first chunk, is not."""
    out = tmp_path / "spans.jsonl"
    spans = [
        _llm_span("01" * 8),  # a whole answer: no TTFT, none required
        _llm_span("02" * 8, **{"blameset.llm.streamed": True, "blameset.latency.ttft_ms": 250.0}),
        _llm_span(
            "03" * 8, **{"blameset.llm.streamed": True, "blameset.stream.closed_early": True}
        ),
    ]
    out.write_text("".join(json.dumps(s) + "\n" for s in spans))
    (row,) = [r for r in check([str(out)]).rows if r.field == "ttft on streamed calls"]
    assert (row.spans, row.covered) == (1, 1)
    spans.append(_llm_span("04" * 8, **{"blameset.llm.streamed": True}))
    out.write_text("".join(json.dumps(s) + "\n" for s in spans))
    result = check([str(out)])
    (row,) = [r for r in result.rows if r.field == "ttft on streamed calls"]
    assert (row.spans, row.covered) == (2, 1)
    assert [g.field for g in result.gaps] == ["ttft on streamed calls"]
