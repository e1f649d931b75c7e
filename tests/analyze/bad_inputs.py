"""The bad inputs of issue 18, built fresh for each test: each is a file a user could hand
``ingest`` or ``report``, and the ``FILE:LINE`` / ``FILE@BYTE`` error every reader must give it."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
T0 = 1_767_225_600_000_000_000


def otlp_span(**changes: Any) -> dict[str, Any]:
    """An OTLP JSON span; a change to None removes that member."""
    span: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": SPAN,
        "name": "op",
        "kind": 2,
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 1_000_000),
    }
    span.update(changes)
    return {k: v for k, v in span.items() if v is not None}


def request(*spans: dict[str, Any], scope_key: str = "scopeSpans") -> dict[str, Any]:
    """One OTLP JSON trace request, as the Collector's file exporter writes a line."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]
                },
                scope_key: [{"scope": {"name": "s"}, "spans": list(spans)}],
            }
        ]
    }


def flat_span(**changes: Any) -> dict[str, Any]:
    """A span in blameset's own flat JSONL; a change to None removes that member."""
    span: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "op",
        "kind": "server",
        "start_time_unix_nano": T0,
        "end_time_unix_nano": T0 + 1_000_000,
        "attributes": {},
        "resource": {},
    }
    span.update(changes)
    return {k: v for k, v in span.items() if v is not None}


def lines(*docs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)


def good_lines(n: int) -> bytes:
    """n OTLP lines of one span each (distinct ids)."""
    return lines(*(request(otlp_span(spanId=f"{i + 1:016x}")) for i in range(n)))


def nested(depth: int) -> dict[str, Any]:
    """An AnyValue of ``depth`` nested key-value lists."""
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


def flat_nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


