"""The span table: one row per span, the columns DESIGN.md fixes, whatever wrote the span; and
the request roll-up: one row per root span with what happened beneath it.

Attribute names come from ``instrument.contract`` and the alias table (``analyze.aliases``);
everything else stays reachable in the ``attributes`` and ``resource`` columns (JSON text).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import polars as pl

from blameset.instrument import contract

from .aliases import COLUMN_ALIASES, COST_ALIASES, VERSION_ALIASES
from .readers import SpanRecord

__all__ = ["SPAN_SCHEMA", "requests", "spans_frame"]

SPAN_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "span_id": pl.String(),
    "parent_span_id": pl.String(),
    "name": pl.String(),
    "kind": pl.String(),
    "span_kind": pl.String(),
    "service": pl.String(),
    "start": pl.Datetime("ns", "UTC"),
    "end": pl.Datetime("ns", "UTC"),
    "duration_ms": pl.Float64(),
    "status": pl.String(),
    "status_message": pl.String(),
    "is_root": pl.Boolean(),
    "route": pl.String(),
    "operation": pl.String(),
    "tenant_id": pl.String(),
    "version_set": pl.String(),
    "version_set_id": pl.String(),
    "model": pl.String(),
    "provider": pl.String(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "cost_usd": pl.Float64(),
    "cost_source": pl.String(),
    "ttft_ms": pl.Float64(),
    "tool_ms": pl.Float64(),
    "queue_ms": pl.Float64(),
    "total_ms": pl.Float64(),
    "final_status": pl.String(),
    "error_code": pl.String(),
    "action_id": pl.String(),
    "attributes": pl.String(),
    "resource": pl.String(),
}
"""Fixed columns; one ``version.<component>`` String column per component follows them."""

_VERSION_PREFIX = contract.VERSION_PREFIX

DURATION_MS = (pl.col("end").cast(pl.Int64) - pl.col("start").cast(pl.Int64)) / 1e6
"""One expression for both readers, so the row reader and the fast path agree to the last bit."""


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _versions(attrs: dict[str, Any], resource: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """(canonical string, components) of a span: ours when present, else built from the
    components other tools record (their version attributes, the resource's service.version)."""
    canonical = attrs.get(contract.VERSION_SET) or resource.get(contract.VERSION_SET)
    components: dict[str, str] = {}
    if isinstance(canonical, str) and canonical:
        for part in canonical.split(";"):
            key, _, value = part.partition("=")
            if key:
                components[key] = value
        return canonical, components
    for source in (resource, attrs):  # the span's own values win over the resource's
        for key, value in source.items():
            if key.startswith(_VERSION_PREFIX) and value:
                components[key[len(_VERSION_PREFIX) :]] = str(value)
            elif key in VERSION_ALIASES and value:
                components.setdefault(VERSION_ALIASES[key], str(value))
    if "code" not in components and resource.get(contract.SERVICE_VERSION):
        components["code"] = str(resource[contract.SERVICE_VERSION])
    if not components:
        return None, {}
    canonical = ";".join(f"{k}={v}" for k, v in sorted(components.items()))
    return canonical, components


def _version_id(canonical: str | None) -> str | None:
    if canonical is None:
        return None
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


class _Pricer:
    """genai-prices at the span's own start time, cached per model, provider, counts and day."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], float | None] = {}
        self.version: str | None = None

    def __call__(
        self, model: str, provider: str | None, tokens_in: int, tokens_out: int, start_ns: int
    ) -> float | None:
        day = start_ns // 86_400_000_000_000
        key = (model, provider, tokens_in, tokens_out, day)
        if key in self._cache:
            return self._cache[key]
        import genai_prices

        self.version = genai_prices.__version__
        at = datetime.fromtimestamp(start_ns / 1e9, UTC)
        usage = genai_prices.Usage(input_tokens=tokens_in, output_tokens=tokens_out)
        cost: float | None = None
        for pid in (provider, None) if provider else (None,):
            try:
                cost = float(
                    genai_prices.calc_price(
                        usage, model, provider_id=pid, genai_request_timestamp=at
                    ).total_price
                )
                break
            except LookupError:
                continue
            except Exception:
                break
        self._cache[key] = cost
        return cost


def _row(record: SpanRecord, pricer: _Pricer) -> dict[str, Any]:
    attrs: dict[str, Any] = record["attributes"]
    resource: dict[str, Any] = record["resource"]
    row: dict[str, Any] = {}
    for column, names in COLUMN_ALIASES.items():
        row[column] = _first(attrs, names)
    start, end = record["start_ns"], record["end_ns"]
    row.update(
        trace_id=record["trace_id"],
        span_id=record["span_id"],
        parent_span_id=record["parent_span_id"],
        name=record["name"],
        kind=record["kind"],
        span_kind=attrs.get(contract.SPAN_KIND),
        service=resource.get(contract.SERVICE_NAME),
        start=start,
        end=end,
        status=record["status"],
        status_message=record["status_message"],
        total_ms=attrs.get(contract.LATENCY_TOTAL_MS),
        attributes=json.dumps(attrs, default=str, ensure_ascii=False),
        resource=json.dumps(resource, default=str, ensure_ascii=False),
    )
    if row["tenant_id"] is None:
        row["tenant_id"] = resource.get(contract.TENANT_ID)
    canonical, components = _versions(attrs, resource)
    row["version_set"] = canonical
    row["version_set_id"] = _version_id(canonical) if canonical else None
    if isinstance(attrs.get(contract.VERSION_SET_ID), str):
        row["version_set_id"] = attrs[contract.VERSION_SET_ID]
    for component, version in components.items():
        row[f"version.{component}"] = version
    cost, source = None, None
    for name, implied in COST_ALIASES.items():
        value = attrs.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            cost = float(value)
            source = attrs.get(contract.COST_SOURCE) if implied == "" else implied
            break
    if cost is None and row["model"] and (row["input_tokens"] or row["output_tokens"]) and start:
        cost = pricer(
            str(row["model"]),
            row["provider"],
            int(row["input_tokens"] or 0),
            int(row["output_tokens"] or 0),
            int(start),
        )
        source = "computed" if cost is not None else None
    row["cost_usd"], row["cost_source"] = cost, source
    for column in ("input_tokens", "output_tokens"):
        if row[column] is not None:
            row[column] = int(row[column])
    for column in ("ttft_ms", "tool_ms", "queue_ms", "total_ms"):
        if row[column] is not None:
            row[column] = float(row[column])
    if row["final_status"] is None and row["span_kind"] in (None, "request"):
        row["final_status"] = None
    for column in ("error_code", "operation", "route", "model", "provider", "action_id"):
        if row[column] is not None:
            row[column] = str(row[column])
    return row


def spans_frame(records: Iterable[SpanRecord]) -> pl.DataFrame:
    """The span table of these records (alias table applied, missing costs computed)."""
    pricer = _Pricer()
    rows = [_row(r, pricer) for r in records]
    version_columns = sorted({k for row in rows for k in row if k.startswith("version.")})
    schema = {**SPAN_SCHEMA, **{c: pl.String() for c in version_columns}}
    columns: dict[str, list[Any]] = {
        c: [row.get(c) for row in rows] for c in schema if c != "is_root"
    }
    frame = pl.DataFrame(
        {c: v for c, v in columns.items()},
        schema={c: t for c, t in schema.items() if c != "is_root"},
        strict=False,
    )
    return with_derived_columns(frame).select(list(schema))


def with_derived_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns both readers derive the same way: duration, is_root, route, error_code.

    ``is_root`` means "has no parent": a span whose parent is missing from the data (outside the
    capture) is found by :func:`requests`, over the whole dataset, not batch by batch."""
    return frame.with_columns(
        duration_ms=DURATION_MS,
        is_root=pl.col("parent_span_id").is_null(),
        route=pl.coalesce("route", pl.when(pl.col("parent_span_id").is_null()).then("name")),
        error_code=pl.coalesce(
            "error_code", pl.when(pl.col("status") == "error").then(pl.lit("ERROR"))
        ),
    )


def requests(spans: pl.LazyFrame) -> pl.LazyFrame:
    """One row per root span: the trace's cost and tokens (LLM spans), the TTFT of its first LLM
    call, tool and queue time, generation time (LLM time after the first token), final status,
    error code, versions, route, tenant.

    Traces and spans are keyed by 64-bit hashes of their ids for the group-by and the
    parent look-up, so ten million spans roll up in a few hundred MB instead of gigabytes of
    string keys (a collision needs ~4 billion spans to become likely)."""
    llm = (pl.col("span_kind") == "llm") | (
        pl.col("span_kind").is_null()
        & (pl.col("input_tokens").is_not_null() | pl.col("model").is_not_null())
    )
    tool = (pl.col("span_kind") == "tool") | (pl.col("operation") == "execute_tool")
    trace_key = pl.col("trace_id").hash()
    span_key = pl.struct(pl.col("trace_id"), pl.col("span_id")).hash()
    parent_key = pl.struct(pl.col("trace_id"), pl.col("parent_span_id").alias("span_id")).hash()
    duration = pl.coalesce("duration_ms", DURATION_MS)
    per_trace = (
        spans.select(
            _trace=trace_key,
            _llm=llm.fill_null(False),
            _tool=tool.fill_null(False),
            _queue=(pl.col("span_kind") == "queue").fill_null(False),
            _duration=duration,
            input_tokens=pl.col("input_tokens"),
            output_tokens=pl.col("output_tokens"),
            cost_usd=pl.col("cost_usd"),
            ttft_ms=pl.col("ttft_ms"),
            start=pl.col("start"),
            model=pl.col("model"),
        )
        .group_by("_trace")
        .agg(
            input_tokens=pl.col("input_tokens").filter("_llm").sum(),
            output_tokens=pl.col("output_tokens").filter("_llm").sum(),
            cost_usd=pl.col("cost_usd").filter("_llm").sum(),
            llm_calls=pl.col("_llm").sum(),
            first_llm_ttft_ms=pl.col("ttft_ms")
            .filter("_llm")
            .get(pl.col("start").filter("_llm").arg_min(), null_on_oob=True),
            generation_ms=(pl.col("_duration") - pl.col("ttft_ms").fill_null(0.0))
            .clip(0.0)
            .filter("_llm")
            .sum(),
            llm_model=pl.col("model").filter("_llm").drop_nulls().first(),
            tool_ms_sum=pl.col("_duration").filter("_tool").sum(),
            queue_ms_sum=pl.col("_duration").filter("_queue").sum(),
            spans=pl.len(),
        )
    )
    # parents named but absent from the data (outside the capture): their children are roots.
    # Usually none; collected here so the root filter below reaches the scan and only root rows
    # are ever read in full.
    present = spans.select(_key=span_key)
    orphans = (
        spans.filter(pl.col("parent_span_id").is_not_null())
        .select(_key=parent_key)
        .join(present, on="_key", how="anti")
        .unique()
        .collect()
        .get_column("_key")
    )
    is_root = pl.col("parent_span_id").is_null()
    if len(orphans):
        is_root = is_root | parent_key.is_in(orphans.implode())
    names = spans.collect_schema().names()
    dropped = [
        c
        for c in ("input_tokens", "output_tokens", "cost_usd", "attributes", "resource")
        if c in names
    ]
    roots = (
        spans.filter(is_root)
        .drop(*dropped)
        .with_columns(route=pl.coalesce("route", "name"), _trace=trace_key)
    )
    return (
        roots.join(per_trace, on="_trace", how="left")
        .with_columns(
            latency_ms=pl.coalesce("total_ms", "duration_ms"),
            ttft_ms=pl.coalesce("ttft_ms", "first_llm_ttft_ms"),
            tool_ms=pl.coalesce("tool_ms", "tool_ms_sum"),
            queue_ms=pl.coalesce(
                "queue_ms", pl.when(pl.col("queue_ms_sum") > 0).then("queue_ms_sum")
            ),
            final_status=pl.coalesce(
                "final_status",
                pl.when(pl.col("status") == "error")
                .then(pl.lit("failure"))
                .otherwise(pl.lit("success")),
            ),
        )
        .drop("_trace", "first_llm_ttft_ms", "tool_ms_sum", "queue_ms_sum")
    )
