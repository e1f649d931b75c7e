"""The flat JSONL record format of DESIGN.md: a finished span or log record as one plain dict.

One object per span with hex ids, nanosecond times and plain attribute values, so ``jq``, polars
and ``blameset ingest`` read it without an OTLP decoder. The exporters, the spill folder and the
spilling pipeline all write records made here, so a file is the same whoever wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["log_to_dict", "plain_attributes", "span_to_dict"]

_KINDS = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}
_STATUSES = {0: "unset", 1: "ok", 2: "error"}


def _plain(value: Any) -> Any:
    # OTel stores sequence attributes as tuples; JSON wants lists. Bytes have no JSON form: hex.
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def plain_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attributes as JSON holds them (lists for tuples, hex for bytes)."""
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
        "resource": plain_attributes(span.resource.attributes),
        "attributes": plain_attributes(span.attributes),
        "events": [
            {
                "name": event.name,
                "time_unix_nano": event.timestamp,
                "attributes": plain_attributes(event.attributes),
            }
            for event in span.events
        ],
    }


def log_to_dict(record: Any) -> dict[str, Any]:
    """One OTel SDK log record (``ReadableLogRecord``/``ReadWriteLogRecord``) as a flat dict."""
    log = record.log_record
    resource = getattr(record, "resource", None)
    severity = log.severity_number
    return {
        "time_unix_nano": log.timestamp,
        "observed_time_unix_nano": log.observed_timestamp,
        "severity_text": log.severity_text,
        "severity_number": severity.value if severity is not None else None,
        "body": log.body,
        "trace_id": f"{log.trace_id:032x}" if log.trace_id else None,
        "span_id": f"{log.span_id:016x}" if log.span_id else None,
        "event_name": getattr(log, "event_name", None) or None,
        "resource": plain_attributes(resource.attributes) if resource is not None else {},
        "attributes": plain_attributes(log.attributes),
    }
