"""The fast path: JSON lines (blameset's flat JSONL and the Collector's OTLP JSON) decoded
column-wise, a chunk of lines at a time, instead of a Python loop per span (the row reader in
``analyze.readers`` is ~100 us a span of CPU; this ~5).

Two readers, tried in turn for each chunk:

1. the native decoder (``analyze/_spanjson.c``, built with the package): reads each byte once
   and hands its columns to polars through the Arrow C data interface, without the GIL, so one
   chunk decodes per core; :func:`table_from_raw` then builds the span table with the row
   reader's rules, in polars.
2. the row reader, for a chunk the native decoder refuses (or everything, where it is not
   built): it names the bad line.

A chunk that is not clean comes back as None: a line that does not parse, an id that is neither
hex nor base64 of the right size, an unknown kind, an attribute value of a type the table's
column does not take, a line of an unexpected shape. The fast path never guesses: where the row
reader's answer is not certain, it steps aside. Both paths give the same table (the property
tests hold them to it).

A DuckDB middle path (DuckDB's JSON reader, for what the native decoder refuses) was removed: on
the real fixtures it decoded no chunk, and of ~18,000 single mutations of a flat and an OTLP
line it was the reader of ~700, all of them odd shapes (a number as a span's name, null where an
array belongs). It cost ~440 lines that wrote the kind, status, id and int64 rules a third time,
in SQL, to read such a chunk at ~28 us a span instead of the row reader's ~100.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from blameset.instrument import contract

from .columns import (
    ATTRIBUTE_COLUMNS,
    COST_ALIASES,
    ID_BYTES,
    SPAN_SCHEMA,
    VERSION_ALIASES,
    Column,
    Value,
    native_rules,
)
from .table import PRICED_TOKENS, SpanPricer, _versions, with_derived_columns

_spanjson: ModuleType | None
try:  # the native decoder, built with the package; without it the row reader reads every chunk
    from . import _spanjson
except ImportError:  # pragma: no cover - a build without a C compiler
    _spanjson = None
if _spanjson is not None:  # the kind and status mappings and the id sizes, declared once
    _spanjson.set_rules(**native_rules())

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
"""Bytes of OTLP JSON lines per chunk: a Collector line is ~100 kB, so a chunk holds a hundred or
so; its columns take about as much again as its bytes while polars builds the table."""

# --- which attributes the table reads, and the JSON types each may hold ---------------------

_INT_KEYS = frozenset(n for c in ATTRIBUTE_COLUMNS if c.value is Value.COUNT for n in c.attributes)
_FLOAT_KEYS = frozenset(
    n for c in ATTRIBUTE_COLUMNS if c.value is Value.NUMBER for n in c.attributes
)
_ATTR_KEYS = tuple(
    sorted(
        {n for c in ATTRIBUTE_COLUMNS for n in c.attributes}
        | set(COST_ALIASES)
        | set(VERSION_ALIASES)
        | {contract.VERSION_SET, contract.VERSION_SET_ID, contract.COST_SOURCE}
    )
)
"""The attributes the table reads: the native decoder hands each over as its JSON text."""
_RESOURCE_KEYS = tuple(
    sorted(
        {n for c in ATTRIBUTE_COLUMNS for n in c.resource}
        | {contract.SERVICE_VERSION, contract.VERSION_SET}
    )
)
"""The resource attributes the table reads (as text)."""

NATIVE = _spanjson is not None and os.environ.get("BLAMESET_NATIVE", "1") != "0"
"""Whether chunks go to the native decoder (``BLAMESET_NATIVE=0`` turns it off, to compare or to
rule it out: the row reader then reads every chunk)."""


def available() -> bool:
    """Whether the native decoder is built and on; without it everything goes the row reader's
    way."""
    return NATIVE


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


def _json_object(line: bytes) -> bool:
    """Whether a line of another signal is a JSON object, as the row reader takes it: a cut
    or corrupt metrics line is refused by every command, not counted here and refused there."""
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


@dataclass
class FastChunk:
    """A chunk read by the fast path: its span table and the other signals' lines it passed."""

    table: pl.DataFrame
    other_signals: Counter[str] = field(default_factory=Counter)
    decoder: str = "native"
    """Which reader decoded it (the ``decoders`` counter of ``ingest --json``)."""


class FastReader:
    """Reads chunks of JSON lines; safe to call from several threads at once (the native
    decoder runs without the GIL), which is how ingest keeps both cores busy."""

    def close(self) -> None:
        """Nothing to release (kept so ingest's use reads the same whatever the reader holds)."""

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
                    if not _json_object(line):  # cut or corrupt: the row reader names it
                        return None
                    other[_OTHER_SIGNAL[match.group(1)]] += 1
                elif line.strip():
                    return None  # a wrapper, an array, a flat span, a broken line
            payload = b"\n".join(kept)
        else:
            payload = data
        if not payload.strip():
            return FastChunk(_empty_table(), other)
        table = native_table(payload, layout)
        return None if table is None else FastChunk(table, other)


