"""Readers: every trace file blameset meets, into one shape of span record.

Formats, told apart by content (not only by name): the flat JSONL of blameset's exporters and
spill folder; OTLP JSON (a request per line as the Collector's file exporter writes it, one
pretty-printed request, ``{"result": ...}`` wrappers; ids hex in any case or base64, int64 as
strings or numbers, kind and status as numbers or enum names); OTLP protobuf (one message, or the
file exporter's 4-byte big-endian length-prefixed frames); each of them gzip or zstd compressed
(one stream, or zstd per frame); folders and globs of such files.

A line or frame that cannot be read raises :class:`BadInput` naming the file, the line (or byte
offset) and the problem; with ``skip_bad=True`` it is counted per file and reason instead.
Lines of other signals (metrics, logs) are counted, never silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import glob
import gzip
import io
import json
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from .columns import (
    ATTRIBUTE_COLUMNS,
    FLAT_KINDS,
    ID_BYTES,
    KIND_BY_NAME,
    KIND_BY_NUMBER,
    STATUS_BY_NAME,
    STATUS_BY_NUMBER,
    Value,
)

__all__ = [
    "BadInput",
    "ReadReport",
    "SpanRecord",
    "expand_inputs",
    "json_line_chunks",
    "read_file",
    "read_json_lines_chunk",
]

SpanRecord = dict[str, Any]
"""trace_id, span_id, parent_span_id (hex or None), name, kind, start_ns, end_ns, status,
status_message, resource (dict), attributes (dict), events (list)."""

_NUMBERS: tuple[tuple[tuple[str, ...], type[int] | type[float]], ...] = tuple(
    (c.attributes, int if c.value is Value.COUNT else float)
    for c in ATTRIBUTE_COLUMNS
    if c.value in (Value.COUNT, Value.NUMBER)
)
"""(attribute names, the type the table reads the first of them as) of the number columns."""


def _number_problem(attrs: dict[str, Any]) -> str | None:
    """Why an attribute the table reads as a number is not one (``int()``/``float()`` of the
    first alias present, as the table takes it), or None. Asked here, where the file and line
    are known: the table, built later, could only fail with a traceback."""
    checks = [
        (next((n for n in names if attrs.get(n) not in (None, "")), None), kind)
        for names, kind in _NUMBERS
    ]
    for name, kind in checks:
        value = None if name is None else attrs.get(name)
        if value is None:
            continue
        try:
            kind(value)
        except OverflowError:
            return f"attribute {name} = {str(value)[:40]!r}... is too large for a number"
        except (TypeError, ValueError):
            return f"attribute {name} = {str(value)[:80]!r} is not a number"
    return None


_KINDS = dict(enumerate(KIND_BY_NUMBER))
_FLAT_KINDS = frozenset(FLAT_KINDS)
_STATUS = dict(enumerate(STATUS_BY_NUMBER))
_TRACE_ID, _SPAN_ID = ID_BYTES["trace_id"], ID_BYTES["span_id"]
_HEX = re.compile(r"[0-9a-fA-F]*")


class BadInput(ValueError):
    """Input that cannot be read: ``str()`` is ``FILE:LINE: problem`` (or ``FILE@BYTE``)."""

    def __init__(self, file: str, where: str, problem: str) -> None:
        super().__init__(f"{file}{where}: {problem}")
        self.file = file
        self.where = where
        self.problem = problem


@dataclass
class ReadReport:
    """What was read and what was not: nothing is dropped without being counted here."""

    files: int = 0
    spans: int = 0
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(file, reason) -> lines or frames skipped (only with skip_bad)."""
    other_signals: Counter[str] = field(default_factory=Counter)
    """Signal ("metrics", "logs") -> lines of it seen and passed over."""
    decoders: Counter[str] = field(default_factory=Counter)
    """Reader ("native", "rows") -> chunks or files it read: why an ingest was as
    fast or slow as it was (a chunk the native decoder refuses goes to a slower reader)."""
    keep_logs: bool = False
    logs: list[dict[str, Any]] = field(default_factory=list)
    """Flat log records seen, when ``keep_logs`` (``blameset check`` looks at them)."""

    @property
    def skipped_lines(self) -> int:
        return sum(self.skipped.values())


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named, globbed, or found in folders (recursively), in a stable order."""
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif any(ch in text for ch in "*?["):
            out += sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            if not path.exists():
                raise BadInput(text, "", "no such file or folder")
            out.append(path)
    return out


# --- bytes ---------------------------------------------------------------------------------


def _zstd(data: bytes, name: str) -> bytes:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency of the analyze extra
        raise BadInput(name, "", "zstd input needs the 'zstandard' package") from None
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        return bytes(reader.read())
    except zstandard.ZstdError as exc:
        raise BadInput(name, "", f"not a readable zstd stream ({exc})") from None


# --- values --------------------------------------------------------------------------------


def _id(value: Any, size: int, name: str, where: str, what: str) -> str | None:
    """An OTLP id as lower-case hex: hex in any case, or base64 (protobuf's JSON mapping)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadInput(name, where, f"{what} is not a string: {value!r}")
    if len(value) == size * 2 and _HEX.fullmatch(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise BadInput(
            name,
            where,
            f"{what} {value!r} is neither {size * 2} hex digits nor base64 of {size} bytes",
        )
    return raw.hex()


def _any_value(value: Any) -> Any:
    """OTLP JSON AnyValue -> a plain value."""
    if not isinstance(value, dict) or not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "stringValue":
        return inner
    if kind == "intValue":
        return int(inner)
    if kind == "doubleValue":
        return float(inner)
    if kind == "boolValue":
        return bool(inner)
    if kind == "bytesValue":
        return inner  # base64 text, kept as is
    if kind == "arrayValue":
        return [_any_value(v) for v in (inner or {}).get("values", [])]
    if kind == "kvlistValue":
        return {
            kv.get("key"): _any_value(kv.get("value")) for kv in (inner or {}).get("values", [])
        }
    return None


def _attributes(items: Any) -> dict[str, Any]:
    """OTLP key-values as a dict; an entry without a key is passed over, one whose key is not a
    string is unreadable (TypeError: the caller names the line)."""
    if not items:
        return {}
    out: dict[str, Any] = {}
    for kv in items:
        if "key" not in kv:
            continue
        if not isinstance(kv["key"], str):
            raise TypeError(f"attribute key {kv['key']!r} is not a string")
        out[kv["key"]] = _any_value(kv.get("value"))
    return out


def _int(value: Any, name: str, where: str, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadInput(name, where, f"{what} is not an integer: {value!r}") from None


def _kind(value: Any, name: str, where: str) -> str:
    if value is None:
        return "internal"
    if isinstance(value, int):
        if value in _KINDS:
            return _KINDS[value]
    elif isinstance(value, str):
        if value in KIND_BY_NAME:
            return KIND_BY_NAME[value]
        if value.lower() in _FLAT_KINDS:
            return value.lower()
    raise BadInput(name, where, f"span kind {value!r} is not an OTLP SpanKind")


def _status(status: Any) -> tuple[str, str | None]:
    if not isinstance(status, dict):
        return "unset", None
    code = status.get("code", 0)
    text = _STATUS.get(code) if isinstance(code, int) else STATUS_BY_NAME.get(str(code), "unset")
    return text or "unset", status.get("message") or None


# --- OTLP JSON ------------------------------------------------------------------------------


def _otlp_json_spans(doc: Any, name: str, where: str) -> Iterator[SpanRecord]:
    for rs in doc.get("resourceSpans") or doc.get("resource_spans") or []:
        resource = _attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("scope_spans") or []:
            scope = ss.get("scope") or {}
            for span in ss.get("spans") or []:
                status, message = _status(span.get("status"))
                yield {
                    "trace_id": _id(span.get("traceId"), _TRACE_ID, name, where, "traceId"),
                    "span_id": _id(span.get("spanId"), _SPAN_ID, name, where, "spanId"),
                    "parent_span_id": _id(
                        span.get("parentSpanId"), _SPAN_ID, name, where, "parentSpanId"
                    ),
                    "name": span.get("name", ""),
                    "kind": _kind(span.get("kind"), name, where),
                    "start_ns": _int(
                        span.get("startTimeUnixNano"), name, where, "startTimeUnixNano"
                    ),
                    "end_ns": _int(span.get("endTimeUnixNano"), name, where, "endTimeUnixNano"),
                    "status": status,
                    "status_message": message,
                    "resource": resource,
                    "scope": scope.get("name"),
                    "attributes": _attributes(span.get("attributes")),
                    "events": [
                        {
                            "name": e.get("name", ""),
                            "time_unix_nano": _int(
                                e.get("timeUnixNano"), name, where, "event time"
                            ),
                            "attributes": _attributes(e.get("attributes")),
                        }
                        for e in span.get("events") or []
                    ],
                }


def _other_signal(doc: dict[str, Any]) -> str | None:
    for key, signal in (
        ("resourceMetrics", "metrics"),
        ("resource_metrics", "metrics"),
        ("resourceLogs", "logs"),
        ("resource_logs", "logs"),
        ("resourceProfiles", "profiles"),
    ):
        if key in doc:
            return signal
    return None


def _unwrap(doc: Any) -> Any:
    while (
        isinstance(doc, dict)
        and "result" in doc
        and len(doc) <= 2
        and isinstance(doc["result"], dict)
    ):
        doc = doc["result"]
    return doc


# --- flat JSONL -----------------------------------------------------------------------------


def _flat_span(doc: dict[str, Any], name: str, where: str) -> SpanRecord:
    for required in ("trace_id", "span_id", "start_time_unix_nano"):
        if required not in doc:
            raise BadInput(name, where, f"flat span without {required!r}")
    for mapping in ("resource", "attributes"):
        if not isinstance(doc.get(mapping) or {}, dict):
            raise BadInput(name, where, f"flat span whose {mapping!r} is not an object")
    kind = doc.get("kind") or "internal"
    if kind not in _FLAT_KINDS:
        raise BadInput(name, where, f"span kind {kind!r} is not one of {sorted(_FLAT_KINDS)}")
    return {
        "trace_id": _id(doc.get("trace_id"), _TRACE_ID, name, where, "trace_id"),
        "span_id": _id(doc.get("span_id"), _SPAN_ID, name, where, "span_id"),
        "parent_span_id": _id(doc.get("parent_span_id"), _SPAN_ID, name, where, "parent_span_id"),
        "name": doc.get("name", ""),
        "kind": kind,
        "start_ns": _int(doc.get("start_time_unix_nano"), name, where, "start_time_unix_nano"),
        "end_ns": _int(doc.get("end_time_unix_nano"), name, where, "end_time_unix_nano"),
        "status": doc.get("status") or "unset",
        "status_message": doc.get("status_message"),
        "resource": doc.get("resource") or {},
        "scope": None,
        "attributes": doc.get("attributes") or {},
        "events": doc.get("events") or [],
    }


def _is_flat(doc: dict[str, Any]) -> bool:
    return "span_id" in doc and "trace_id" in doc


def _is_flat_log(doc: dict[str, Any]) -> bool:
    return "start_time_unix_nano" not in doc and (
        "severity_text" in doc or ("body" in doc and "time_unix_nano" in doc)
    )


# --- protobuf --------------------------------------------------------------------------------


def _proto_spans(data: bytes, name: str, where: str) -> Iterator[SpanRecord]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        head = data[:40]
        if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):  # text, not protobuf
            raise BadInput(
                name,
                where,
                f"neither JSON lines of spans nor OTLP protobuf (text starting {head.decode()!r})",
            ) from None
        raise BadInput(name, where, f"not an OTLP ExportTraceServiceRequest ({exc})") from None
    for rs in request.resource_spans:
        resource = _proto_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield {
                    "trace_id": span.trace_id.hex() or None,
                    "span_id": span.span_id.hex() or None,
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "name": span.name,
                    "kind": _KINDS.get(span.kind, "internal"),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "status": _STATUS.get(span.status.code, "unset"),
                    "status_message": span.status.message or None,
                    "resource": resource,
                    "scope": ss.scope.name or None,
                    "attributes": _proto_attributes(span.attributes),
                    "events": [
                        {
                            "name": e.name,
                            "time_unix_nano": e.time_unix_nano,
                            "attributes": _proto_attributes(e.attributes),
                        }
                        for e in span.events
                    ],
                }


def _proto_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_proto_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _proto_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _proto_attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _proto_value(kv.value) for kv in items}


def _frames(data: bytes) -> list[tuple[int, bytes]] | None:
    """The file exporter's ``<4-byte big-endian length><message>`` frames, if ``data`` is
    exactly a sequence of them; None otherwise."""
    frames = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            return None
        (size,) = struct.unpack_from(">I", data, offset)
        if size == 0 or offset + 4 + size > len(data):
            return None
        frames.append((offset, data[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    return frames or None


# --- the entry point -------------------------------------------------------------------------


def _stream(path: Path, name: str) -> IO[bytes]:
    """The file's bytes, decompressed on the fly (gzip, zstd), without reading it whole."""
    handle = path.open("rb")
    magic = handle.peek(4)[:4] if hasattr(handle, "peek") else b""
    if magic[:2] == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(fileobj=handle))
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a dependency of the analyze extra
            raise BadInput(name, "", "zstd input needs the 'zstandard' package") from None
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        return io.BufferedReader(reader)
    return handle


def _open(path: Path, name: str) -> tuple[IO[bytes], bytes]:
    """The file's (decompressed) stream and its first 64 KiB, which tell its format."""
    try:
        stream = _stream(path, name)
        head = stream.peek(1 << 16)[: 1 << 16] if hasattr(stream, "peek") else b""
    except FileNotFoundError as exc:
        raise BadInput(name, "", f"cannot read ({exc.strerror})") from None
    except Exception as exc:  # a corrupt compressed header
        raise BadInput(name, "", f"not a readable compressed stream ({exc})") from None
    return stream, head


def read_file(path: Path, report: ReadReport, *, skip_bad: bool = False) -> Iterator[SpanRecord]:
    """The spans in one file, whatever its format; counts what it skips in ``report``.

    JSON lines are read line by line (memory follows a line, not the file); a single JSON
    document and protobuf are read whole.
    """
    name = str(path)
    stream, head = _open(path, name)
    report.files += 1
    with stream:
        if head.lstrip()[:1] in (b"{", b"["):
            # JSON lines when the first non-empty line is a JSON value by itself (it may be far
            # longer than any peek: a Collector batch of thousands of spans is one line).
            skipped, first = _first_line(stream, name)
            if _parses_bytes(first):
                yield from _read_json_lines(stream, name, report, skip_bad, first, skipped)
                return
            rest = _read_rest(stream, name)
            data = b"\n" * skipped + first + rest
        else:
            data = _read_rest(stream, name)
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        yield from _read_json(data, name, report, skip_bad)
    elif not data.strip():
        return
    else:
        yield from _read_proto(data, name, report, skip_bad)


def _bad(report: ReadReport, skip_bad: bool, error: BadInput) -> None:
    if not skip_bad:
        raise error
    report.skipped[(error.file, error.problem.split(" (")[0][:80])] += 1


def _read_json(data: bytes, name: str, report: ReadReport, skip_bad: bool) -> Iterator[SpanRecord]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data[: exc.start].count(b"\n") + 1
        _bad(report, skip_bad, BadInput(name, f":{line_no}", "not UTF-8 text"))
        text = data.decode("utf-8", errors="replace")
    # JSON lines were streamed by read_file; what reaches here is one (pretty-printed) document.
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        _bad(report, skip_bad, BadInput(name, f":{exc.lineno}", f"invalid JSON ({exc.msg})"))
        return
    except ValueError as exc:  # an integer of more digits than Python converts
        _bad(report, skip_bad, BadInput(name, "", f"invalid JSON ({exc})"))
        return
    yield from _json_doc(doc, name, ":1", report, skip_bad)


def _first_line(stream: IO[bytes], name: str) -> tuple[int, bytes]:
    """(empty lines skipped, the first non-empty line)."""
    skipped = 0
    while True:
        try:
            line = stream.readline()
        except Exception as exc:
            raise BadInput(name, ":1", f"unreadable ({exc})") from None
        if not line or line.strip():
            return skipped, line
        skipped += 1


def _read_rest(stream: IO[bytes], name: str) -> bytes:
    try:
        return stream.read()
    except Exception as exc:
        raise BadInput(name, "", f"not a readable compressed stream ({exc})") from None


def _parses_bytes(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _read_json_lines(
    stream: IO[bytes],
    name: str,
    report: ReadReport,
    skip_bad: bool,
    first: bytes | None,
    skipped: int,
) -> Iterator[SpanRecord]:
    number = skipped
    pending = first
    while True:
        try:
            raw, pending = (pending, None) if pending is not None else (stream.readline(), None)
        except Exception as exc:  # truncated or corrupt compressed data
            _bad(report, skip_bad, BadInput(name, f":{number + 1}", f"unreadable ({exc})"))
            return
        if not raw:
            return
        number += 1
        if not raw.strip():
            continue
        where = f":{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            _bad(report, skip_bad, BadInput(name, where, "not UTF-8 text"))
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            _bad(
                report,
                skip_bad,
                BadInput(name, where, f"invalid JSON ({exc.msg} at column {exc.colno})"),
            )
            continue
        except ValueError as exc:  # an integer of more digits than Python converts
            _bad(report, skip_bad, BadInput(name, where, f"invalid JSON ({exc})"))
            continue
        yield from _json_doc(doc, name, where, report, skip_bad)


def _json_doc(
    doc: Any, name: str, where: str, report: ReadReport, skip_bad: bool
) -> Iterator[SpanRecord]:
    doc = _unwrap(doc)
    if isinstance(doc, list):
        for item in doc:
            yield from _json_doc(item, name, where, report, skip_bad)
        return
    if not isinstance(doc, dict):
        _bad(report, skip_bad, BadInput(name, where, "not a JSON object"))
        return
    try:
        if "resourceSpans" in doc or "resource_spans" in doc:
            spans = list(_otlp_json_spans(doc, name, where))
        elif _is_flat(doc) and not _is_flat_log(doc):
            spans = [_flat_span(doc, name, where)]
        else:
            signal = _other_signal(doc) or ("logs" if _is_flat_log(doc) else None)
            if signal is None:
                raise BadInput(name, where, "neither a span nor an OTLP request")
            report.other_signals[signal] += 1
            if report.keep_logs and _is_flat_log(doc):
                report.logs.append(doc)
            return
    except BadInput as error:
        _bad(report, skip_bad, error)
        return
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:  # an intValue "x"
        _bad(report, skip_bad, BadInput(name, where, f"unreadable value ({exc})"))
        return
    for span in spans:
        if problem := _number_problem(span["attributes"]):
            _bad(report, skip_bad, BadInput(name, where, problem))
            return
    report.spans += len(spans)
    yield from spans


def _read_proto(data: bytes, name: str, report: ReadReport, skip_bad: bool) -> Iterator[SpanRecord]:
    frames = _frames(data)
    if frames is None:
        frames = [(0, data)]
    for offset, payload in frames:
        if payload[:4] == b"\x28\xb5\x2f\xfd":  # the file exporter's older per-frame zstd
            payload = _zstd(payload, name)
        try:
            spans = list(_proto_spans(payload, name, f"@{offset}"))
            for span in spans:
                if problem := _number_problem(span["attributes"]):
                    raise BadInput(name, f"@{offset}", problem)
        except BadInput as error:
            _bad(report, skip_bad, error)
            continue
        report.spans += len(spans)
        yield from spans


# --- JSON lines in chunks (the fast path's input) --------------------------------------------


try:
    from ._spanjson import count_lines as _count_lines
except ImportError:  # pragma: no cover - a build without a C compiler

    def _count_lines(data: bytes) -> int:
        return data.count(b"\n")


def json_line_chunks(
    path: Path, report: ReadReport, *, skip_bad: bool = False
) -> tuple[bytes, Callable[[int], Iterator[tuple[int, bytes]]]] | None:
    """(first non-empty line, ``chunks(size)``) when ``path`` holds JSON lines, else None
    (protobuf, one pretty-printed document, an empty file: :func:`read_file` reads those).

    ``chunks(size)`` yields ``(lines before it, whole lines)`` of about ``size`` bytes (the caller
    picks the size from the first line), decompressed on
    the fly, so a reader of chunks names lines as :func:`read_file` does and memory follows the
    chunk. A stream that breaks off (truncated gzip) is reported at the line it broke, as
    :func:`read_file` does. The caller counts the file in ``report.files``.
    """
    name = str(path)
    stream, head = _open(path, name)
    if head.lstrip()[:1] not in (b"{", b"["):
        stream.close()
        return None
    try:
        skipped, first = _first_line(stream, name)
    except BadInput:
        stream.close()
        return None  # read_file says what is wrong
    if not _parses_bytes(first):
        stream.close()
        return None

    plain = isinstance(getattr(stream, "raw", None), io.FileIO)
    buffered = cast(io.BufferedIOBase, stream)  # gzip.GzipFile or io.BufferedReader: read1

    def read_block(size: int) -> tuple[bytes, Exception | None]:
        """Up to ``size`` bytes, and the error that cut them short. A compressed stream is read
        in the buffer-sized steps ``readline`` takes, so a stream that breaks off loses what
        the row reader loses, not a whole chunk."""
        if plain:
            try:
                return stream.read(size), None
            except OSError as exc:
                return b"", exc
        parts: list[bytes] = []
        got = 0
        try:
            while got < size:
                piece = buffered.read1(io.DEFAULT_BUFFER_SIZE)
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except Exception as exc:  # truncated or corrupt compressed data
            return b"".join(parts), exc
        return b"".join(parts), None

    def chunks(chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
        before = 0
        rest = bytearray(b"\n" * skipped + first)
        with stream:
            while True:
                block, error = read_block(chunk_bytes)
                if error is not None:
                    rest += block
                    cut = rest.rfind(b"\n") + 1  # whole lines only, as readline gives them
                    if cut:
                        yield before, bytes(rest[:cut])
                        before += rest.count(b"\n", 0, cut)
                    problem = f"unreadable ({error})"
                    _bad(report, skip_bad, BadInput(name, f":{before + 1}", problem))
                    return
                if not block:
                    if rest:
                        yield before, bytes(rest)
                    return
                cut = block.rfind(b"\n") + 1
                if not cut:  # a line longer than a chunk
                    rest += block
                    continue
                data = b"".join((rest, memoryview(block)[:cut]))  # one copy, not two
                rest = bytearray(memoryview(block)[cut:])
                yield before, data
                before += _count_lines(data)

    return first, chunks


def read_json_lines_chunk(
    data: bytes, name: str, report: ReadReport, before: int, *, skip_bad: bool = False
) -> Iterator[SpanRecord]:
    """The row reader over one chunk of JSON lines; ``before`` lines precede it in the file (so
    a bad line is named by its number in the file)."""
    yield from _read_json_lines(io.BytesIO(data), name, report, skip_bad, None, before)
