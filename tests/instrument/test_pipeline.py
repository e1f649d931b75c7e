"""configure(), the exporters, shutdown, telemetry faults and the telemetry-off path."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from blameset import instrument
from blameset.instrument import _config, _runtime, traced
from blameset.instrument._export import ConsoleSpanExporter
from blameset.instrument.testing import CapturedSpans, FakeClock, SequentialIds
from tests.conftest import VS

pytestmark = pytest.mark.usefixtures("restore_configuration")


@traced("op")
def op(x: int) -> int:
    return x + 1


def test_jsonl_exporter_writes_the_flat_format(tmp_path: Path):
    """jsonl:PATH writes one flat JSON object per span, flushed by shutdown()."""
    out = tmp_path / "nested" / "spans.jsonl"
    instrument.configure(
        service="writer-api",
        version_set=VS,
        exporter=f"jsonl:{out}",
        environment="staging",
        clock=FakeClock(),
        id_generator=SequentialIds(),
    )

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> None:
        instrument.record_usage(input_tokens=3, output_tokens=4)

    @traced("handler")
    def handler() -> None:
        complete()

    handler()
    instrument.shutdown()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["chat gpt-4o-2024-08-06", "handler"]
    llm, req = lines
    assert set(req) == {
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "status",
        "status_message",
        "resource",
        "attributes",
        "events",
    }
    assert req["trace_id"] == f"{1:032x}" and len(req["span_id"]) == 16
    assert req["parent_span_id"] is None
    assert llm["parent_span_id"] == req["span_id"]
    assert req["kind"] == "server" and llm["kind"] == "client"
    assert req["status"] == "unset"
    assert isinstance(req["start_time_unix_nano"], int)
    assert req["resource"]["service.name"] == "writer-api"
    assert req["resource"]["service.version"] == "3f2a91c"
    assert req["resource"]["deployment.environment.name"] == "staging"
    assert req["resource"]["blameset.version_set.id"] == VS.id
    assert req["attributes"]["blameset.final_status"] == "success"
    assert llm["attributes"]["gen_ai.usage.output_tokens"] == 4


def test_exception_events_and_error_status_in_the_flat_format(tmp_path: Path):
    """A failing span exports status error, a message, and an exception event."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")

    @traced("fails")
    def fails() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        fails()
    instrument.shutdown()
    (span,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert span["status"] == "error"
    assert "KeyError" in span["status_message"]
    assert span["events"][0]["name"] == "exception"
    assert span["events"][0]["attributes"]["exception.type"] == "KeyError"


def test_console_exporter_prints_flat_json_lines():
    """The console exporter prints the same flat format, one line per span."""
    stream = io.StringIO()
    captured = CapturedSpans()
    instrument.configure(version_set=VS, exporter=captured, batch=False)
    op(1)
    ConsoleSpanExporter(stream).export(captured.spans)
    assert json.loads(stream.getvalue())["name"] == "op"


def test_configure_again_latest_wins_and_flushes_the_previous(tmp_path: Path):
    """A second configure() flushes the first pipeline and takes over."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{first}")
    op(1)
    instrument.configure(version_set=VS.replace(prompt="v9"), exporter=f"jsonl:{second}")
    op(2)
    instrument.shutdown()
    a = [json.loads(x) for x in first.read_text().splitlines()]
    b = [json.loads(x) for x in second.read_text().splitlines()]
    assert len(a) == 1 and len(b) == 1
    assert b[0]["resource"]["blameset.version.prompt"] == "v9"
    assert b[0]["attributes"]["blameset.version_set.id"] == VS.replace(prompt="v9").id


def test_unknown_exporter_spec_is_a_clear_error():
    """A typo in the exporter spec fails at configure time, naming the choices."""
    with pytest.raises(ValueError, match="unknown exporter 'jsnl:x'"):
        instrument.configure(version_set=VS, exporter="jsnl:x")


def test_telemetry_off_calls_straight_through(tmp_path: Path):
    """exporter='none' records nothing from then on; results and errors are unchanged."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")
    op(1)
    instrument.configure(version_set=VS, exporter="none")
    assert _runtime.current_state().off
    assert op(2) == 3

    @traced("fails")
    def fails() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        fails()
    instrument.shutdown()
    assert len(out.read_text().splitlines()) == 1  # only the call made before 'none'


