"""The fast path: JSON lines (blameset's flat JSONL and the Collector's OTLP JSON) decoded
column-wise, a chunk of lines at a time, instead of a Python loop per span (the row reader in
``analyze.readers`` is 10-20x slower).

Three readers, tried in turn for each chunk:

1. the native decoder (``analyze/_spanjson.c``, built with the package): reads each byte once
   and hands its columns to polars through the Arrow C data interface, without the GIL, so one
   chunk decodes per core. ~1.7 us a span where DuckDB took ~21 (OTLP JSON, CPU).
2. DuckDB (its JSON reader was the fastest engine found, see DESIGN.md "Measured on this
   machine"), for what the native decoder refuses or where it is not built: it flattens OTLP
   requests to one row per span and re-encodes the attributes as JSON text.
3. the row reader, for a chunk neither takes: it names the bad line.

Both column readers end in :func:`table_from_raw`, where polars builds the span table with the
row reader's rules. A chunk that is not clean comes back as None from each: a line that does not
parse, an id that is neither hex nor base64 of the right size, an unknown kind, an attribute
value of a type the table's column does not take, a line of an unexpected shape. The fast path
never guesses: where the row reader's answer is not certain, it steps aside. All paths give the
same table (the property tests hold them to it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from blameset.instrument import contract

from .aliases import COLUMN_ALIASES, COST_ALIASES, VERSION_ALIASES
from .table import SPAN_SCHEMA, _Pricer, _versions, with_derived_columns

_spanjson: ModuleType | None
try:  # the native decoder, built with the package; without it DuckDB decodes every chunk
    from . import _spanjson
except ImportError:  # pragma: no cover - a build without a C compiler
    _spanjson = None

__all__ = [
    "CHUNK_BYTES",
    "OTLP_CHUNK_BYTES",
    "FastChunk",
    "FastReader",
    "available",
    "flat_frame",
    "layout_of",
    "otlp_frame",
]

CHUNK_BYTES = 16 * 1024 * 1024
"""Bytes of flat JSON lines per chunk: the fast path's memory follows the chunk (a few are in
flight), not the file."""

OTLP_CHUNK_BYTES = 12 * 1024 * 1024
"""Bytes of OTLP JSON lines per chunk. Smaller than flat: DuckDB holds a whole vector of lines
(up to 2048, and a Collector line is ~100 kB) decoded at once, 13-15x the chunk's bytes. Not
smaller either: a chunk's query costs ~30 ms to plan and ~20 ms of polars work whatever its
size (measured: 8 MB -> 25.6 us a span of CPU, 12 MB -> 24.1, 16 MB -> 22.2 but 1.1 GB peak)."""

MAX_LINE = 1 << 30
"""DuckDB's largest JSON line (a Collector batch of many thousands of spans is one line)."""

# --- which attributes the table reads, and the JSON types each may hold ---------------------

_INT_KEYS = frozenset(
    n for column in ("input_tokens", "output_tokens") for n in COLUMN_ALIASES[column]
)
_FLOAT_KEYS = frozenset(
    [n for column in ("ttft_ms", "tool_ms", "queue_ms") for n in COLUMN_ALIASES[column]]
    + [contract.LATENCY_TOTAL_MS]
)
_FIRST_KEYS = frozenset(n for names in COLUMN_ALIASES.values() for n in names)
"""Keys read "first non-empty wins" (the row reader's ``_first``): an empty string is skipped."""
_ATTR_KEYS = tuple(
    sorted(
        _FIRST_KEYS
        | set(COST_ALIASES)
        | set(VERSION_ALIASES)
        | {
            contract.SPAN_KIND,
            contract.VERSION_SET,
            contract.VERSION_SET_ID,
            contract.COST_SOURCE,
            contract.LATENCY_TOTAL_MS,
        }
    )
)
_RESOURCE_KEYS = (
    contract.SERVICE_NAME,
    contract.SERVICE_VERSION,
    contract.VERSION_SET,
    contract.TENANT_ID,
)
_KEYS_STRUCT = json.dumps(dict.fromkeys(_ATTR_KEYS, "JSON"))
_RESOURCE_STRUCT = json.dumps(dict.fromkeys(_RESOURCE_KEYS, "JSON"))


def available() -> bool:
    """Whether the engine (DuckDB) is installed; without it everything goes the row reader's way."""
    try:
        import duckdb  # noqa: F401
    except ImportError:  # pragma: no cover - duckdb is a dependency of the analyze extra
        return False
    return True


def layout_of(first_line: bytes) -> str | None:
    """``"flat"``, ``"otlp"`` or None (a layout the fast path does not read), by the first line."""
    head = first_line.lstrip()[:4096]
    if not head.startswith(b"{"):
        return None
    if _OTHER_LINE.match(first_line) or _SPANS_LINE.match(first_line):
        return "otlp"
    if b'"span_id"' in first_line and b'"start_time_unix_nano"' in first_line:
        return "flat"
    return None


# --- SQL --------------------------------------------------------------------------------------


