"""The fast path for blameset's own flat JSONL: polars reads and decodes it column-wise instead
of a Python loop per span (the row reader in ``analyze.readers`` is ~15x slower).

It handles clean files only and says so by returning None: a file with JSON escapes (polars would
hand its nested objects back altered), a line polars cannot parse into the schema, an id that is
not hex of the right length, a kind outside the five, a span with no version set string. The row
reader then reads the file and reports the exact line and problem. Both paths give the same table
(a property test holds them to it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from analyze.aliases import COLUMN_ALIASES, COST_ALIASES, VERSION_ALIASES
from analyze.table import SPAN_SCHEMA, _Pricer, _versions, with_derived_columns
from instrument import contract

__all__ = ["flat_frame"]

_RAW_SCHEMA = {
    "trace_id": pl.String,
    "span_id": pl.String,
    "parent_span_id": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "start_time_unix_nano": pl.Int64,
    "end_time_unix_nano": pl.Int64,
    "status": pl.String,
    "status_message": pl.String,
    "resource": pl.String,
    "attributes": pl.String,
}

_NUMERIC = {
    contract.GEN_AI_USAGE_INPUT_TOKENS: pl.Int64,
    contract.GEN_AI_USAGE_OUTPUT_TOKENS: pl.Int64,
    "gen_ai.usage.prompt_tokens": pl.Int64,
    "gen_ai.usage.completion_tokens": pl.Int64,
    "llm.token_count.prompt": pl.Int64,
    "llm.token_count.completion": pl.Int64,
    contract.LATENCY_TTFT_MS: pl.Float64,
    contract.LATENCY_TOOL_MS: pl.Float64,
    contract.LATENCY_QUEUE_MS: pl.Float64,
    contract.LATENCY_TOTAL_MS: pl.Float64,
    **{name: pl.Float64 for name in COST_ALIASES},
}
_ATTR_NAMES = sorted(
    {n for names in COLUMN_ALIASES.values() for n in names}
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
_ATTRS = pl.Struct({n: _NUMERIC.get(n, pl.String) for n in _ATTR_NAMES})
_RESOURCE = pl.Struct(
    {
        contract.SERVICE_NAME: pl.String,
        contract.SERVICE_VERSION: pl.String,
        contract.VERSION_SET: pl.String,
        contract.TENANT_ID: pl.String,
    }
)


def _attr(name: str) -> pl.Expr:
    value = pl.col("a").struct.field(name)
    if _NUMERIC.get(name, pl.String) == pl.String:
        return pl.when(value != "").then(value)
    return value


CHUNK_BYTES = 64 * 1024 * 1024
"""Chunk size of the fast path: its memory follows the chunk, not the file."""


def flat_frames(path: Path) -> Iterator[pl.DataFrame | None]:
    """The span table of a flat JSONL file, chunk by chunk; a None means this chunk is not clean
    (the caller then reads the file with the row reader, which names the bad line)."""
    try:
        with path.open("rb") as handle:
            rest = b""
            while True:
                block = handle.read(CHUNK_BYTES)
                if not block:
                    if rest.strip():
                        yield _chunk_frame(rest)
                    return
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    yield _chunk_frame(data[:cut])
    except OSError:
        yield None


def flat_frame(path: Path) -> pl.DataFrame | None:
    """The span table of a clean flat JSONL file in one piece, or None (see flat_frames)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return _chunk_frame(data)


def _chunk_frame(data: bytes) -> pl.DataFrame | None:
    if b"\\" in data:
        # polars hands nested objects back as text with escapes undone ("a\\b" -> "a\b"), so
        # the raw attributes would be altered; a file without escapes reads back faithfully.
        return None
    try:
        raw = pl.read_ndjson(data, schema=_RAW_SCHEMA)
    except Exception:  # not clean: the row reader names the line
        return None
    return table_from_raw(raw)