def test_otel_sdk_disabled_turns_telemetry_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """OTEL_SDK_DISABLED=true wins over the exporter argument."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")
    op(1)
    instrument.shutdown()
    assert not out.exists()


def test_default_exporter_follows_the_environment():
    """No exporter given: BLAMESET_EXPORTER, then OTLP when an endpoint is set, else JSONL."""
    assert _config.default_exporter({"BLAMESET_EXPORTER": "console"}) == "console"
    assert _config.default_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}) == "otlp"
    assert _config.default_exporter({}) == "jsonl:blameset-spans.jsonl"


# --- faults ------------------------------------------------------------------------------------


class RaisingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise OSError("collector unreachable")


class RaisingProcessor(SpanProcessor):
    def __init__(self, on: str) -> None:
        self.on = on

    def on_start(self, span, parent_context=None) -> None:
        if self.on == "start":
            raise RuntimeError("processor fault at start")

    def on_end(self, span) -> None:
        if self.on == "end":
            raise RuntimeError("processor fault at end")


@pytest.mark.parametrize("batch", [True, False])
def test_exporter_that_raises_never_reaches_the_caller(batch: bool):
    """An exporter raising on every batch: the service's calls return normally."""
    exporter = RaisingExporter()
    instrument.configure(version_set=VS, exporter=exporter, batch=batch)
    assert [op(i) for i in range(5)] == [1, 2, 3, 4, 5]
    instrument.shutdown()
    assert exporter.calls >= 1


@pytest.mark.parametrize("where", ["start", "end"])
def test_span_processor_fault_never_reaches_the_caller(
    where: str, caplog: pytest.LogCaptureFixture
):
    """A processor raising at span start or end: results and the user's own errors unchanged."""
    instrument.configure(
        version_set=VS, exporter=CapturedSpans(), processors=(RaisingProcessor(where),)
    )
    original = ValueError("user error")

    @traced("fails")
    def fails() -> None:
        raise original

    @traced("gen")
    def gen():
        yield 1
        yield 2

    @traced("coro")
    async def coro() -> int:
        return 7

    import asyncio

    with caplog.at_level(logging.ERROR, logger="blameset"):
        assert op(1) == 2
        assert list(gen()) == [1, 2]
        assert asyncio.run(coro()) == 7
        with pytest.raises(ValueError) as info:
            fails()
    assert info.value is original
    assert any("telemetry fault" in r.getMessage() for r in caplog.records)


def test_a_broken_clock_never_reaches_the_caller():
    """Even our own code failing (a clock that raises) leaves the call intact."""
    ticks = iter([1_000, 2_000])

    def clock() -> int:
        return next(ticks)  # raises StopIteration once exhausted

    captured = CapturedSpans()
    instrument.configure(version_set=VS, exporter=captured, batch=False, clock=clock)
    assert [op(i) for i in range(4)] == [1, 2, 3, 4]
    assert len(captured) == 1  # the first call had time enough for a span


def test_configured_restores_the_previous_configuration_open(tmp_path: Path):
    """instrument.configured() records the block's calls to its own exporter, then puts the
    configuration that was in force back, still exporting."""
    outer, inner = tmp_path / "outer.jsonl", tmp_path / "inner.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{outer}")

    @traced("op")
    def op(n: int) -> int:
        return n

    op(1)
    with instrument.configured(version_set=VS.replace(prompt="v9"), exporter=f"jsonl:{inner}"):
        op(2)
    op(3)
    instrument.shutdown()
    spans = [json.loads(line) for line in inner.read_text().splitlines()]
    assert len(spans) == 1
    assert spans[0]["resource"]["blameset.version.prompt"] == "v9"
    assert len(outer.read_text().splitlines()) == 2  # 1 and 3: the outer pipeline stayed open