def native_table(payload: bytes, layout: str) -> pl.DataFrame | None:
    """The span table of complete JSON lines by the native decoder, or None when it is not
    built or turned off, or refuses the chunk (anything it does not read exactly as the row
    reader does)."""
    if not NATIVE or _spanjson is None:
        return None
    columns = _spanjson.decode(payload, layout, _ATTR_KEYS, _RESOURCE_KEYS)
    if isinstance(columns, str):
        return None
    return table_from_raw(pl.Series(columns).struct.unnest())


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
"""JSON text that starts so is a number (the native decoder validated it, so it is well formed)."""


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


_ZERO_TRACE = "0" * 2 * ID_BYTES["trace_id"]
_ZERO_SPAN = "0" * 2 * ID_BYTES["span_id"]


def table_from_raw(raw: pl.DataFrame) -> pl.DataFrame | None:
    """The span table from spans in the flat layout (ids normalised, attributes and resource as
    JSON text, ``a``/``r`` the table's keys as JSON text), or None if a span is not clean."""
    if raw.height == 0:
        return _empty_table()
    # the times once: checked here, kept in the table below
    raw = raw.with_columns(start_ns=_time(pl.col("start_text")), end_ns=_time(pl.col("end_text")))
    # the row reader's span rules (readers._span_problem); a span failing one is its to name
    end_ns, start_ns = pl.col("end_ns"), pl.col("start_ns")
    conditions = [
        pl.col("trace_id").is_not_null() & (pl.col("trace_id") != _ZERO_TRACE),
        pl.col("span_id").is_not_null() & (pl.col("span_id") != _ZERO_SPAN),
        start_ns.is_not_null() & (start_ns >= 0),
        pl.col("end_text").is_null()
        | pl.col("end_text").is_in(['""', ""])
        | (end_ns.is_not_null() & (end_ns >= start_ns)),
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
    base = raw.select(*_SPAN_MEMBERS, "end_ns")
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


_SPAN_MEMBERS = (
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
)
"""The span's own members, passed through from the decoded chunk to the table as they are."""


def _first(names: tuple[str, ...], prefix: str = "a") -> pl.Expr:
    """The row reader's ``first_value``: the first of these keys that is neither null nor ''."""
    exprs = []
    for name in names:
        value = pl.col(f"{prefix}:{name}")
        exprs.append(value if name in _NUMERIC_KEYS else pl.when(value != "").then(value))
    return pl.coalesce(exprs)


def _attribute_column(column: Column) -> pl.Expr:
    """A column filled from attributes: the span's first, then the resource's."""
    return pl.coalesce(
        [_first(column.attributes)] * bool(column.attributes)
        + [_first(column.resource, "r")] * bool(column.resource)
    )


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    version_set = pl.col(f"a:{contract.VERSION_SET}")
    resource_set = pl.col(f"r:{contract.VERSION_SET}")
    table = frame.select(
        *_SPAN_MEMBERS,
        *[_attribute_column(c).alias(c.name) for c in ATTRIBUTE_COLUMNS],
        start=pl.from_epoch("start_ns", "ns").dt.replace_time_zone("UTC"),
        end=pl.from_epoch("end_ns", "ns").dt.replace_time_zone("UTC"),
        version_set=pl.coalesce(
            pl.when(version_set != "").then(version_set),
            pl.when(resource_set != "").then(resource_set),
        ),
        given_id=pl.col(f"a:{contract.VERSION_SET_ID}"),
        cost_usd=pl.coalesce([pl.col(f"a:{n}") for n in COST_ALIASES]),
        cost_source=_cost_source(),
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
    """Costs for spans with model and tokens but none recorded (the row reader's
    ``needs_price``: some tokens, a model, a start time other than 0), once per distinct
    model, provider, counts and start."""
    need = frame.filter(
        pl.col("cost_usd").is_null()
        & pl.col("model").is_not_null()
        & ((pl.col("input_tokens").fill_null(0) != 0) | (pl.col("output_tokens").fill_null(0) != 0))
        & (pl.col("start_ns").fill_null(0) != 0)
    )
    if need.height == 0:
        return frame.drop("start_ns")
    price = SpanPricer()
    keys = ["model", "provider", *PRICED_TOKENS, "start_ns"]
    combos = need.select(keys).unique()
    computed = [
        price(model, provider, tuple(tokens), start)
        for model, provider, *tokens, start in combos.iter_rows()
    ]
    priced = combos.with_columns(computed=pl.Series(computed, dtype=pl.Float64))
    joined = frame.join(priced, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return joined.with_columns(
        cost_source=pl.when(pl.col("cost_usd").is_null() & pl.col("computed").is_not_null())
        .then(pl.lit("computed"))
        .otherwise("cost_source"),
        cost_usd=pl.coalesce("cost_usd", "computed"),
    ).drop("computed", "start_ns")
