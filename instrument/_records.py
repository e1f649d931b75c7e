"""The flat JSONL record format of DESIGN.md: a finished span or log record as one plain dict.

One object per span with hex ids, nanosecond times and plain attribute values, so ``jq``, polars
and ``blameset ingest`` read it without an OTLP decoder. The exporters, the spill folder and the
spilling pipeline all write records made here, so a file is the same whoever wrote it.

:class:`Scrubber` is the one scrubbing pass every exported signal goes through (span names,
attributes, events, status messages and resources; log bodies and attributes): the exporters and
the spill folder are handed scrubbed copies, whether content capture is on or off.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Status

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from ._redact import Redactor

__all__ = ["Scrubber", "log_to_dict", "plain_attributes", "span_to_dict"]

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


def _raw(attributes: Any) -> dict[str, Any]:
    """The plain dict behind the SDK's attribute mappings (iterating a ``BoundedAttributes``
    through its Mapping interface costs a Python call per key; this runs for every span)."""
    if attributes is None:
        return {}
    if type(attributes) is dict:
        return attributes
    inner = getattr(attributes, "_dict", None)
    if type(inner) is dict:
        return inner
    return dict(attributes)


_UNSEEN = object()
_PLAIN_KEYS = 4096  # as many keys as the redactor judges and remembers
_CLEAN_STRINGS = 8192  # as many strings as it remembers


_fast_clean: Callable[[Any, set[str], set[str], dict[str, str], Any], bool] | None
try:  # the native check of a span needing no scrubbing (optional: built with the package)
    from ._scrubfast import clean as _fast_clean
except ImportError:  # pragma: no cover - a build without a C compiler
    _fast_clean = None


class _ScrubbedSpan(ReadableSpan):
    """A span already through the scrubber (a second pass would change nothing; it is skipped)."""


class Scrubber:
    """Scrubbed copies of finished spans and log records, made off the caller's thread (by the
    exporters and the spill writer). What the analysis joins on (ids, times, kinds) is kept; every
    string a payload can reach goes through the redactor, by key name and by shape."""

    def __init__(self, redactor: Redactor) -> None:
        self.redact = redactor
        self._resource: tuple[Resource, Resource] | None = None
        # What earlier spans showed to need no scrubbing: keys that are not a credential's,
        # and short strings the redactor leaves as they are (each bounded like its caches).
        self._plain_keys: set[str] = set()
        self._clean: set[str] = set()

    def attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        raw = _raw(attributes)
        changed = self._changed(raw)
        return dict(raw) if changed is None else changed

    def _changed(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """The scrubbed attributes, or None when scrubbing changes none of them (the common
        case: no copy is made)."""
        if not raw:
            return None
        redact = self.redact
        value, keys, seen = redact.value, redact.key_marks, redact.seen
        clean_strings = self._clean
        # The common case in C-level set operations: every key known plain, every value a
        # number or a string already known clean, but for a few (a new action id, the
        # latencies), which alone go through the checks below. Anything else (a credential's
        # key, a sequence, a string that changes) takes the full loop after it.
        if not raw.keys() - self._plain_keys:
            try:
                rest = set(raw.values())
            except TypeError:  # an unhashable value (a map): the full loop
                rest = None
            if rest is not None:
                rest -= clean_strings
                for v in rest:
                    kind = type(v)
                    if kind is int or kind is float or kind is bool:
                        continue
                    if kind is not str:
                        break
                    clean = seen.get(v)
                    if clean is None:
                        clean = redact(v)
                    if clean != v:
                        break
                    if v in seen:  # short enough for the redactor to remember: so do we
                        self._remember_clean(v)
                else:
                    return None
        plain_keys = self._plain_keys
        out: dict[str, Any] | None = None
        # Inlined, and the key verdicts read from the redactor's dict rather than through a
        # call: this runs for every attribute of every span, on the export thread, which holds
        # the GIL against the service's own threads while it does.
        for k, v in raw.items():
            kind = type(v)
            if kind is int or kind is float or kind is bool:
                # Numbers pass whatever their key; the key is judged for the shortcut above
                # (where a string may come under it next time).
                if (
                    k not in plain_keys
                    and len(plain_keys) < _PLAIN_KEYS
                    and redact.key_mark(k) is None
                ):
                    plain_keys.add(k)
                continue
            if kind is str and keys.get(k, _UNSEEN) is None:
                if len(plain_keys) < _PLAIN_KEYS:
                    plain_keys.add(k)
                clean = seen.get(v)
                if clean is None:
                    clean = redact(v)
                if clean == v and v in seen:
                    self._remember_clean(v)
            else:
                clean = value(k, v)  # a credential key, a key not seen yet, or a non-string
            if clean is not v and clean != v:
                if out is None:
                    out = dict(raw)
                out[k] = clean
        return out

    def _remember_clean(self, text: str) -> None:
        if len(self._clean) >= _CLEAN_STRINGS:
            self._clean.clear()
        self._clean.add(text)

    def resource(self, resource: Resource) -> Resource:
        """The resource scrubbed once (it is the same object on every span of a provider)."""
        cached = self._resource
        if cached is not None and cached[0] is resource:
            return cached[1]
        from opentelemetry.sdk.resources import Resource

        attributes = self._changed(_raw(resource.attributes))
        clean = resource if attributes is None else Resource(attributes, resource.schema_url)
        self._resource = (resource, clean)
        return clean

    def span(self, span: ReadableSpan) -> ReadableSpan:
        if isinstance(span, _ScrubbedSpan):
            return span
        cached = self._resource
        if (
            _fast_clean is not None
            and cached is not None
            and cached[1] is cached[0]
            and _fast_clean(span, self._plain_keys, self._clean, self.redact.seen, cached[0])
        ):
            return span  # the common case, answered in C: see _scrubfast.c
        redact = self.redact
        original_status = status = span.status
        if status.description:
            clean_description = redact(status.description)
            if clean_description != status.description:
                status = Status(status.status_code, clean_description)
        original_name = span.name
        name = redact.seen.get(original_name) or redact(original_name)  # names repeat: cached
        # `is None`, not `or`: the truth of a BoundedAttributes is a Python-level __len__ call
        # (an empty one gives the same empty dict either way).
        held = getattr(span, "_attributes", None)
        if held is None:
            held = span.attributes
        # Inline, as they cost a Python call each on every exported span: the SDK's attribute
        # dict, the resource scrubbed already, and whether there are events read off the SDK's
        # deque, not through ``span.events``, which copies them into a new tuple under a lock
        # (~0.4 us, most of it for the common case of none); any other shape falls back to the
        # public property.
        inner = getattr(held, "_dict", None)
        original = inner if type(inner) is dict else _raw(held)
        attributes = self._changed(original)
        original_resource = span.resource
        if cached is not None and cached[0] is original_resource:
            resource = cached[1]
        else:
            resource = self.resource(original_resource)
        queue = getattr(getattr(span, "_events", None), "_dq", None)
        events = (span.events if queue else ()) if type(queue) is deque else span.events
        clean_events = [self._changed(_raw(e.attributes)) for e in events] if events else []
        if (
            attributes is None
            and name == original_name
            and status is original_status
            and resource is original_resource
            and (not clean_events or all(c is None for c in clean_events))
        ):
            return span  # nothing to hide: no copy (the common case)
        return _ScrubbedSpan(
            name=name,
            context=span.get_span_context(),
            parent=span.parent,
            resource=resource,
            attributes=dict(original) if attributes is None else attributes,
            events=[
                Event(e.name, dict(_raw(e.attributes)) if c is None else c, e.timestamp)
                for e, c in zip(events, clean_events, strict=True)
            ],
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def log(self, record: Any) -> Any:
        """A copy of an SDK log record (``ReadableLogRecord``/``ReadWriteLogRecord``) with its
        body, attributes and resource scrubbed."""
        log = copy.copy(record.log_record)
        body = log.body
        if isinstance(body, str):
            log.body = self.redact(body)
        elif body is not None:
            log.body = self.redact.value("body", body)
        log.attributes = self.attributes(log.attributes)
        changes: dict[str, Any] = {"log_record": log}
        resource = getattr(record, "resource", None)
        if resource is not None:
            changes["resource"] = self.resource(resource)
        return dataclasses.replace(record, **changes)

    def span_dict(self, span: ReadableSpan) -> dict[str, Any]:
        return span_to_dict(self.span(span))

    def log_dict(self, record: Any) -> dict[str, Any]:
        return log_to_dict(self.log(record))