def _id_sql(column: str, size: int) -> str:
    """An OTLP id as lower-case hex (hex in any case, or base64), '' as NULL, else the marker
    'BAD' (the row reader then names it)."""
    hex_len, b64 = size * 2, "[A-Za-z0-9+/]{22}==" if size == 16 else "[A-Za-z0-9+/]{11}="
    return (
        f"CASE WHEN {column} IS NULL OR {column} = '' THEN NULL "
        f"WHEN length({column}) = {hex_len} AND regexp_full_match({column}, '[0-9a-fA-F]+') "
        f"THEN lower({column}) "
        f"WHEN regexp_full_match({column}, '{b64}') THEN lower(hex(from_base64({column}))) "
        "ELSE 'BAD' END"
    )


def _int_text_sql(column: str) -> str:
    """An int64 written as a JSON number or string (OTLP JSON); '' and null as NULL; else 'BAD'."""
    bare = f"replace({column}::VARCHAR, '\"', '')"
    return (
        f"CASE WHEN {column} IS NULL OR {bare} = '' THEN NULL "
        f"WHEN regexp_full_match({bare}, '-?[0-9]{{1,19}}') "
        f"THEN coalesce(TRY_CAST({bare} AS BIGINT)::VARCHAR, 'BAD') ELSE 'BAD' END"
    )


_VALUE = {
    "stringValue": "JSON",
    "intValue": "JSON",
    "doubleValue": "JSON",
    "boolValue": "JSON",
    "bytesValue": "JSON",
    "arrayValue": "JSON",
    "kvlistValue": "JSON",
}
_KEY_VALUES = [{"key": "VARCHAR", "value": _VALUE}]
_SPAN = {
    "traceId": "VARCHAR",
    "spanId": "VARCHAR",
    "parentSpanId": "VARCHAR",
    "name": "VARCHAR",
    "kind": "JSON",
    "startTimeUnixNano": "JSON",
    "endTimeUnixNano": "JSON",
    "status": {"code": "JSON", "message": "JSON"},
    "attributes": _KEY_VALUES,
    "events": [{"timeUnixNano": "JSON"}],
    "links": [{"spanId": "JSON"}],
}
_DOC = {
    "resourceSpans": [
        {
            "resource": {"attributes": _KEY_VALUES},
            "scopeSpans": [{"spans": [_SPAN]}],
            "scope_spans": "JSON",
        }
    ],
    "resource_spans": "JSON",
    "result": "JSON",
}


def _digits(v: str) -> str:
    """An intValue's digits (OTLP JSON writes int64 as a string). The fast path writes them as
    they are when they are an int64 written canonically (what ``int`` then ``json.dumps`` give);
    anything else (leading zeros, a sign, spaces, too large) goes to the row reader."""
    return f"replace({v}.intValue::VARCHAR, '\"', '')"


_ARRAY = json.dumps({"values": [_VALUE]})


def _scalar_text(v: str) -> str:
    """An OTLP AnyValue ``v`` (not an array) as the JSON text the row reader's ``_any_value`` and
    ``json.dumps`` give (a double keeps a decimal point, as Python's float does)."""
    double = f"{v}.doubleValue::VARCHAR"
    return f"""coalesce(
  {v}.stringValue::VARCHAR,
  {_digits(v)},
  CASE WHEN contains({double}, '.') OR contains(lower({double}), 'e')
    THEN {double} ELSE {double} || '.0' END,
  {v}.boolValue::VARCHAR,
  {v}.bytesValue::VARCHAR"""


def _value_text(v: str, arrays: bool = True) -> str:
    """An OTLP AnyValue as JSON text; an array of plain values too (resources carry them)
    unless not ``arrays``."""
    if not arrays:
        return f"{_scalar_text(v)}, 'null')"
    elements = (
        f"list_transform(json_transform({v}.arrayValue, '{_ARRAY}').values, "
        f"lambda e: {_scalar_text('e')}, 'null'))"
    )
    array = (
        f"CASE WHEN {v}.arrayValue IS NOT NULL THEN "
        f"'[' || coalesce(array_to_string({elements}, ','), '') || ']' END"
    )
    return f"{_scalar_text(v)}, {array}, 'null')"


def _scalar_bad(v: str, nested: str) -> str:
    """Whether ``v`` is not decoded the row reader's way by :func:`_scalar_text` (two kinds at
    once, odd types, key-value lists; arrays when ``nested``). NULL counts as not bad."""
    digits = _digits(v)
    return f"""(
  ({v}.stringValue IS NOT NULL)::INT + ({v}.intValue IS NOT NULL)::INT
  + ({v}.doubleValue IS NOT NULL)::INT + ({v}.boolValue IS NOT NULL)::INT
  + ({v}.bytesValue IS NOT NULL)::INT + ({v}.arrayValue IS NOT NULL)::INT
  + ({v}.kvlistValue IS NOT NULL)::INT > 1
  OR {v}.kvlistValue IS NOT NULL {nested}
  OR ascii({v}.stringValue::VARCHAR) <> 34
  OR ascii({v}.bytesValue::VARCHAR) <> 34
  OR ({v}.intValue IS NOT NULL
      AND coalesce(TRY_CAST({digits} AS BIGINT)::VARCHAR <> {digits}, true))
  OR NOT (ascii({v}.doubleValue::VARCHAR) = 45
          OR ascii({v}.doubleValue::VARCHAR) BETWEEN 48 AND 57)
  OR {v}.boolValue::VARCHAR NOT IN ('true', 'false')
)"""


