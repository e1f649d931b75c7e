"""configure() and the OpenTelemetry globals: blameset's providers become the global ones when
none is set, its processors join an application's SDK provider when one is, a provider that takes
none is named in a warning, and configured() leaves the globals as it found them.

OpenTelemetry sets each global once per process, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import json, logging, sys
from pathlib import Path
from opentelemetry import _logs, trace
from blameset import instrument
from blameset.instrument import VersionSet, request_context, traced
VS = VersionSet(code="c1", prompt="outline@v4")
OUT = Path(sys.argv[1])

def spans(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

def library_call():
    # What openai-v2 or FastAPI do: a tracer from the global provider, a span of their own.
    tracer = trace.get_tracer("some.library")
    with tracer.start_as_current_span("library work") as span:
        span.set_attribute("library.thing", 1)

@traced("handler")
def handler():
    library_call()
"""


def run(tmp_path: Path, body: str) -> Any:
    """Run PRELUDE + body in a fresh interpreter; what it printed last, as JSON."""
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_blamesets_providers_become_the_global_ones(tmp_path: Path):
    """With no provider set, a library's span made through the global tracer is exported with
    blameset's, in the request's trace, stamped on start with version set, tenant and action id;
    a library's log record goes to blameset's log file."""
    result, _ = run(
        tmp_path,
        """
        instrument.configure(service="svc", version_set=VS, exporter=f"jsonl:{OUT}/s.jsonl")
        with request_context(tenant="acme", action_id="act-1", versions={"prompt": "v9"}):
            handler()
        _logs.get_logger("some.library").emit(body="library record", event_name="lib.event")
        instrument.shutdown()
        by_name = {s["name"]: s for s in spans(OUT / "s.jsonl")}
        logs = [json.loads(l) for l in (OUT / "s.logs.jsonl").read_text().splitlines()]
        print(json.dumps({
            "global": type(trace.get_tracer_provider()).__name__,
            "global_logs": type(_logs.get_logger_provider()).__name__,
            "library": by_name["library work"],
            "handler": by_name["handler"],
            "log_bodies": [l.get("body") for l in logs],
        }))
        """,
    )
    assert result["global"] == "BlamesetTracerProvider"
    assert result["global_logs"] == "BlamesetLoggerProvider"
    library, request = result["library"], result["handler"]
    assert library["trace_id"] == request["trace_id"]
    assert library["parent_span_id"] == request["span_id"]
    attrs = library["attributes"]
    assert attrs["blameset.version_set"] == request["attributes"]["blameset.version_set"]
    assert attrs["blameset.version_set"] == "code=c1;prompt=v9"  # the request's override
    assert attrs["blameset.version_set.id"] == request["attributes"]["blameset.version_set.id"]
    assert attrs["blameset.version.prompt"] == "v9"
    assert attrs["blameset.tenant.id"] == "acme"
    assert attrs["blameset.action_id"] == "act-1"
    assert library["resource"]["blameset.version.code"] == "c1"  # the resource's components
    assert "library record" in result["log_bodies"]


def test_an_applications_sdk_provider_gets_blamesets_processors(tmp_path: Path):
    """With the application's own SDK providers set first, blameset makes no second global one:
    both pipelines see every span (ours and the library's), and ours carry every version
    component on the span, since the resource is the application's."""
    result, _ = run(
        tmp_path,
        """
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        app_spans = InMemorySpanExporter()
        app_provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
        app_provider.add_span_processor(SimpleSpanProcessor(app_spans))
        trace.set_tracer_provider(app_provider)
        app_logs = InMemoryLogRecordExporter()
        app_logger_provider = LoggerProvider()
        app_logger_provider.add_log_record_processor(SimpleLogRecordProcessor(app_logs))
        _logs.set_logger_provider(app_logger_provider)

        instrument.configure(service="svc", version_set=VS, exporter=f"jsonl:{OUT}/s.jsonl")
        instrument.configure(service="svc", version_set=VS, exporter=f"jsonl:{OUT}/s.jsonl")
        with request_context(tenant="acme"):
            handler()
        _logs.get_logger("some.library").emit(body="library record")
        instrument.shutdown()
        ours = {s["name"]: s for s in spans(OUT / "s.jsonl")}
        logs = [json.loads(l) for l in (OUT / "s.logs.jsonl").read_text().splitlines()]
        print(json.dumps({
            "global_is_app": trace.get_tracer_provider() is app_provider,
            "forwarders": sum(
                type(p).__name__ == "ForwardingSpanProcessor"
                for p in app_provider._active_span_processor._span_processors
            ),
            "app_names": sorted(s.name for s in app_spans.get_finished_spans()),
            "ours": ours,
            "app_log_bodies": [r.log_record.body for r in app_logs.get_finished_logs()],
            "our_log_bodies": [l.get("body") for l in logs],
        }))
        """,
    )
    assert result["global_is_app"]
    assert result["forwarders"] == 1  # configure() twice: still one
    assert result["app_names"] == ["handler", "library work"]
    ours = result["ours"]
    assert sorted(ours) == ["handler", "library work"]
    for span in ours.values():
        attrs = span["attributes"]
        assert attrs["blameset.version_set"] == "code=c1;prompt=outline@v4"
        assert attrs["blameset.version.code"] == "c1"
        assert attrs["blameset.version.prompt"] == "outline@v4"
        assert span["resource"]["service.name"] == "app"
    assert ours["library work"]["attributes"]["blameset.tenant.id"] == "acme"
    assert "library record" in result["app_log_bodies"]
    assert "library record" in result["our_log_bodies"]


