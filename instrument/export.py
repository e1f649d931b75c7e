"""Span exporters: the flat JSONL format of DESIGN.md (file or stdout), and exporter spec strings.

The flat format is one JSON object per span with hex ids, nanosecond times and plain attribute
values, so ``jq``, polars and ``blameset ingest`` read it without an OTLP decoder.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["ConsoleSpanExporter", "JsonlSpanExporter", "make_exporter", "span_to_dict"]

logger = logging.getLogger("blameset")

_KINDS = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}
_STATUSES = {0: "unset", 1: "ok", 2: "error"}


def _plain(value: Any) -> Any:
    # OTel stores sequence attributes as tuples; JSON wants lists. Bytes have no JSON form: hex.
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _attrs(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _plain(v) for k, v in (attributes or {}).items()}


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """One finished span in the flat JSONL format of DESIGN.md."""
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": _KINDS.get(span.kind.value, "internal"),
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": _STATUSES.get(status.status_code.value, "unset"),
        "status_message": status.description,
        "resource": _attrs(span.resource.attributes),
        "attributes": _attrs(span.attributes),
        "events": [
            {
                "name": event.name,
                "time_unix_nano": event.timestamp,
                "attributes": _attrs(event.attributes),
            }
            for event in span.events
        ],
    }


def _dumps(span: ReadableSpan) -> str:
    # default=str: a value the SDK let through but JSON cannot hold must not lose the span.
    return json.dumps(span_to_dict(span), separators=(",", ":"), default=str, ensure_ascii=False)


class JsonlSpanExporter(SpanExporter):
    """Appends spans to a JSONL file. Runs on the batch processor's thread, never the caller's."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            lines = "".join(_dumps(span) + "\n" for span in spans)
            with self._lock:
                if self._closed:
                    return SpanExportResult.FAILURE
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(lines)
                self._file.flush()
        except Exception:
            logger.exception("blameset: writing %d spans to %s failed", len(spans), self.path)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export() already flushed

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


class ConsoleSpanExporter(SpanExporter):
    """Prints each span as one flat JSON line (to stdout unless given another stream)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        stream = self._stream or sys.stdout
        try:
            stream.write("".join(_dumps(span) + "\n" for span in spans))
            stream.flush()
        except Exception:
            logger.exception("blameset: printing spans failed")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def make_exporter(spec: str | SpanExporter) -> tuple[SpanExporter, bool]:
    """Build the exporter a spec names. The flag says it prefers synchronous export (console)."""
    if isinstance(spec, SpanExporter):
        return spec, False
    name, _, arg = spec.partition(":")
    if name == "jsonl":
        if not arg:
            raise ValueError("exporter 'jsonl:PATH' needs a path, e.g. 'jsonl:spans.jsonl'")
        return JsonlSpanExporter(arg), False
    if name == "console":
        return ConsoleSpanExporter(), True
    if name == "otlp":
        return _otlp_exporter(arg or None), False
    raise ValueError(
        f"unknown exporter {spec!r}: use 'jsonl:PATH', 'console', 'otlp', 'none' "
        "or an OpenTelemetry SpanExporter"
    )


def _otlp_exporter(protocol: str | None) -> SpanExporter:
    """The real OTLP exporter, addressed by the standard OTEL_EXPORTER_OTLP_* variables."""
    import os

    chosen = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if chosen == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if chosen in ("http/protobuf", "http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpOTLPSpanExporter,
        )

        return HttpOTLPSpanExporter()
    raise ValueError(f"unknown OTLP protocol {chosen!r}: use 'grpc' or 'http/protobuf'")