def _value_bad(v: str, arrays: bool = True) -> str:
    """Whether the row reader must read this AnyValue: see :func:`_scalar_bad`; an array that is
    not ``{"values": [...]}`` or holds arrays or key-value lists; any array unless ``arrays``."""
    if not arrays:
        return f"coalesce({_scalar_bad(v, f'OR {v}.arrayValue IS NOT NULL')}, false)"
    elements = (
        f"list_transform(json_transform({v}.arrayValue, '{_ARRAY}').values, "
        f"lambda e: coalesce({_scalar_bad('e', 'OR e.arrayValue IS NOT NULL')}, false))"
    )
    array = (
        f"CASE WHEN {v}.arrayValue IS NULL THEN false "
        f"WHEN json_type({v}.arrayValue) <> 'OBJECT' THEN true "
        f"WHEN coalesce(json_type({v}.arrayValue, '$.values') NOT IN ('ARRAY', 'NULL'), false) "
        f"THEN true ELSE coalesce(list_bool_or({elements}), false) END"
    )
    return f"(coalesce({_scalar_bad(v, '')}, false) OR {array})"


def _kv_text(column: str, arrays: bool = True) -> str:
    """OTLP key-values as one JSON object text (duplicate keys: the last wins, as in Python)."""
    value = _value_text("kv.value", arrays)
    return (
        f"coalesce('{{' || array_to_string(list_transform({column}, "
        f"lambda kv: to_json(kv.key) || ':' || {value}), ',') || '}}', '{{}}')"
    )


def _kv_bad(column: str, arrays: bool = True) -> str:
    return (
        f"coalesce(list_bool_or(list_transform({column}, lambda kv: kv.key IS NULL "
        f"OR (kv.value IS NOT NULL AND {_value_bad('kv.value', arrays)}))), false)"
    )


_KIND_SQL = """CASE {v}
  WHEN '0' THEN 'internal' WHEN '1' THEN 'internal' WHEN '2' THEN 'server'
  WHEN '3' THEN 'client' WHEN '4' THEN 'producer' WHEN '5' THEN 'consumer'
  WHEN '"SPAN_KIND_UNSPECIFIED"' THEN 'internal' WHEN '"SPAN_KIND_INTERNAL"' THEN 'internal'
  WHEN '"SPAN_KIND_SERVER"' THEN 'server' WHEN '"SPAN_KIND_CLIENT"' THEN 'client'
  WHEN '"SPAN_KIND_PRODUCER"' THEN 'producer' WHEN '"SPAN_KIND_CONSUMER"' THEN 'consumer'
  ELSE CASE WHEN lower({v}) IN ('"internal"', '"server"', '"client"', '"producer"', '"consumer"')
    THEN trim(lower({v}), '"') ELSE 'BAD' END END"""

_STATUS_SQL = """CASE {v}
  WHEN '1' THEN 'ok' WHEN '2' THEN 'error' WHEN 'true' THEN 'ok'
  WHEN '"STATUS_CODE_OK"' THEN 'ok' WHEN '"STATUS_CODE_ERROR"' THEN 'error'
  ELSE 'unset' END"""


def _otlp_sql(arrays: bool) -> str:
    """One row per span of the chunk's OTLP JSON requests, in the flat layout. Without
    ``arrays`` an array value is left to the row reader: the query is then planned in ~18 ms
    instead of ~30 (a cost every chunk pays), and is what a chunk with no ``arrayValue`` runs."""
    return f"""
WITH docs AS (
  SELECT json_transform(json, '{json.dumps(_DOC)}') AS d
  FROM read_ndjson_objects(?, maximum_object_size={MAX_LINE})
),
rs AS (
  SELECT unnest(d.resourceSpans) AS rs,
    d.resource_spans IS NOT NULL OR d.result IS NOT NULL AS doc_bad
  FROM docs
),
ss AS (
  SELECT {_kv_text("rs.resource.attributes", arrays)} AS resource,
    {_kv_bad("rs.resource.attributes", arrays)} OR rs.scope_spans IS NOT NULL OR doc_bad AS rs_bad,
    unnest(rs.scopeSpans) AS ss
  FROM rs
),
sp AS (SELECT resource, rs_bad, unnest(ss.spans) AS s FROM ss)
SELECT
  {_id_sql("s.traceId", 16)} AS trace_id,
  {_id_sql("s.spanId", 8)} AS span_id,
  {_id_sql("s.parentSpanId", 8)} AS parent_span_id,
  coalesce(s.name, '') AS name,
  CASE WHEN s.kind IS NULL THEN 'internal' ELSE {_KIND_SQL.format(v="s.kind::VARCHAR")} END AS kind,
  s.startTimeUnixNano::VARCHAR AS start_text,
  s.endTimeUnixNano::VARCHAR AS end_text,
  {_STATUS_SQL.format(v="s.status.code::VARCHAR")} AS status,
  CASE WHEN s.status.message IS NOT NULL AND ascii(s.status.message::VARCHAR) = 34
    THEN nullif(s.status.message->>'$', '') END AS status_message,
  resource,
  {_kv_text("s.attributes", arrays)} AS attributes,
  rs_bad
    OR {_kv_bad("s.attributes", arrays)}
    OR coalesce(ascii(s.status.message::VARCHAR) <> 34, false)
    OR coalesce(list_bool_or(list_transform(s.events,
         lambda e: {_int_text_sql("e.timeUnixNano")} = 'BAD')), false)
    AS bad,
  coalesce(len(list_filter(s.links, lambda x: x.spanId IS NOT NULL)), 0) AS links
FROM sp
"""


