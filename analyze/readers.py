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

What is refused, by name (``FILE:LINE``, or ``FILE@BYTE`` in compressed or framed input), rather
than stored inexactly: a compressed stream that breaks off or is corrupt; a span without a trace
or span id, or with an all-zero one (OTLP calls those invalid; stored, they would merge as
"duplicates"); a span without a start time, with a time the table cannot hold (before 1970 or
after 2262-04-11, the int64 nanosecond range) or an end before its start; an attribute value
nested deeper than :data:`MAX_VALUE_DEPTH`; a line longer than :data:`MAX_LINE_BYTES`; an OTLP
request with a member this reader does not know (a misspelled ``scopeSpans`` would lose its
spans) or with no span at all; special files (FIFOs, devices: refused by type, never read), and
files or folders that cannot be read. Memory follows the longest line: reading a line of JSON
takes up to about ten times its size, so :data:`MAX_LINE_BYTES` bounds it.
"""

from __future__ import annotations

import base64
import binascii
import glob
import io
import json
import os
import re
import stat
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, ClassVar, cast

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
    "MAX_LINE_BYTES",
    "MAX_VALUE_DEPTH",
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
            number = kind(value)
        except OverflowError:
            return f"attribute {name} = {str(value)[:40]!r}... is too large for a number"
        except (TypeError, ValueError):
            return f"attribute {name} = {str(value)[:80]!r} is not a number"
        if kind is int and not _INT64_MIN <= number <= _INT64_MAX:
            return f"attribute {name} outside the int64 range ({str(value)[:40]!r}...)"
    return None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
MAX_VALUE_DEPTH = 32
"""How deep an attribute value (or a resource attribute's) may nest arrays and maps: deeper is
refused at ingest, so what is stored every command can read back."""

_OTLP_FIELDS = ("traceId", "spanId", "startTimeUnixNano", "endTimeUnixNano")
_FLAT_FIELDS = ("trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano")
_PROTO_FIELDS = _FLAT_FIELDS
"""Each format's names of the ids and times, which an error about them uses."""


def _span_problem(span: SpanRecord, fields: tuple[str, str, str, str]) -> str | None:
    """Why a span cannot be stored exactly (``fields``: its format's names of the ids and
    times), or None."""
    trace, span_id, start, end = fields
    for key, member in (("trace_id", trace), ("span_id", span_id)):
        value = span[key]
        if value is None:
            return (
                f"span without a {member} (OTLP requires one; spans without it are not told apart)"
            )
        if not value.strip("0"):
            return f"{member} all zeros (an invalid id in OTLP; such spans are not told apart)"
    if span["start_ns"] is None:
        return f"span without a {start} (its day and duration would be unknown)"
    for key, member in (("start_ns", start), ("end_ns", end)):
        value = span[key]
        if value is not None and not 0 <= value <= _INT64_MAX:
            return (
                f"{member} outside the times the table holds ({str(value)[:24]}: it holds 0 to "
                "2**63-1 ns since 1970, up to 2262-04-11)"
            )
    if span["end_ns"] is not None and span["end_ns"] < span["start_ns"]:
        return f"{end} before {start} (a negative duration: {span['end_ns']} < {span['start_ns']})"
    if problem := _number_problem(span["attributes"]):
        return problem
    for what, values in (
        ("attribute", span["attributes"]),
        ("resource attribute", span["resource"]),
    ):
        for key, value in values.items():
            if isinstance(value, dict | list) and _deeper_than(value, MAX_VALUE_DEPTH):
                return (
                    f"{what} {str(key)[:60]!r} nested too deep (more than {MAX_VALUE_DEPTH} levels "
                    "of arrays and maps)"
                )
    return None


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers (itself the first)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        children = current.values() if isinstance(current, dict) else current
        stack += [(c, depth + 1) for c in children if isinstance(c, dict | list)]
    return False


_KINDS = dict(enumerate(KIND_BY_NUMBER))
_FLAT_KINDS = frozenset(FLAT_KINDS)
_STATUS = dict(enumerate(STATUS_BY_NUMBER))
_TRACE_ID, _SPAN_ID = ID_BYTES["trace_id"], ID_BYTES["span_id"]
_HEX = re.compile(r"[0-9a-fA-F]*")


class BadInput(ValueError):
    """Input that cannot be read: ``str()`` is ``FILE:LINE: problem`` (or ``FILE@BYTE``)."""

    def __init__(self, file: str, where: str, problem: str, *, skippable: bool = True) -> None:
        super().__init__(f"{file}{where}: {problem}")
        self.file = file
        self.where = where
        self.problem = problem
        self.skippable = skippable
        """Whether ``skip_bad`` would have counted it and gone on (not so for what is wrong
        with the inputs named: a folder, a special file, a glob matching nothing)."""


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
    """Files named, globbed, or found in folders (recursively), in a stable order.

    Names starting with ``.`` inside a folder are passed over (editors' and tools' own files);
    a folder holding nothing else is refused, as is a folder that cannot be listed, a glob that
    matches no file, and anything that is not a regular file (a FIFO or a device is refused by
    its type, never opened: reading one would block or never end)."""
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if not os.path.lexists(text) and any(ch in text for ch in "*?["):
            matches = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
            if not matches:
                raise BadInput(text, "", "no file matches this pattern", skippable=False)
            out += [p for p in matches if _kind_of(p, str(p)) == "file"]
        elif _kind_of(path, text) == "folder":
            out += _folder_files(path)
        else:
            out.append(path)
    return out


def _kind_of(path: Path, name: str) -> str:
    """``"file"`` or ``"folder"``; BadInput for anything else or what cannot be looked at."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BadInput(name, "", "no such file or folder", skippable=False) from None
    except OSError as exc:
        raise BadInput(name, "", f"cannot read ({_why(exc)})", skippable=False) from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a special file"
    )
    problem = f"not a regular file ({kind}: refused without reading it)"
    raise BadInput(name, "", problem, skippable=False)


def _why(exc: OSError) -> str:
    """An OS error as the words a user reads ("permission denied")."""
    return (exc.strerror or str(exc)).lower()


def _folder_files(folder: Path) -> list[Path]:
    """The regular files under ``folder`` whose names (and folders') do not start with ``.``."""
    files: list[Path] = []
    hidden = 0
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        info = current.stat()
        if (info.st_dev, info.st_ino) in seen:  # a symbolic link back up the tree
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            problem = f"cannot read the folder ({_why(exc)})"
            raise BadInput(str(current), "", problem, skippable=False) from None
        for entry in entries:
            if entry.name.startswith("."):
                hidden += 1
                continue
            path = Path(entry.path)
            if _kind_of(path, entry.path) == "folder":
                stack.append(path)
            else:
                files.append(path)
    if not files and hidden:
        raise BadInput(
            str(folder),
            "",
            f"holds only hidden files ({hidden} name(s) starting with '.', which are not read; "
            "name a file to read it)",
            skippable=False,
        )
    return sorted(files)


# --- bytes ---------------------------------------------------------------------------------


class StreamCut(Exception):
    """A compressed stream that breaks off (truncated) or is corrupt, at ``offset``: the
    compressed byte where it does."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"@{offset}: {problem}")
        self.offset = offset
        self.problem = problem


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_module() -> ModuleType:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency of the analyze extra
        raise RuntimeError("zstd input needs the 'zstandard' package") from None
    return zstandard


class _Decompressed(io.RawIOBase):
    """A gzip or zstd stream (one or more members or frames, one after another) decompressed on
    the fly, which knows which compressed byte it is at and says when the input ends inside a
    member or frame. ``gzip`` says that too, but not where; zstandard's stream reader says
    nothing: a cut ``.zst`` read as a complete, shorter file."""

    _BLOCK: ClassVar[dict[str, int]] = {"gzip": 1 << 16, "zstd": 1 << 14}
    """Compressed bytes fed at a time (small for zstd, whose output per call has no bound)."""

    def __init__(self, handle: IO[bytes], kind: str) -> None:
        super().__init__()
        self._handle = handle
        self._kind = kind
        self._zstd = _zstd_module() if kind == "zstd" else None
        self._obj: Any = self._new()
        self._offset = 0
        """Compressed bytes consumed (by finished members, and fed to the current one)."""
        self._inside = False
        self._unused = b""
        self._out = b""
        self._at = 0
        self._done = False

    def _new(self) -> Any:
        if self._zstd is not None:
            return self._zstd.ZstdDecompressor().decompressobj()
        return zlib.decompressobj(wbits=31)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._handle.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        while self._at >= len(self._out) and not self._done:
            self._step()
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n

    def _step(self) -> None:
        data = self._unused or self._handle.read(self._BLOCK[self._kind])
        self._unused = b""
        if not data:
            if self._inside:
                raise StreamCut(
                    self._offset,
                    f"truncated {self._kind} stream (the file ends inside a compressed "
                    f"{'member' if self._kind == 'gzip' else 'frame'}: cut short or still "
                    "being written)",
                )
            self._done = True
            return
        if not self._inside and self._kind == "gzip" and not data.strip(b"\0"):
            self._offset += len(data)  # zero padding after the last member, as gzip allows
            return
        errors: tuple[type[Exception], ...] = (zlib.error,)
        if self._zstd is not None:
            errors = (zlib.error, self._zstd.ZstdError)
        try:
            self._out, self._at = self._obj.decompress(data), 0
        except errors as exc:
            raise StreamCut(self._offset, f"corrupt {self._kind} stream ({exc})") from None
        self._inside = True
        if self._obj.eof:
            self._unused = self._obj.unused_data
            self._offset += len(data) - len(self._unused)
            self._inside = False
            self._obj = self._new()
        else:
            self._offset += len(data)


def _zstd(data: bytes, name: str, offset: int) -> bytes:
    """One zstd frame of a per-frame file, whole; BadInput at its byte if it is cut or
    corrupt."""
    try:
        with _Decompressed(io.BytesIO(data), "zstd") as raw:
            return raw.readall() or b""
    except StreamCut as cut:
        raise BadInput(name, f"@{offset + cut.offset}", cut.problem) from None
    except RuntimeError as exc:  # pragma: no cover - zstandard missing
        raise BadInput(name, "", str(exc)) from None


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


_REQUEST_MEMBERS = frozenset({"resourceSpans", "resource_spans"})
_RESOURCE_SPANS_MEMBERS = frozenset(
    {"resource", "scopeSpans", "scope_spans", "schemaUrl", "schema_url"}
)
_SCOPE_SPANS_MEMBERS = frozenset({"scope", "spans", "schemaUrl", "schema_url"})
_SPAN_MEMBERS = frozenset(
    {
        "traceId",
        "spanId",
        "traceState",
        "parentSpanId",
        "flags",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "droppedAttributesCount",
        "events",
        "droppedEventsCount",
        "links",
        "droppedLinksCount",
        "status",
    }
)
"""The members of each level of an OTLP JSON trace request: any other (a misspelled
``scopeSpans``, ``atributes``) would lose what it holds, so it is refused by name (the native
decoder refuses the same)."""


def _known(obj: Any, known: frozenset[str], name: str, where: str, what: str) -> None:
    if not isinstance(obj, dict):
        raise BadInput(name, where, f"{what} is not an object")
    for key in obj:
        if key not in known:
            raise BadInput(
                name,
                where,
                f"unknown member {str(key)[:40]!r} in {what} (misspelled? what it holds "
                f"would be lost; known: {', '.join(sorted(known))})",
            )


def _otlp_request(doc: dict[str, Any], name: str, where: str) -> list[SpanRecord]:
    """The spans of one OTLP JSON trace request; one without any is refused."""
    _known(doc, _REQUEST_MEMBERS, name, where, "the request")
    spans = list(_otlp_json_spans(doc, name, where))
    if not spans:
        raise BadInput(name, where, "a trace request without any span")
    return spans


def _otlp_json_spans(doc: Any, name: str, where: str) -> Iterator[SpanRecord]:
    for rs in doc.get("resourceSpans") or doc.get("resource_spans") or []:
        _known(rs, _RESOURCE_SPANS_MEMBERS, name, where, "resourceSpans")
        resource = _attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("scope_spans") or []:
            _known(ss, _SCOPE_SPANS_MEMBERS, name, where, "scopeSpans")
            scope = ss.get("scope") or {}
            for span in ss.get("spans") or []:
                _known(span, _SPAN_MEMBERS, name, where, "a span")
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


def _frames(data: bytes) -> tuple[list[tuple[int, bytes]], int | None] | None:
    """The file exporter's ``<4-byte big-endian length><message>`` frames if ``data`` is a
    sequence of them, with the offset of a last frame cut short (only where the frames before it
    are zstd: a single protobuf message does not look so); None otherwise."""
    frames = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            break
        (size,) = struct.unpack_from(">I", data, offset)
        if size == 0:
            return None
        if offset + 4 + size > len(data):
            break
        frames.append((offset, data[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    else:
        return (frames, None) if frames else None
    if frames and all(payload[:4] == _ZSTD_MAGIC for _, payload in frames):
        return frames, offset
    return None


# --- the entry point -------------------------------------------------------------------------


def _stream(path: Path, name: str) -> IO[bytes]:
    """The file's bytes, decompressed on the fly (gzip, zstd), without reading it whole."""
    handle = path.open("rb")
    magic = handle.peek(4)[:4]
    kind = "gzip" if magic[:2] == _GZIP_MAGIC else "zstd" if magic == _ZSTD_MAGIC else None
    if kind is None:
        return handle
    try:
        return io.BufferedReader(_Decompressed(handle, kind), buffer_size=1 << 16)
    except RuntimeError as exc:  # pragma: no cover - zstandard missing
        handle.close()
        raise BadInput(name, "", str(exc)) from None


def _open(path: Path, name: str) -> tuple[IO[bytes], bytes]:
    """The file's (decompressed) stream and its first 64 KiB, which tell its format."""
    if _kind_of(path, name) != "file":
        raise BadInput(name, "", "a folder, not a file")
    try:
        stream = _stream(path, name)
    except OSError as exc:
        raise BadInput(name, "", f"cannot read ({_why(exc)})") from None
    try:
        head = stream.peek(1 << 16)[: 1 << 16] if hasattr(stream, "peek") else b""
    except StreamCut as cut:
        stream.close()
        raise BadInput(name, f"@{cut.offset}", cut.problem) from None
    except OSError as exc:
        stream.close()
        raise BadInput(name, "", f"cannot read ({_why(exc)})") from None
    return stream, head


def _broken(name: str, exc: Exception, line: int) -> BadInput:
    """The error of a stream that broke off before ``line``: at its byte when it is a compressed
    stream that was cut or corrupt, else at the line."""
    if isinstance(exc, StreamCut):
        return BadInput(name, f"@{exc.offset}", f"{exc.problem}; read up to line {line - 1}")
    return BadInput(name, f":{line}", f"unreadable ({exc})")


MAX_LINE_BYTES = int(os.environ.get("BLAMESET_MAX_LINE_BYTES", 64 << 20))
"""The longest line (and the largest JSON document not in lines) a reader takes: 64 MiB, or
``BLAMESET_MAX_LINE_BYTES``. A Collector line is one batch (~100 kB for 512 spans); a longer
line is refused by number, read past without being kept, so memory stays within about ten times
this (a line's bytes, its text and the objects JSON makes of it) whatever the input."""

_TOO_LONG = (
    f"line longer than the maximum line size ({MAX_LINE_BYTES} bytes; BLAMESET_MAX_LINE_BYTES "
    "raises it, a smaller batch size in the exporter avoids it)"
)
_TOO_DEEP = "nested too deep (deeper than Python's JSON reader goes)"


def read_file(path: Path, report: ReadReport, *, skip_bad: bool = False) -> Iterator[SpanRecord]:
    """The spans in one file, whatever its format; counts what it skips in ``report``.

    JSON lines are read line by line (memory follows a line, not the file); a single JSON
    document (up to :data:`MAX_LINE_BYTES`) and protobuf are read whole.
    """
    name = str(path)
    try:
        stream, head = _open(path, name)
    except BadInput as error:
        _bad(report, skip_bad, error)
        return
    report.files += 1
    with stream:
        if head.lstrip()[:1] in (b"{", b"["):
            # JSON lines when the first non-empty line is a JSON value by itself (it may be far
            # longer than any peek: a Collector batch of thousands of spans is one line).
            skipped, first = _first_line(stream, name)
            if first is None:
                _bad(report, skip_bad, BadInput(name, f":{skipped + 1}", _TOO_LONG))
                yield from _read_json_lines(stream, name, report, skip_bad, None, skipped + 1)
                return
            if _parses_bytes(first):
                yield from _read_json_lines(stream, name, report, skip_bad, first, skipped)
                return
            data = b"\n" * skipped + first + _read_rest(stream, name, MAX_LINE_BYTES - len(first))
        else:
            data = _read_rest(stream, name, None)
    head = data.lstrip()[:1]
    if head in (b"{", b"[") and not _protobuf_in_disguise(data):
        yield from _read_json(data, name, report, skip_bad)
    elif not data.strip():
        return
    else:
        yield from _read_proto(data, name, report, skip_bad)


def _protobuf_in_disguise(data: bytes) -> bool:
    """Whether text that looks like JSON is an OTLP message: one starts with field 1's tag, a
    newline byte, then its length, which is "{" for 123 bytes. Only such data that is not JSON
    but parses as a request counts, so JSON is never read as protobuf."""
    if data[:1] != b"\n" or _parses_bytes(data):
        return False
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        ExportTraceServiceRequest.FromString(data)
    except DecodeError:
        return False
    return True


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
    except RecursionError:
        _bad(report, skip_bad, BadInput(name, ":1", _TOO_DEEP))
        return
    except ValueError as exc:  # an integer of more digits than Python converts
        _bad(report, skip_bad, BadInput(name, "", f"invalid JSON ({exc})"))
        return
    yield from _json_doc(doc, name, ":1", report, skip_bad)


def _readline(stream: IO[bytes]) -> bytes | None:
    """The next line (``b""`` at the end), or None for a line longer than
    :data:`MAX_LINE_BYTES`, which is read past without being kept."""
    line = stream.readline(MAX_LINE_BYTES + 1)
    if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
        return line
    while (more := stream.readline(1 << 20)) and not more.endswith(b"\n"):
        pass
    return None


def _first_line(stream: IO[bytes], name: str) -> tuple[int, bytes | None]:
    """(empty lines skipped, the first non-empty line, or None when it is too long)."""
    skipped = 0
    while True:
        try:
            line = _readline(stream)
        except Exception as exc:  # a compressed stream cut or corrupt, an I/O error
            raise _broken(name, exc, skipped + 1) from None
        if line is None or not line or line.strip():
            return skipped, line
        skipped += 1


def _read_rest(stream: IO[bytes], name: str, limit: int | None) -> bytes:
    """The rest of the stream; a JSON document (``limit``: what is left of
    :data:`MAX_LINE_BYTES`) larger than that is refused."""
    try:
        data = stream.read() if limit is None else stream.read(max(limit, 0) + 1)
    except StreamCut as cut:
        raise BadInput(name, f"@{cut.offset}", cut.problem) from None
    except Exception as exc:
        raise BadInput(name, "", f"unreadable ({exc})") from None
    if limit is not None and len(data) > limit:
        raise BadInput(
            name,
            "",
            f"a JSON document larger than the maximum ({MAX_LINE_BYTES} bytes) that is not "
            "JSON lines (one request a line is read line by line; a document is read whole)",
        )
    return data


def _parses_bytes(line: bytes) -> bool:
    try:
        json.loads(line)
    except RecursionError:  # a value, too deep to read: the line reader names it
        return True
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
        raw: bytes | None
        if pending is not None:
            raw, pending = pending, None
        else:
            try:
                raw = _readline(stream)
            except Exception as exc:  # truncated or corrupt compressed data
                _bad(report, skip_bad, _broken(name, exc, number + 1))
                return
        if raw is None:
            number += 1
            _bad(report, skip_bad, BadInput(name, f":{number}", _TOO_LONG))
            continue
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
        except RecursionError:
            _bad(report, skip_bad, BadInput(name, where, _TOO_DEEP))
            continue
        except ValueError as exc:  # an integer of more digits than Python converts
            _bad(report, skip_bad, BadInput(name, where, f"invalid JSON ({exc})"))
            continue
        yield from _json_doc(doc, name, where, report, skip_bad)


def _json_doc(
    doc: Any, name: str, where: str, report: ReadReport, skip_bad: bool
) -> Iterator[SpanRecord]:
    doc = _unwrap(doc)
    if isinstance(doc, list):  # a list of requests (or of flat spans)
        for item in doc:
            if isinstance(_unwrap(item), list):
                _bad(
                    report, skip_bad, BadInput(name, where, "not a JSON object (a list in a list)")
                )
                return
            yield from _json_doc(item, name, where, report, skip_bad)
        return
    if not isinstance(doc, dict):
        _bad(report, skip_bad, BadInput(name, where, "not a JSON object"))
        return
    try:
        if "resourceSpans" in doc or "resource_spans" in doc:
            spans = _otlp_request(doc, name, where)
            fields = _OTLP_FIELDS
        elif _is_flat(doc) and not _is_flat_log(doc):
            spans = [_flat_span(doc, name, where)]
            fields = _FLAT_FIELDS
        else:
            signal = _other_signal(doc) or ("logs" if _is_flat_log(doc) else None)
            if signal is None:
                raise BadInput(name, where, "neither a span nor an OTLP request")
            report.other_signals[signal] += 1
            if report.keep_logs and _is_flat_log(doc):
                report.logs.append(doc)
            return
        for span in spans:
            if problem := _span_problem(span, fields):
                raise BadInput(name, where, problem)
    except BadInput as error:
        _bad(report, skip_bad, error)
        return
    except RecursionError:
        _bad(report, skip_bad, BadInput(name, where, _TOO_DEEP))
        return
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:  # an intValue "x"
        _bad(report, skip_bad, BadInput(name, where, f"unreadable value ({exc})"))
        return
    report.spans += len(spans)
    yield from spans


def _read_proto(data: bytes, name: str, report: ReadReport, skip_bad: bool) -> Iterator[SpanRecord]:
    framed = _frames(data)
    frames, cut = framed if framed is not None else ([(0, data)], None)
    for offset, payload in frames:
        where = f"@{offset}"
        try:
            if payload[:4] == _ZSTD_MAGIC:  # the file exporter's older per-frame zstd
                payload = _zstd(payload, name, offset + 4)
            # ... of JSON requests, one a frame. The first byte decides, unstripped: an OTLP
            # message starts with field 1's tag (0x0a, a newline) and then its length, which is
            # "{" for 123 bytes, so a stripped look mistakes such a message for JSON.
            if payload[:1] == b"{":
                yield from _json_frame(payload, name, where, report, skip_bad)
                continue
            spans = list(_proto_spans(payload, name, where))
            for span in spans:
                if problem := _span_problem(span, _PROTO_FIELDS):
                    raise BadInput(name, where, problem)
        except BadInput as error:
            _bad(report, skip_bad, error)
            continue
        report.spans += len(spans)
        yield from spans
    if cut is not None:
        problem = "truncated frame (the file ends inside a length-prefixed frame)"
        _bad(report, skip_bad, BadInput(name, f"@{cut}", problem))


def _json_frame(
    payload: bytes, name: str, where: str, report: ReadReport, skip_bad: bool
) -> Iterator[SpanRecord]:
    """One frame holding an OTLP JSON request (any signal)."""
    try:
        doc = json.loads(payload)
    except RecursionError:
        raise BadInput(name, where, _TOO_DEEP) from None
    except ValueError as exc:
        raise BadInput(name, where, f"invalid JSON ({exc})") from None
    yield from _json_doc(doc, name, where, report, skip_bad)


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
    try:
        stream, head = _open(path, name)
    except BadInput:
        return None  # read_file says what is wrong
    if head.lstrip()[:1] not in (b"{", b"["):
        stream.close()
        return None
    try:
        skipped, first = _first_line(stream, name)
    except BadInput:
        stream.close()
        return None  # read_file says what is wrong
    if first is None or not _parses_bytes(first):
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
                    _bad(report, skip_bad, _broken(name, error, before + 1))
                    return
                if not block:
                    if rest:
                        yield before, bytes(rest)
                    return
                cut = block.rfind(b"\n") + 1
                if not cut:  # a line longer than a chunk
                    rest += block
                    if len(rest) > MAX_LINE_BYTES:
                        whole = rest.rfind(b"\n") + 1  # the lines before the long one
                        if whole:
                            yield before, bytes(rest[:whole])
                            before += rest.count(b"\n", 0, whole)
                        _bad(report, skip_bad, BadInput(name, f":{before + 1}", _TOO_LONG))
                        rest = bytearray(_past_line(read_block, chunk_bytes))
                        before += 1
                    continue
                data = b"".join((rest, memoryview(block)[:cut]))  # one copy, not two
                rest = bytearray(memoryview(block)[cut:])
                yield before, data
                before += _count_lines(data)

    return first, chunks


def _past_line(read_block: Callable[[int], tuple[bytes, Exception | None]], size: int) -> bytes:
    """Reads past the rest of a line too long to keep; what follows its newline."""
    while True:
        block, _ = read_block(size)
        if not block:
            return b""
        cut = block.find(b"\n") + 1
        if cut:
            return block[cut:]


def read_json_lines_chunk(
    data: bytes, name: str, report: ReadReport, before: int, *, skip_bad: bool = False
) -> Iterator[SpanRecord]:
    """The row reader over one chunk of JSON lines; ``before`` lines precede it in the file (so
    a bad line is named by its number in the file)."""
    yield from _read_json_lines(io.BytesIO(data), name, report, skip_bad, None, before)
