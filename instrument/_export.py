"""Span exporters: the flat JSONL format of DESIGN.md (file or stdout), and exporter spec strings.

The records themselves (span or log record -> dict) are ``_records``'s; this module writes them.
configure() wraps every exporter it builds or is given in :class:`ScrubbingSpanExporter` /
:class:`ScrubbingLogExporter`, so no signal leaves the process unscrubbed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._records import Scrubber, log_to_dict, span_to_dict

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "ConsoleSpanExporter",
    "JsonlLogExporter",
    "JsonlSpanExporter",
    "OtlpSettings",
    "ScrubbingLogExporter",
    "ScrubbingSpanExporter",
    "destination",
    "otlp_exporter",
    "sibling_log_path",
]

logger = logging.getLogger("blameset")


def _dumps(span: ReadableSpan) -> str:
    # default=str: a value the SDK let through but JSON cannot hold must not lose the span.
    return json.dumps(span_to_dict(span), separators=(",", ":"), default=str, ensure_ascii=False)


class _Appender:
    """Appends text to a file opened on first use; each write is flushed. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._closed = False

    def append(self, text: str, what: str) -> bool:
        """True when written; a failure is logged (never raised: exporters must not throw)."""
        try:
            with self._lock:
                if self._closed:
                    return False
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(text)
                self._file.flush()
        except Exception:
            logger.exception("blameset: writing %s to %s failed", what, self.path)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


class JsonlSpanExporter(SpanExporter):
    """Appends spans to a JSONL file. Runs on the batch processor's thread, never the caller's."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._out = _Appender(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            lines = "".join(_dumps(span) + "\n" for span in spans)
        except Exception:
            logger.exception("blameset: encoding %d spans failed", len(spans))
            return SpanExportResult.FAILURE
        ok = self._out.append(lines, f"{len(spans)} spans")
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export() already flushed

    def shutdown(self) -> None:
        self._out.close()


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


class JsonlLogExporter:
    """Appends OTel SDK log records to a JSONL file in the flat log format (the spill format)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._out = _Appender(path)

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        try:
            lines = "".join(
                json.dumps(log_to_dict(r), separators=(",", ":"), default=str) + "\n" for r in batch
            )
        except Exception:
            logger.exception("blameset: encoding %d log records failed", len(batch))
            return LogRecordExportResult.FAILURE
        ok = self._out.append(lines, f"{len(batch)} log records")
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._out.close()