_OTLP_SQL = _otlp_sql(arrays=True)
_OTLP_PLAIN_SQL = _otlp_sql(arrays=False)

_FLAT_COLUMNS = (
    "{trace_id: 'VARCHAR', span_id: 'VARCHAR', parent_span_id: 'VARCHAR', name: 'VARCHAR', "
    "kind: 'VARCHAR', start_time_unix_nano: 'VARCHAR', end_time_unix_nano: 'VARCHAR', "
    "status: 'VARCHAR', status_message: 'VARCHAR', resource: 'JSON', attributes: 'JSON'}"
)
_FLAT_SQL = f"""
SELECT
  {_id_sql("trace_id", 16)} AS trace_id,
  {_id_sql("span_id", 8)} AS span_id,
  {_id_sql("parent_span_id", 8)} AS parent_span_id,
  name,
  CASE WHEN kind IS NULL OR kind = '' THEN 'internal'
    WHEN kind IN ('internal', 'server', 'client', 'producer', 'consumer') THEN kind
    ELSE 'BAD' END AS kind,
  start_time_unix_nano AS start_text,
  end_time_unix_nano AS end_text,
  CASE WHEN status IS NULL OR status = '' THEN 'unset' ELSE status END AS status,
  status_message,
  coalesce(resource::VARCHAR, '{{}}') AS resource,
  coalesce(attributes::VARCHAR, '{{}}') AS attributes,
  name IS NULL OR start_time_unix_nano IS NULL
    OR coalesce(ascii(resource::VARCHAR) <> 123, false)
    OR coalesce(ascii(attributes::VARCHAR) <> 123, false) AS bad,
  0 AS links
FROM read_json(?, format='newline_delimited', columns={_FLAT_COLUMNS},
  maximum_object_size={MAX_LINE})
"""
"""One row per line of blameset's flat JSONL."""


def _keyed(sql: str) -> str:
    """The table's attributes (and resource keys) as JSON text, picked out of the JSON once."""
    return (
        f"SELECT *, json_transform(attributes, '{_KEYS_STRUCT}') AS a, "
        f"json_transform(resource, '{_RESOURCE_STRUCT}') AS r FROM ({sql})"
    )


_SPANS_LINE = re.compile(rb'\s*\{\s*"resourceSpans"\s*:')
_OTHER_LINE = re.compile(
    rb'\s*\{\s*"(resourceMetrics|resource_metrics|resourceLogs|resource_logs|resourceProfiles)"\s*:'
)
_OTHER_SIGNAL = {
    b"resourceMetrics": "metrics",
    b"resource_metrics": "metrics",
    b"resourceLogs": "logs",
    b"resource_logs": "logs",
    b"resourceProfiles": "profiles",
}


_SPANS_START = b'{"resourceSpans":'
_SPAN_ID_MEMBER = re.compile(rb'"spanId"\s*:')


def _all_span_lines(data: bytes) -> bool:
    """Whether every line of ``data`` starts as the Collector writes a trace request. Line by
    line with ``find`` (memchr): a Collector line is ~100 kB, so this is a few hundred calls
    instead of two counting passes over the chunk (~9 ms of 12 MB)."""
    if not data:
        return False
    end, pos = len(data), 0
    while pos < end:
        if not data.startswith(_SPANS_START, pos):
            return False
        pos = data.find(b"\n", pos) + 1
        if pos == 0:
            return True
    return True


@dataclass
class FastChunk:
    """A chunk read by the fast path: its span table and the other signals' lines it passed."""

    table: pl.DataFrame
    other_signals: Counter[str] = field(default_factory=Counter)
    decoder: str = "native"
    """Which reader decoded it: "native" or "duckdb"."""


@dataclass
class _Slot:
    """A cursor with both macros prepared over one fixed file: a chunk is written to the file
    and the prepared query executed, which skips binding the query again (~17 ms a chunk, a
    tenth of the decode time of an 8 MB chunk)."""

    cursor: Any
    path: Path


def _clean_up(con: Any, folder: Path, slots: list[_Slot]) -> None:
    for slot in slots:
        slot.cursor.close()
    con.close()
    shutil.rmtree(folder, ignore_errors=True)