def table_from_raw(raw: pl.DataFrame) -> pl.DataFrame | None:
    """The span table from spans in the flat layout (attributes and resource as JSON text)."""
    if raw.height == 0:
        return None
    try:
        decoded = raw.with_columns(
            a=pl.col("attributes").str.json_decode(_ATTRS),
            r=pl.col("resource").str.json_decode(_RESOURCE),
        )
    except Exception:
        return None
    ok = decoded.select(
        pl.col("trace_id").str.contains(r"^[0-9a-f]{32}$").all(),
        pl.col("span_id").str.contains(r"^[0-9a-f]{16}$").all(),
        (
            pl.col("parent_span_id").is_null()
            | pl.col("parent_span_id").str.contains(r"^[0-9a-f]{16}$")
        ).all(),
        pl.col("kind")
        .fill_null("internal")
        .is_in(["internal", "server", "client", "producer", "consumer"])
        .all(),
        pl.col("start_time_unix_nano").is_not_null().all(),
        # Span-level version components without a version set string: the row reader's case.
        ~(
            pl.col("attributes").str.contains('"blameset.version.', literal=True)
            & pl.col("a").struct.field(contract.VERSION_SET).is_null()
        ).any(),
    ).row(0)
    if not all(ok):
        return None
    frame = decoded.select(
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        pl.col("kind").fill_null("internal"),
        span_kind=_attr(contract.SPAN_KIND),
        service=pl.col("r").struct.field(contract.SERVICE_NAME),
        start=pl.from_epoch("start_time_unix_nano", "ns").dt.replace_time_zone("UTC"),
        end=pl.from_epoch("end_time_unix_nano", "ns").dt.replace_time_zone("UTC"),
        status=pl.col("status").fill_null("unset"),
        status_message="status_message",
        route=pl.coalesce([_attr(n) for n in COLUMN_ALIASES["route"]]),
        operation=pl.coalesce([_attr(n) for n in COLUMN_ALIASES["operation"]]),
        tenant_id=pl.coalesce(
            [_attr(n) for n in COLUMN_ALIASES["tenant_id"]]
            + [pl.col("r").struct.field(contract.TENANT_ID)]
        ),
        version_set=pl.coalesce(
            _attr(contract.VERSION_SET), pl.col("r").struct.field(contract.VERSION_SET)
        ),
        given_id=_attr(contract.VERSION_SET_ID),
        model=pl.coalesce([_attr(n) for n in COLUMN_ALIASES["model"]]),
        provider=pl.coalesce([_attr(n) for n in COLUMN_ALIASES["provider"]]),
        input_tokens=pl.coalesce([_attr(n) for n in COLUMN_ALIASES["input_tokens"]]),
        output_tokens=pl.coalesce([_attr(n) for n in COLUMN_ALIASES["output_tokens"]]),
        cost_usd=pl.coalesce([_attr(n) for n in COST_ALIASES]),
        cost_source=_cost_source(),
        ttft_ms=_attr(contract.LATENCY_TTFT_MS),
        tool_ms=_attr(contract.LATENCY_TOOL_MS),
        queue_ms=_attr(contract.LATENCY_QUEUE_MS),
        total_ms=_attr(contract.LATENCY_TOTAL_MS),
        final_status=_attr(contract.FINAL_STATUS),
        error_code=_attr(contract.ERROR_TYPE),
        action_id=_attr(contract.ACTION_ID),
        attributes="attributes",
        resource="resource",
        start_ns="start_time_unix_nano",
    )
    frame = _with_built_versions(frame, decoded)
    frame = _with_versions(frame)
    frame = _with_computed_costs(frame)
    frame = with_derived_columns(frame)
    version_columns = sorted(c for c in frame.columns if c.startswith("version."))
    columns = [pl.col(c).cast(t) for c, t in SPAN_SCHEMA.items()]
    return frame.select(columns + [pl.col(c) for c in version_columns])


def _cost_source() -> pl.Expr:
    expr: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, implied in reversed(list(COST_ALIASES.items())):
        source = _attr(contract.COST_SOURCE) if implied == "" else pl.lit(implied)
        expr = pl.when(pl.col("a").struct.field(name).is_not_null()).then(source).otherwise(expr)
    return expr


def _with_built_versions(frame: pl.DataFrame, decoded: pl.DataFrame) -> pl.DataFrame:
    """Version sets for spans that carry no canonical string, built from the resource and other
    tools' version attributes exactly as the row reader does, once per distinct combination."""
    if frame.get_column("version_set").null_count() == 0:
        return frame
    keys = decoded.select(
        pl.col("resource").alias("resource_text"),
        *[pl.col("a").struct.field(name).alias(f"alias:{name}") for name in VERSION_ALIASES],
    )
    combos = keys.unique()
    built: list[str | None] = []
    for row in combos.iter_rows(named=True):
        resource = json.loads(row["resource_text"] or "{}")
        attrs = {k[len("alias:") :]: v for k, v in row.items() if k.startswith("alias:") and v}
        built.append(_versions(attrs, resource if isinstance(resource, dict) else {})[0])
    combos = combos.with_columns(built_version_set=pl.Series(built, dtype=pl.String))
    joined = pl.concat([frame, keys], how="horizontal").join(
        combos, on=keys.columns, how="left", nulls_equal=True
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
        for part in text.split(";"):
            key, _, value = part.partition("=")
            if key:
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
        frame.join(lookup, on="version_set", how="left", coalesce=True)
        .with_columns(version_set_id=pl.coalesce("given_id", "computed_id"))
        .drop("given_id", "computed_id")
    )


def _with_computed_costs(frame: pl.DataFrame) -> pl.DataFrame:
    """Cost from genai-prices for spans with model and tokens but none recorded."""
    need = frame.filter(
        pl.col("cost_usd").is_null()
        & pl.col("model").is_not_null()
        & ((pl.col("input_tokens").fill_null(0) > 0) | (pl.col("output_tokens").fill_null(0) > 0))
    )
    if need.height == 0:
        return frame.drop("start_ns")
    pricer = _Pricer()
    combos = need.select(
        "model",
        "provider",
        pl.col("input_tokens").fill_null(0),
        pl.col("output_tokens").fill_null(0),
        "start_ns",
    ).unique()
    priced = combos.with_columns(
        computed=pl.Series(
            [pricer(m, p, int(i), int(o), int(s)) for m, p, i, o, s in combos.iter_rows()],
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
    )
    return joined.with_columns(
        cost_source=pl.when(pl.col("cost_usd").is_null() & pl.col("computed").is_not_null())
        .then(pl.lit("computed"))
        .otherwise("cost_source"),
        cost_usd=pl.coalesce("cost_usd", "computed"),
    ).drop("_in", "_out", "computed", "start_ns")