def test_a_provider_that_takes_no_processors_is_named_in_a_warning(tmp_path: Path):
    """A global provider of another kind is left alone, blameset's own spans still recorded,
    and one warning says which provider it is and that library spans do not reach blameset."""
    result, stderr = run(
        tmp_path,
        """
        logging.basicConfig(level=logging.WARNING)
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        instrument.configure(service="svc", version_set=VS, exporter=f"jsonl:{OUT}/s.jsonl")
        instrument.configure(service="svc", version_set=VS, exporter=f"jsonl:{OUT}/s.jsonl")
        handler()
        instrument.shutdown()
        print(json.dumps([s["name"] for s in spans(OUT / "s.jsonl")]))
        """,
    )
    assert result == ["handler"]
    warnings = [line for line in stderr.splitlines() if "NoOpTracerProvider" in line]
    assert len(warnings) == 1, stderr
    assert "do not reach it" in warnings[0]


def test_configured_puts_the_globals_back(tmp_path: Path):
    """After a configured() block the process has no global provider again, so the
    application's own set_tracer_provider works; a library's tracer taken inside the block
    follows the configuration in force (none: it records nothing)."""
    result, _ = run(
        tmp_path,
        """
        from opentelemetry.sdk.trace import TracerProvider
        with instrument.configured(version_set=VS, exporter=f"jsonl:{OUT}/s.jsonl"):
            inside = type(trace.get_tracer_provider()).__name__
            tracer = trace.get_tracer("some.library")
            with tracer.start_as_current_span("inside"):
                pass
        with tracer.start_as_current_span("after") as after:
            after_recording = after.is_recording()
        before_set = type(trace.get_tracer_provider()).__name__
        before_set_logs = type(_logs.get_logger_provider()).__name__
        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        print(json.dumps({
            "inside": inside,
            "after_recording": after_recording,
            "before_set": before_set,
            "before_set_logs": before_set_logs,
            "set_worked": trace.get_tracer_provider() is mine,
            "exported": [s["name"] for s in spans(OUT / "s.jsonl")],
        }))
        """,
    )
    assert result["inside"] == "BlamesetTracerProvider"
    assert result["exported"] == ["inside"]
    assert not result["after_recording"]
    assert result["before_set"] == "ProxyTracerProvider"
    assert result["before_set_logs"] == "ProxyLoggerProvider"
    assert result["set_worked"]


def test_capture_spans_puts_the_globals_back(tmp_path: Path):
    """A library's span inside capture_spans() is captured; after the block the process has no
    global provider again, so the application's own set_tracer_provider works."""
    result, _ = run(
        tmp_path,
        """
        from opentelemetry.sdk.trace import TracerProvider
        from blameset.instrument.testing import capture_spans
        with capture_spans(version_set=VS) as captured:
            handler()
        names = sorted(s.name for s in captured.spans)
        before_set = type(trace.get_tracer_provider()).__name__
        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        print(json.dumps({
            "names": names,
            "before_set": before_set,
            "set_worked": trace.get_tracer_provider() is mine,
        }))
        """,
    )
    assert result["names"] == ["handler", "library work"]
    assert result["before_set"] == "ProxyTracerProvider"
    assert result["set_worked"]