def tokens(value: str) -> list[dict[str, Any]]:
    return [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": value}}]


def per_frame_zstd(*docs: dict[str, Any]) -> bytes:
    """The Collector file exporter's older JSON + zstd output: each request compressed alone and
    framed by its 4-byte big-endian length."""
    zstd = zstandard.ZstdCompressor()
    out = b""
    for doc in docs:
        frame = zstd.compress(json.dumps(doc).encode())
        out += struct.pack(">I", len(frame)) + frame
    return out


CASES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # name: (file name, content, the error after "FILE")
    "empty ids": (
        "empty-ids.jsonl",
        lambda: lines(request(otlp_span(traceId="", spanId=""), otlp_span(traceId="", spanId=""))),
        ":1: span without a traceId",
    ),
    "all-zero trace id": (
        "zero-trace.jsonl",
        lambda: good_lines(2) + lines(request(otlp_span(traceId="0" * 32))),
        ":3: traceId all zeros",
    ),
    "all-zero span id": (
        "zero-span.jsonl",
        lambda: lines(request(otlp_span(spanId="0" * 16))),
        ":1: spanId all zeros",
    ),
    "flat empty ids": (
        "flat-empty.jsonl",
        lambda: lines(flat_span(trace_id="", span_id="")),
        ":1: span without a trace_id",
    ),
    "flat zero span id": (
        "flat-zero.jsonl",
        lambda: lines(flat_span(), flat_span(span_id="0" * 16)),
        ":2: span_id all zeros",
    ),
    "misspelled scopeSpans": (
        "typo.jsonl",
        lambda: lines(request(otlp_span(), scope_key="scopeSpan")),
        ":1: unknown member 'scopeSpan' in resourceSpans",
    ),
    "misspelled spans": (
        "typo-spans.jsonl",
        lambda: good_lines(1).replace(b'"spans"', b'"span"'),
        ":1: unknown member 'span' in scopeSpans",
    ),
    "misspelled attributes": (
        "typo-attributes.jsonl",
        lambda: lines(request(otlp_span(atributes=tokens("5")))),
        ":1: unknown member 'atributes' in a span",
    ),
    "no span": (
        "no-span.jsonl",
        lambda: good_lines(1) + lines({"resourceSpans": []}),
        ":2: a trace request without any span",
    ),
    "start past 2262": (
        "late.jsonl",
        lambda: lines(request(otlp_span(startTimeUnixNano="9300000000000000000"))),
        ":1: startTimeUnixNano outside the times the table holds",
    ),
    "20-digit start": (
        "start20.jsonl",
        lambda: lines(request(otlp_span(startTimeUnixNano="1" + "0" * 19))),
        ":1: startTimeUnixNano outside the times the table holds",
    ),
    "400-digit start on an LLM span": (
        "start400.jsonl",
        lambda: lines(
            request(
                otlp_span(
                    startTimeUnixNano="1" * 400,
                    attributes=[
                        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                        *tokens("100"),
                    ],
                )
            )
        ),
        ":1: startTimeUnixNano outside the times the table holds",
    ),
    "400-digit end": (
        "end400.jsonl",
        lambda: lines(request(otlp_span(endTimeUnixNano="9" * 400))),
        ":1: endTimeUnixNano outside the times the table holds",
    ),
    "negative start": (
        "negative.jsonl",
        lambda: lines(flat_span(start_time_unix_nano=-5, end_time_unix_nano=5)),
        ":1: start_time_unix_nano outside the times the table holds",
    ),
    "no start": (
        "no-start.jsonl",
        lambda: good_lines(1) + lines(request(otlp_span(startTimeUnixNano=None))),
        ":2: span without a startTimeUnixNano",
    ),
    "end before start": (
        "end-first.jsonl",
        lambda: lines(request(otlp_span(endTimeUnixNano=str(T0 - 1)))),
        ":1: endTimeUnixNano before startTimeUnixNano",
    ),
    "flat end before start": (
        "flat-end-first.jsonl",
        lambda: lines(flat_span(end_time_unix_nano=T0 - 1)),
        ":1: end_time_unix_nano before start_time_unix_nano",
    ),
    "20-digit token count": (
        "tokens20.jsonl",
        lambda: lines(request(otlp_span(attributes=tokens("9" * 20)))),
        ":1: attribute gen_ai.usage.input_tokens outside the int64 range",
    ),
    "400-digit token count": (
        "tokens400.jsonl",
        lambda: lines(request(otlp_span(attributes=tokens("9" * 400)))),
        ":1: attribute gen_ai.usage.input_tokens outside the int64 range",
    ),
    "nesting 10,000 deep": (
        "deep.jsonl",
        lambda: b"[" * 10_000 + b"]" * 10_000 + b"\n",
        ":1: nested too deep",
    ),
    "an attribute 33 levels deep": (
        "deep-attribute.jsonl",
        lambda: lines(request(otlp_span(attributes=[{"key": "d", "value": nested(33)}]))),
        ":1: attribute 'd' nested too deep",
    ),
    "a flat attribute 33 levels deep": (
        "deep-flat.jsonl",
        lambda: lines(flat_span(attributes={"d": flat_nested(33)})),
        ":1: attribute 'd' nested too deep",
    ),
    "a bad first line": (
        "bad-first.jsonl",
        lambda: b"{broken\n" + good_lines(1),
        ":1: invalid JSON",
    ),
    "a cut metrics line among spans": (
        "cut-metrics.jsonl",
        lambda: good_lines(2) + b'{"resourceMetrics":[{"resource":{"attr\n' + good_lines(1),
        ":3: invalid JSON",
    ),
    "a cut logs line among spans": (
        "cut-logs.jsonl",
        lambda: good_lines(1) + b'{"resourceLogs":[{"scopeLogs": [}\n',
        ":2: invalid JSON",
    ),
}
"""Bad inputs refused at a line: (file name, content, what follows the file's name)."""


def compressed(kind: str, n: int) -> bytes:
    """n good lines (names that compress poorly, so a cut falls after whole blocks of them)
    compressed by ``kind``."""
    data = lines(
        *(
            request(otlp_span(spanId=f"{i + 1:016x}", name=hashlib.sha256(b"%d" % i).hexdigest()))
            for i in range(n)
        )
    )
    return gzip.compress(data) if kind == "gzip" else zstandard.ZstdCompressor().compress(data)


def truncated(kind: str, n: int = 600) -> tuple[bytes, int]:
    """:func:`compressed` cut at two thirds; (bytes, where it was cut)."""
    whole = compressed(kind, n)
    cut = len(whole) * 2 // 3
    return whole[:cut], cut


def write_case(folder: Path, case: str) -> tuple[Path, str]:
    """The case's file in ``folder`` and its expected error (the path and the rest)."""
    name, content, error = CASES[case]
    path = folder / name
    path.write_bytes(content())
    return path, f"{path}{error}"