class FastReader:
    """Reads chunks of JSON lines with DuckDB; safe to call from several threads at once (each
    call takes a cursor and temporary file of its own, see :class:`_Slot`), which is how ingest
    keeps both cores busy: DuckDB works on one vector of lines per thread, and a chunk of
    Collector lines is one vector.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con: Any = None
        self._folder: Path | None = None
        self._slots: list[_Slot] = []
        """Every slot made (closed with the reader)."""
        self._free: list[_Slot] = []
        self._cleanup: weakref.finalize[Any, FastReader] | None = None

    def _connect(self) -> None:
        """DuckDB, started on the first chunk it is needed for (never, when the native decoder
        takes every chunk). Called under the lock."""
        import duckdb

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        # Keep freed memory for the next chunk instead of handing it back to the OS after each
        # query: re-faulting it in cost a third of the decode time. Peak memory is unchanged.
        # One thread a query: ingest runs a query per core at once (a Collector chunk is one
        # vector of lines, which DuckDB would not split anyway); more would only contend.
        con.execute("SET threads = 1")
        con.execute("SET allocator_flush_threshold = '64GB'")
        con.execute("SET allocator_bulk_deallocation_flush_threshold = '64GB'")
        # Bound once: a chunk's query is then a short call (the full text costs ~10 ms a chunk).
        for macro, sql in (
            ("blameset_otlp", _OTLP_SQL),
            ("blameset_otlp_plain", _OTLP_PLAIN_SQL),
            ("blameset_flat", _FLAT_SQL),
        ):
            body = _keyed(sql).replace("(?,", "(path,")
            con.execute(f"CREATE MACRO {macro}(path) AS TABLE {body}")
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self._folder = Path(tempfile.mkdtemp(prefix="blameset-ingest-", dir=base))
        self._con = con
        # A reader nobody closed still leaves no folder behind in /dev/shm (memory, not disk).
        self._cleanup = weakref.finalize(self, _clean_up, con, self._folder, self._slots)

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()

    def _take(self) -> _Slot:
        with self._lock:
            if self._con is None:
                self._connect()
            if self._free:
                return self._free.pop()
            assert self._folder is not None
            slot = _Slot(self._con.cursor(), self._folder / f"slot-{len(self._slots)}.jsonl")
            self._slots.append(slot)
        slot.path.write_bytes(b"")
        literal = str(slot.path).replace("'", "''")
        for macro in ("blameset_otlp", "blameset_otlp_plain", "blameset_flat"):
            slot.cursor.execute(f"PREPARE {macro}_chunk AS SELECT * FROM {macro}('{literal}')")
        return slot

    def _give_back(self, slot: _Slot) -> None:
        with self._lock:
            self._free.append(slot)

    def __enter__(self) -> FastReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, data: bytes, layout: str) -> FastChunk | None:
        """The span table of these complete lines, or None if the row reader must read them."""
        other: Counter[str] = Counter()
        if layout == "otlp" and _all_span_lines(data):
            payload = data  # the Collector's usual file: no need to look at each line
        elif layout == "otlp":
            kept: list[bytes] = []
            for line in data.split(b"\n"):
                if _SPANS_LINE.match(line):
                    kept.append(line)
                elif match := _OTHER_LINE.match(line):
                    if b'"resourceSpans"' in line or b'"resource_spans"' in line:
                        return None
                    other[_OTHER_SIGNAL[match.group(1)]] += 1
                elif line.strip():
                    return None  # a wrapper, an array, a flat span, a broken line
            payload = b"\n".join(kept)
        else:
            payload = data
        if not payload.strip():
            return FastChunk(_empty_table(), other)
        table, decoder = native_table(payload, layout), "native"
        if table is None:
            table, decoder = self._duckdb_table(payload, layout), "duckdb"
        return None if table is None else FastChunk(table, other, decoder)

    def _duckdb_table(self, payload: bytes, layout: str) -> pl.DataFrame | None:
        """What the native decoder refused (or all, without it), decoded by DuckDB."""
        if layout == "otlp":
            # spans are counted by their spanId members (a name or value "spanId" is no member)
            expected = sum(1 for _ in _SPAN_ID_MEMBER.finditer(payload))
            # quicker to plan without arrays; an escaped key still ends up bad
            macro = "blameset_otlp" if b"arrayValue" in payload else "blameset_otlp_plain"
        else:
            stripped = payload.rstrip(b"\n")
            expected = stripped.count(b"\n") + 1 if stripped.strip() else 0
            if expected and b"\n\n" in stripped:
                return None  # blank lines: the counts below would not tell a lost line
            macro = "blameset_flat"
        slot = self._take()
        try:
            # Overwritten in place, not truncated first: the file's pages (memory, in /dev/shm)
            # are reused instead of freed and faulted in again, chunk after chunk.
            with slot.path.open("r+b") as f:
                f.write(payload)
                f.truncate()
            raw = pl.DataFrame(slot.cursor.sql(f"EXECUTE {macro}_chunk"))
        except Exception:  # not clean: the row reader names the line
            return None
        finally:
            self._give_back(slot)
        found = raw.height + int(raw.get_column("links").sum() or 0)
        if found != expected:
            return None  # a span in a place or shape this path does not read
        return table_from_raw(raw)


NATIVE = _spanjson is not None and os.environ.get("BLAMESET_NATIVE", "1") != "0"
"""Whether chunks go to the native decoder first (``BLAMESET_NATIVE=0`` turns it off, to
compare or to rule it out)."""


def native_table(payload: bytes, layout: str) -> pl.DataFrame | None:
    """The span table of complete JSON lines by the native decoder, or None when it is not
    built or turned off, or refuses the chunk (anything it does not read exactly as the row
    reader does)."""
    if not NATIVE or _spanjson is None:
        return None
    columns = _spanjson.decode(payload, layout, _ATTR_KEYS, _RESOURCE_KEYS)
    if isinstance(columns, str):
        return None
    raw = pl.Series(columns).struct.unnest().with_columns(bad=pl.lit(False))
    return table_from_raw(raw)


def flat_frame(path: Path) -> pl.DataFrame | None:
    """The span table of a clean flat JSONL file in one piece, or None (the row reader's case)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    with FastReader() as reader:
        chunk = reader.read(data, "flat")
    return None if chunk is None else chunk.table


def otlp_frame(path: Path) -> pl.DataFrame | None:
    """The span table of clean OTLP JSON lines in one piece, or None (the row reader's case)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    with FastReader() as reader:
        chunk = reader.read(data, "otlp")
    return None if chunk is None else chunk.table


# --- the span table from the flat layout -----------------------------------------------------


def _empty_table() -> pl.DataFrame:
    return pl.DataFrame(schema=SPAN_SCHEMA)


_NUMERIC_KEYS = (_INT_KEYS | _FLOAT_KEYS) - set(COST_ALIASES)
_NUMBER = r"^-?[0-9]"
"""JSON text that starts so is a number (DuckDB wrote it, so it is well formed)."""


def _decoded(series: pl.Series) -> pl.Series:
    """JSON string literals -> their text (escapes undone); other values -> null."""
    is_str = series.str.starts_with('"').fill_null(False)
    if not series.str.contains("\\", literal=True).any():
        plain = series.str.strip_prefix('"').str.strip_suffix('"')
        return _eval(plain, pl.when(is_str).then(plain))
    decoded = [json.loads(t) if ok else None for t, ok in zip(series, is_str, strict=True)]
    return pl.Series(series.name, decoded, dtype=pl.String)


def _eval(text: pl.Series, expr: pl.Expr) -> pl.Series:
    """``expr`` over the one-column frame of ``text`` (its column named as the series)."""
    return text.to_frame().select(expr.alias(text.name)).to_series()


def _is_string(name: str) -> bool:
    """Whether the key ``name`` (``a:KEY`` or ``r:KEY``) is read as a string."""
    key = name[2:]
    return name.startswith("r:") or not (
        key in COST_ALIASES or key in _INT_KEYS or key in _FLOAT_KEYS
    )


def _attribute(name: str) -> tuple[pl.Expr, pl.Expr | None]:
    """(the column's values, whether every span's value is of a kind the row reader turns into
    the column's type the same way; None when every value is) of one key given as JSON text
    (``a:KEY`` an attribute, ``r:KEY`` a resource key, which is always read as a string)."""
    key, col = name[2:], pl.col(name)
    if _is_string(name):
        is_str = col.str.starts_with('"')
        plain = col.str.strip_prefix('"').str.strip_suffix('"')
        return pl.when(is_str).then(plain), (col.is_null() | is_str).all()
    if key in COST_ALIASES:  # the row reader skips a cost that is not a number; so does this
        number = col.cast(pl.Float64, strict=False)
        return pl.when(col.str.contains(_NUMBER)).then(number), None
    if key in _INT_KEYS:
        number = col.cast(pl.Int64, strict=False)
        ok = col.is_null() | (col.str.contains(r"^-?[0-9]+$") & number.is_not_null())
    else:
        number = col.cast(pl.Float64, strict=False)
        ok = col.is_null() | (col.str.contains(_NUMBER) & number.is_not_null())
    return number, ok.all()


def _time(text: pl.Expr) -> pl.Expr:
    """An int64 time from its JSON text (a number, or digits in a string as OTLP JSON writes
    int64); null when it is anything else (the checks send such a chunk to the row reader)."""
    digits = text.str.strip_prefix('"').str.strip_suffix('"')
    number = digits.cast(pl.Int64, strict=False)
    return pl.when(digits.str.contains(r"^-?[0-9]{1,19}$")).then(number)


def _dtype(key: str) -> pl.DataType:
    if key in _INT_KEYS:
        return pl.Int64()
    if key in _FLOAT_KEYS or key in COST_ALIASES:
        return pl.Float64()
    return pl.String()


def table_from_raw(raw: pl.DataFrame) -> pl.DataFrame | None:
    """The span table from spans in the flat layout (ids normalised, attributes and resource as
    JSON text, ``a``/``r`` the table's keys as JSON text), or None if a span is not clean."""
    if raw.height == 0:
        return _empty_table()
    # the times once: checked here, kept in the table below
    raw = raw.with_columns(start_ns=_time(pl.col("start_text")), end_ns=_time(pl.col("end_text")))
    conditions = [
        ~pl.col("bad"),
        pl.col("trace_id").is_not_null(),
        pl.col("span_id").is_not_null(),
        *[pl.col(c).ne_missing("BAD") for c in ("trace_id", "span_id", "parent_span_id", "kind")],
        pl.col("start_ns").is_not_null(),
        pl.col("end_text").is_null()
        | pl.col("end_text").is_in(['""', ""])
        | pl.col("end_ns").is_not_null(),
    ]
    if not all(raw.select([c.all().alias(f"c{i}") for i, c in enumerate(conditions)]).row(0)):
        return None
    parts = [raw.get_column(prefix).struct.unnest() for prefix in ("a", "r")]
    texts = pl.concat(
        [
            part.rename({c: f"{prefix}:{c}" for c in part.columns})
            for prefix, part in zip(("a", "r"), parts, strict=True)
        ],
        how="horizontal",
    )
    # All keys at once, in three passes over the chunk (not three per key): which keys are
    # there, whether each is of a kind the row reader reads the same way, then the values.
    missing = texts.null_count().row(0)
    present = [name for name, n in zip(texts.columns, missing, strict=True) if n < texts.height]
    strings = [name for name in present if _is_string(name)]
    escaped: set[str] = set()
    if strings:
        has_escape = [pl.col(n).str.contains("\\", literal=True).any() for n in strings]
        escaped = {n for n, e in zip(strings, texts.select(has_escape).row(0), strict=True) if e}
    values: list[pl.Expr] = []
    checks: list[pl.Expr] = []
    for name in present:
        value, ok = _attribute(name)
        if name not in escaped:
            values.append(value.alias(name))
        if ok is not None:
            checks.append(ok.alias(name))
    if checks and not all(texts.select(checks).row(0)):
        return None
    decoded = texts.with_columns(
        values
        + [_decoded(texts.get_column(name)) for name in escaped]
        + [
            pl.lit(None, dtype=_dtype(name[2:] if name.startswith("a:") else "")).alias(name)
            for name in texts.columns
            if name not in present
        ]
    )
    base = raw.select(
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        "status",
        "status_message",
        "attributes",
        "resource",
        "start_ns",
        "end_ns",
    )
    frame = pl.concat([base, decoded], how="horizontal")
    no_set = pl.col(f"a:{contract.VERSION_SET}").fill_null("").eq("") & pl.col(
        f"r:{contract.VERSION_SET}"
    ).fill_null("").eq("")
    if frame.select(
        (no_set & pl.col("attributes").str.contains('"blameset.version.', literal=True)).any()
    ).item():
        return None  # span-level components without a version set string: the row reader's case
    try:
        return _finish(frame)
    except _NotSure:
        return None


def _first(names: tuple[str, ...]) -> pl.Expr:
    """The row reader's ``_first``: the first of these attributes that is neither null nor ''."""
    exprs = []
    for name in names:
        value = pl.col(f"a:{name}")
        exprs.append(value if name in _NUMERIC_KEYS else pl.when(value != "").then(value))
    return pl.coalesce(exprs)


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    version_set = pl.col(f"a:{contract.VERSION_SET}")
    resource_set = pl.col(f"r:{contract.VERSION_SET}")
    table = frame.select(
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        span_kind=pl.col(f"a:{contract.SPAN_KIND}"),
        service=pl.col(f"r:{contract.SERVICE_NAME}"),
        start=pl.from_epoch("start_ns", "ns").dt.replace_time_zone("UTC"),
        end=pl.from_epoch("end_ns", "ns").dt.replace_time_zone("UTC"),
        status="status",
        status_message="status_message",
        route=_first(COLUMN_ALIASES["route"]),
        operation=_first(COLUMN_ALIASES["operation"]),
        tenant_id=pl.coalesce(
            _first(COLUMN_ALIASES["tenant_id"]), pl.col(f"r:{contract.TENANT_ID}")
        ),
        version_set=pl.coalesce(
            pl.when(version_set != "").then(version_set),
            pl.when(resource_set != "").then(resource_set),
        ),
        given_id=pl.col(f"a:{contract.VERSION_SET_ID}"),
        model=_first(COLUMN_ALIASES["model"]),
        provider=_first(COLUMN_ALIASES["provider"]),
        input_tokens=_first(COLUMN_ALIASES["input_tokens"]),
        output_tokens=_first(COLUMN_ALIASES["output_tokens"]),
        cost_usd=pl.coalesce([pl.col(f"a:{n}") for n in COST_ALIASES]),
        cost_source=_cost_source(),
        ttft_ms=_first(COLUMN_ALIASES["ttft_ms"]),
        tool_ms=_first(COLUMN_ALIASES["tool_ms"]),
        queue_ms=_first(COLUMN_ALIASES["queue_ms"]),
        total_ms=pl.col(f"a:{contract.LATENCY_TOTAL_MS}"),
        final_status=_first(COLUMN_ALIASES["final_status"]),
        error_code=_first(COLUMN_ALIASES["error_code"]),
        action_id=_first(COLUMN_ALIASES["action_id"]),
        attributes="attributes",
        resource="resource",
        start_ns="start_ns",
    )
    table = _with_built_versions(table, frame)
    table = _with_versions(table)
    table = _with_computed_costs(table)
    table = with_derived_columns(table)
    version_columns = sorted(c for c in table.columns if c.startswith("version."))
    columns = [pl.col(c).cast(t) for c, t in SPAN_SCHEMA.items()]
    return table.select(columns + [pl.col(c) for c in version_columns])


def _cost_source() -> pl.Expr:
    expr: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, implied in reversed(list(COST_ALIASES.items())):
        source = pl.col(f"a:{contract.COST_SOURCE}") if implied == "" else pl.lit(implied)
        expr = pl.when(pl.col(f"a:{name}").is_not_null()).then(source).otherwise(expr)
    return expr


class _NotSure(Exception):
    """A chunk the fast path cannot be sure to read as the row reader does, found late."""


def _components(canonical: str) -> dict[str, str]:
    """The components a canonical version set string names (as :func:`_with_versions` and the
    row reader split it)."""
    out: dict[str, str] = {}
    for part in canonical.split(";"):
        key, _, value = part.partition("=")
        if key:
            out[key] = value
    return out


def _with_built_versions(table: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Version sets for spans that carry no canonical string, built from the resource and other
    tools' version attributes exactly as the row reader does, once per distinct combination."""
    if table.get_column("version_set").null_count() == 0:
        return table
    keys = frame.select(
        pl.col("resource").alias("resource_text"),
        *[pl.col(f"a:{name}").alias(f"alias:{name}") for name in VERSION_ALIASES],
    )
    combos = keys.unique()
    built: list[str | None] = []
    for row in combos.iter_rows(named=True):
        resource = json.loads(row["resource_text"] or "{}")
        attrs = {k[len("alias:") :]: v for k, v in row.items() if k.startswith("alias:") and v}
        canonical, components = _versions(attrs, resource if isinstance(resource, dict) else {})
        if canonical is not None and _components(canonical) != components:
            # a value holding ';' or '=': the string cannot give its components back, which
            # the row reader takes from the attributes themselves
            raise _NotSure(canonical)
        built.append(canonical)
    combos = combos.with_columns(built_version_set=pl.Series(built, dtype=pl.String))
    joined = pl.concat([table, keys], how="horizontal").join(
        combos, on=keys.columns, how="left", nulls_equal=True, maintain_order="left"
    )
    return joined.with_columns(version_set=pl.coalesce("version_set", "built_version_set")).drop(
        [*keys.columns, "built_version_set"]
    )


def _with_versions(frame: pl.DataFrame) -> pl.DataFrame:
    """Ids and one column per component, from the few distinct canonical strings."""
    canonical = [c for c in frame.get_column("version_set").unique().to_list() if c is not None]
    rows: list[dict[str, Any]] = []
    for text in canonical:
        row: dict[str, Any] = {
            "version_set": text,
            "computed_id": hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        }
        for key, value in _components(text).items():
            row[f"version.{key}"] = value
        rows.append(row)
    components = sorted({k for r in rows for k in r if k.startswith("version.")})
    lookup = pl.DataFrame(
        rows,
        schema={
            "version_set": pl.String,
            "computed_id": pl.String,
            **dict.fromkeys(components, pl.String),
        },
    )
    return (
        frame.join(lookup, on="version_set", how="left", coalesce=True, maintain_order="left")
        .with_columns(version_set_id=pl.coalesce("given_id", "computed_id"))
        .drop("given_id", "computed_id")
    )


def _with_computed_costs(frame: pl.DataFrame) -> pl.DataFrame:
    """Cost from genai-prices for spans with model and tokens but none recorded (the row
    reader's conditions: some tokens, a model, a start time other than 0)."""
    need = frame.filter(
        pl.col("cost_usd").is_null()
        & pl.col("model").is_not_null()
        & ((pl.col("input_tokens").fill_null(0) != 0) | (pl.col("output_tokens").fill_null(0) != 0))
        & (pl.col("start_ns").fill_null(0) != 0)
    )
    if need.height == 0:
        return frame.drop("start_ns")
    pricer = _Pricer()
    price: Callable[..., float | None] = pricer
    combos = need.select(
        "model",
        "provider",
        pl.col("input_tokens").fill_null(0),
        pl.col("output_tokens").fill_null(0),
        "start_ns",
    ).unique()
    priced = combos.with_columns(
        computed=pl.Series(
            [price(m, p, int(i), int(o), int(s)) for m, p, i, o, s in combos.iter_rows()],
            dtype=pl.Float64,
        )
    )
    keyed = frame.with_columns(
        _in=pl.col("input_tokens").fill_null(0), _out=pl.col("output_tokens").fill_null(0)
    )
    joined = keyed.join(
        priced.rename({"input_tokens": "_in", "output_tokens": "_out"}),
        on=["model", "provider", "_in", "_out", "start_ns"],
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    return joined.with_columns(
        cost_source=pl.when(pl.col("cost_usd").is_null() & pl.col("computed").is_not_null())
        .then(pl.lit("computed"))
        .otherwise("cost_source"),
        cost_usd=pl.coalesce("cost_usd", "computed"),
    ).drop("_in", "_out", "computed", "start_ns")