class ScrubbingSpanExporter(SpanExporter):
    """Hands ``inner`` scrubbed copies of the spans (on the export thread, never the caller's
    when batched): secrets in names, attributes, events, status messages and the resource go."""

    def __init__(self, inner: SpanExporter, scrubber: Scrubber) -> None:
        self.inner = inner
        self._scrub = scrubber.span
        self._on_success: Callable[[], None] | None = None

    def on_success(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each export the collector took (the spill forwarder learns
        so that the collector is back: cheap, it sets a flag)."""
        self._on_success = callback

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            clean = [self._scrub(span) for span in spans]
        except Exception:
            logger.exception("blameset: scrubbing %d spans failed; not exported", len(spans))
            return SpanExportResult.FAILURE
        result = self.inner.export(clean)
        if result == SpanExportResult.SUCCESS and self._on_success is not None:
            self._on_success()
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class ScrubbingLogExporter:
    """The same for log records: bodies (stdlib messages, event bodies), attributes (``extra=``
    fields, exception text, audit fields) and the resource are scrubbed before ``inner``."""

    def __init__(self, inner: Any, scrubber: Scrubber) -> None:
        self.inner = inner
        self._scrub = scrubber.log
        self._on_success: Callable[[], None] | None = None

    def on_success(self, callback: Callable[[], None]) -> None:
        """As :meth:`ScrubbingSpanExporter.on_success`."""
        self._on_success = callback

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        try:
            clean = [self._scrub(record) for record in batch]
        except Exception:
            logger.exception("blameset: scrubbing %d log records failed; not exported", len(batch))
            return LogRecordExportResult.FAILURE
        result = self.inner.export(clean)
        if result == LogRecordExportResult.SUCCESS and self._on_success is not None:
            self._on_success()
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self.inner.shutdown()


def sibling_log_path(span_path: str | Path) -> Path:
    """Where JSONL mode writes log records: ``spans.jsonl`` -> ``spans.logs.jsonl``."""
    path = Path(span_path)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(stem + ".logs.jsonl")


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """Where and how OTLP goes; a None field is left to the standard OTEL_EXPORTER_OTLP_*
    variables, which the exporters read themselves (signal-specific ones first)."""

    endpoint: str | None = None
    """Base address: ``http://host:4318`` for HTTP (``/v1/traces`` and ``/v1/logs`` are added),
    ``host:4317`` or ``http://host:4317`` for gRPC."""
    protocol: str | None = None
    """``http/protobuf`` or ``grpc``."""
    headers: Mapping[str, str] | str | None = None
    """A mapping, or ``"k1=v1,k2=v2"`` as in ``OTEL_EXPORTER_OTLP_HEADERS``."""
    timeout: float | None = None
    """Seconds per export (the Python OTLP exporters read ``OTEL_EXPORTER_OTLP_TIMEOUT`` in
    seconds too)."""

    def protocol_for(self, signal: str, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        chosen = (
            self.protocol
            or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if chosen not in ("grpc", "http/protobuf"):
            raise ValueError(
                f"OTLP protocol {chosen!r} is not supported: use 'grpc' or 'http/protobuf'"
            )
        return chosen

    def header_dict(self) -> dict[str, str] | None:
        if self.headers is None:
            return None
        if isinstance(self.headers, str):  # as OTEL_EXPORTER_OTLP_HEADERS: URL-encoded values
            from urllib.parse import unquote

            pairs = (item.split("=", 1) for item in self.headers.split(",") if "=" in item)
            return {unquote(k.strip()).lower(): unquote(v.strip()) for k, v in pairs}
        return dict(self.headers)


def otlp_exporter(signal: str, settings: OtlpSettings) -> Any:
    """The real OTLP exporter for ``signal`` ("traces" or "logs") over the chosen protocol."""
    protocol = settings.protocol_for(signal)
    kwargs: dict[str, Any] = {}
    headers = settings.header_dict()
    if headers is not None:
        kwargs["headers"] = headers
    if settings.timeout is not None:
        kwargs["timeout"] = settings.timeout
    if protocol == "grpc":
        if settings.endpoint:
            # Passed as given: the exporter reads the scheme (http -> plaintext, https -> TLS).
            kwargs["endpoint"] = settings.endpoint
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(**kwargs)
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(**kwargs)
    if settings.endpoint:
        kwargs["endpoint"] = f"{settings.endpoint.rstrip('/')}/v1/{signal}"
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HttpLogExporter,
    )

    return HttpLogExporter(**kwargs)


def destination(signal: str, exporter: Any, settings: OtlpSettings | None = None) -> str:
    """Where ``exporter`` sends ``signal`` ("traces", "logs"), as the spill folder tells
    destinations apart: records spilled for one are re-sent to it only. OTLP: protocol, resolved
    endpoint and headers (the headers name the tenant; the spill folder keeps only a digest);
    a JSONL file: its path; any other exporter: its class."""
    inner = getattr(exporter, "inner", exporter)  # through the scrubbing wrapper
    if isinstance(inner, JsonlSpanExporter | JsonlLogExporter):
        return f"jsonl {inner.path.resolve()}"
    kind = type(inner)
    if not kind.__module__.startswith("opentelemetry.exporter.otlp"):
        return f"exporter {kind.__module__}.{kind.__qualname__}"
    chosen = settings or OtlpSettings()
    protocol = "grpc" if ".grpc" in kind.__module__ else "http/protobuf"
    env = os.environ
    upper = signal.upper()
    endpoint = chosen.endpoint or env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    endpoint = endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "localhost (default)"
    headers = chosen.header_dict()
    if headers is None:
        raw = env.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS") or env.get(
            "OTEL_EXPORTER_OTLP_HEADERS"
        )
        headers = OtlpSettings(headers=raw).header_dict() or {}
    return f"otlp {protocol} {endpoint.rstrip('/')} {sorted(headers.items())}"
