"""The span table: one row per span, the columns DESIGN.md fixes, whatever wrote the span; and
the request roll-up: one row per root span with what happened beneath it.

Columns, their types and the attributes that fill them are declared in ``analyze.columns``;
everything else stays reachable in the ``attributes`` and ``resource`` columns (JSON text).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import polars as pl

from blameset.instrument import contract
from blameset.instrument.cost import Pricer, Usage

from ._services import services_of, with_services
from ._tree import LLM, VERSIONED, is_probe, llm_roles, parent_key, span_key, trace_key
from .columns import ATTRIBUTE_COLUMNS, COST_ALIASES, SPAN_SCHEMA, VERSION_ALIASES, Value
from .readers import SpanRecord

__all__ = [
    "SPAN_SCHEMA",
    "RequestTotals",
    "SpanPricer",
    "request_flags",
    "request_totals",
    "requests",
    "spans_frame",
]

_VERSION_PREFIX = contract.VERSION_PREFIX

DURATION_MS = (pl.col("end").cast(pl.Int64) - pl.col("start").cast(pl.Int64)) / 1e6
"""One expression for both readers, so the row reader and the fast path agree to the last bit."""

TOOL = (pl.col("span_kind") == "tool") | (pl.col("operation") == "execute_tool")


def first_value(values: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The first of these keys whose value is neither missing, null nor ``""``."""
    for name in names:
        value = values.get(name)
        if value is not None and value != "":
            return value
    return None


_CONVERT: dict[Value, Callable[[Any], Any]] = {
    Value.TEXT: lambda v: v if isinstance(v, str) else str(v),
    Value.COUNT: int,
    Value.NUMBER: float,
}
"""How the row reader turns an attribute into its column's type (the readers checked it can)."""


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


PRICED_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
"""The token columns a computed cost is priced from, in :class:`Usage`'s order."""


class SpanPricer:
    """Costs of spans that carry tokens but no cost: instrument's pricing (``instrument.cost``,
    cache reads and writes priced as the decorators price them) at the span's own start time.
    Both readers call it, so both compute the same cost."""

    def __init__(self) -> None:
        self._pricer = Pricer(warn=False)

    def __call__(
        self, model: str, provider: str | None, tokens: tuple[int | None, ...], start_ns: int
    ) -> float | None:
        """The cost in USD, or None (an unknown model, counts that cannot be priced)."""
        tokens_in, tokens_out, cache_read, cache_write = tokens
        usage = Usage(tokens_in or 0, tokens_out or 0, cache_read, cache_write)
        at = datetime.fromtimestamp(start_ns / 1e9, UTC)
        return self._pricer.price(model, provider, usage, at)[0]


def needs_price(row: dict[str, Any]) -> bool:
    """Whether a span's cost is computed: none recorded, a model, some tokens, a start time."""
    return bool(
        row["cost_usd"] is None
        and row["model"]
        and (row["input_tokens"] or row["output_tokens"])
        and row["start"]
    )


def _row(record: SpanRecord, pricer: SpanPricer) -> dict[str, Any]:
    attrs: dict[str, Any] = record["attributes"]
    resource: dict[str, Any] = record["resource"]
    row: dict[str, Any] = {
        "trace_id": record["trace_id"],
        "span_id": record["span_id"],
        "parent_span_id": record["parent_span_id"],
        "name": record["name"],
        "kind": record["kind"],
        "start": record["start_ns"],
        "end": record["end_ns"],
        "status": record["status"],
        "status_message": record["status_message"],
        "attributes": json.dumps(attrs, default=str, ensure_ascii=False),
        "resource": json.dumps(resource, default=str, ensure_ascii=False),
    }
    for column in ATTRIBUTE_COLUMNS:
        value = first_value(attrs, column.attributes)
        if value is None:
            value = first_value(resource, column.resource)
        row[column.name] = None if value is None else _CONVERT[column.value](value)
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
    row["cost_usd"], row["cost_source"] = cost, source
    if needs_price(row):
        tokens = tuple(row[c] for c in PRICED_TOKENS)
        cost = pricer(row["model"], row["provider"], tokens, int(row["start"]))
        row["cost_usd"], row["cost_source"] = cost, "computed" if cost is not None else None
    return row


def spans_frame(records: Iterable[SpanRecord]) -> pl.DataFrame:
    """The span table of these records (alias table applied, missing costs computed)."""
    pricer = SpanPricer()
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
    """One row per trace, the request (docs/rollup.md): its request span (the outermost
    blameset request span, else the root) with what happened beneath it: cost and tokens of the
    LLM calls counted once, ``llm_calls``, the TTFT of its first streamed call, generation time
    and the output tokens it produced, tool and queue time, final status, error code, versions,
    route, tenant; and ``apart``: a trace that is no traffic (a health check, a docs page).

    Traces and spans are keyed by 64-bit hashes of their ids for the group-by and the
    parent look-up, so ten million spans roll up in a few hundred MB instead of gigabytes of
    string keys (a collision needs ~4 billion spans to become likely)."""
    per_trace = _per_trace(spans)
    roots = _request_spans(spans)
    services = services_of(spans)
    if len(services) > 1:  # requests may cross services: each one's version set counts
        roots = with_services(roots, spans, services)
    route = pl.coalesce("route", "name")
    return (
        roots.join(per_trace, on="_trace", how="left")
        .with_columns(
            route=route,
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
            apart=~pl.col("_ours")
            & ~pl.col("_any_llm")
            & (~pl.col("_versioned") | is_probe(route)),
        )
        .drop(
            "_trace",
            "_span",
            "_ours",
            "_any_llm",
            "_versioned",
            "first_llm_ttft_ms",
            "tool_ms_sum",
            "queue_ms_sum",
        )
    )


class RequestTotals(NamedTuple):
    """What :func:`requests` adds up to over a span table: its rows and their usage."""

    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


_USAGE_SUMS = ("input_tokens", "output_tokens", "cost_usd")
_TREE_COLUMNS = ("trace_id", "span_id", "parent_span_id", "span_kind", "model", *_USAGE_SUMS)
"""What the LLM-span rules read (``_tree.LLM``, ``llm_roles``)."""


def request_totals(spans: pl.LazyFrame) -> RequestTotals:
    """The row count and usage sums of :func:`requests` without building its rows: what
    ``blameset ingest`` prints. One narrow pass (trace id, parent id, kind, usage, model) sums
    each trace's LLM spans; only traces holding more than one LLM span get the parent walk
    that finds the usage seen twice, and only traces with neither a request span nor a
    parentless span get the look for orphans (a trace with no candidate has no request row)."""
    per_trace = _trace_sums(spans)
    nested = per_trace.filter(pl.col("_n_llm") > 1).select("_trace")
    if nested.height:
        per_trace = per_trace.update(_counted_usage(spans, nested), on="_trace")
    # a lone span with a parent other than itself is an orphan: only larger traces need the look
    per_trace = per_trace.with_columns(
        _cand=pl.col("_cand") | ((pl.col("_n") == 1) & ~pl.col("_loop"))
    )
    rootless = per_trace.filter(~pl.col("_cand")).select("_trace")
    if rootless.height:
        with_orphan = _traces_with_orphans(spans, rootless)
        per_trace = per_trace.with_columns(
            _cand=pl.col("_cand") | pl.col("_trace").is_in(with_orphan.implode())
        )
    sums = (
        per_trace.filter("_cand").select(pl.len(), *[pl.col(c).sum() for c in _USAGE_SUMS]).row(0)
    )
    return RequestTotals(int(sums[0]), int(sums[1] or 0), int(sums[2] or 0), float(sums[3] or 0.0))


def _trace_sums(spans: pl.LazyFrame) -> pl.DataFrame:
    """Per trace: its LLM spans' usage and count, its spans, whether it holds a request span or
    a parentless one (``_cand``), and a span that names itself as parent (``_loop``)."""
    llm = LLM.fill_null(False)
    return (  # plain sums and maxima, which the streaming engine aggregates as it reads
        spans.select(
            *[pl.when(llm).then(pl.col(c)).alias(c) for c in _USAGE_SUMS],
            _trace=trace_key(),
            _n_llm=llm.cast(pl.UInt32),
            _cand=(pl.col("span_kind") == "request").fill_null(False)
            | pl.col("parent_span_id").is_null(),
            _loop=(pl.col("parent_span_id") == pl.col("span_id")).fill_null(False),
        )
        .group_by("_trace")
        .agg(
            *[pl.col(c).sum() for c in _USAGE_SUMS],
            pl.col("_n_llm").sum(),
            pl.col("_cand").max(),
            pl.col("_loop").max(),
            _n=pl.len(),
        )
        .collect(engine="streaming")
    )


def _of_traces(spans: pl.LazyFrame, traces: pl.DataFrame) -> pl.LazyFrame:
    """The spans of these traces (``_trace`` keys)."""
    return spans.join(traces.lazy(), left_on=trace_key(), right_on="_trace", how="semi")


def _counted_usage(spans: pl.LazyFrame, traces: pl.DataFrame) -> pl.DataFrame:
    """Per trace of these, the usage of its LLM spans that count (as :func:`_per_trace`)."""
    some = _of_traces(spans, traces).select(*_TREE_COLUMNS).collect(engine="streaming").lazy()
    roles = llm_roles(some)
    keyed = some.select(
        *_USAGE_SUMS, _trace=trace_key(), _span=span_key(), _llm=LLM.fill_null(False)
    )
    keyed = keyed.join(roles.lazy().select("_span", "_repeat"), on="_span", how="left")
    counted = pl.col("_llm") & ~pl.col("_repeat").fill_null(False)
    return (
        keyed.group_by("_trace")
        .agg(*[pl.col(c).filter(counted).sum() for c in _USAGE_SUMS])
        .collect()
    )


def _traces_with_orphans(spans: pl.LazyFrame, traces: pl.DataFrame) -> pl.Series:
    """Those of these traces holding a span whose parent is missing from the data (by the
    64-bit keys only: this can be most traces, as in a capture of child spans alone)."""
    keys = _of_traces(spans, traces).select(
        _trace=trace_key(), _span=span_key(), _parent=parent_key()
    )
    return (
        keys.drop_nulls("_parent")
        .join(keys.select("_span"), left_on="_parent", right_on="_span", how="anti")
        .select("_trace")
        .unique()
        .collect(engine="streaming")
        .get_column("_trace")
    )


def request_flags(spans: pl.LazyFrame) -> pl.LazyFrame:
    """The span table with ``is_request`` (the span is its trace's request span) and ``apart``
    (its trace is no traffic), by the rules of :func:`requests`: for a check of what request
    spans carry, which must not ask it of a framework's server span or a health check."""
    chosen = requests(spans).select("trace_id", "span_id", "apart")
    return (
        spans.join(chosen.select("trace_id", "apart"), on="trace_id", how="left")
        .join(
            chosen.select("trace_id", "span_id", is_request=pl.lit(True)),
            on=["trace_id", "span_id"],
            how="left",
        )
        .with_columns(pl.col("is_request", "apart").fill_null(False))
    )


def _per_trace(spans: pl.LazyFrame) -> pl.LazyFrame:
    """What a trace's spans add up to: usage of the LLM spans that count (none above them
    records usage), calls (LLM spans with no LLM span beneath), tool and queue time, and what
    the ``apart`` rule reads."""
    roles = llm_roles(spans)
    keyed = spans.select(
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "ttft_ms",
        "start",
        "model",
        _trace=trace_key(),
        _span=span_key(),
        _llm=LLM.fill_null(False),
        _tool=TOOL.fill_null(False),
        _queue=(pl.col("span_kind") == "queue").fill_null(False),
        _ours=pl.col("span_kind").is_not_null(),
        _versioned=VERSIONED,
        _duration=pl.coalesce("duration_ms", DURATION_MS),
    )
    if roles.height:
        keyed = keyed.join(roles.lazy(), on="_span", how="left")
    else:
        keyed = keyed.with_columns(
            _repeat=pl.lit(None, pl.Boolean), _wrapper=pl.lit(None, pl.Boolean)
        )
    counted = pl.col("_llm") & ~pl.col("_repeat").fill_null(False)
    call = pl.col("_llm") & ~pl.col("_wrapper").fill_null(False)
    streamed = counted & pl.col("ttft_ms").is_not_null()
    first = pl.col("_llm") & pl.col("ttft_ms").is_not_null()
    return keyed.group_by("_trace").agg(
        input_tokens=pl.col("input_tokens").filter(counted).sum(),
        output_tokens=pl.col("output_tokens").filter(counted).sum(),
        cost_usd=pl.col("cost_usd").filter(counted).sum(),
        llm_calls=call.sum(),
        first_llm_ttft_ms=pl.col("ttft_ms")
        .filter(first)
        .get(pl.col("start").filter(first).arg_min(), null_on_oob=True),
        generation_ms=(pl.col("_duration") - pl.col("ttft_ms")).clip(0.0).filter(streamed).sum(),
        generation_tokens=pl.col("output_tokens").filter(streamed).sum(),
        llm_model=pl.coalesce(
            pl.col("model").filter(counted).drop_nulls().first(),
            pl.col("model").filter("_llm").drop_nulls().first(),
        ),
        tool_ms_sum=pl.col("_duration").filter("_tool").sum(),
        queue_ms_sum=pl.col("_duration").filter("_queue").sum(),
        spans=pl.len(),
        _ours=pl.col("_ours").any(),
        _any_llm=pl.col("_llm").any(),
        _versioned=pl.col("_versioned").any(),
    )


def _request_spans(spans: pl.LazyFrame) -> pl.LazyFrame:
    """Each trace's request span, in full (less the columns the roll-up replaces): of its
    blameset request spans the one that started first (the longest on a tie: the outer one),
    else of its roots (no parent, or a parent missing from the data) the one that started
    first. A framework's server span around our request span is not the request."""
    is_root = pl.col("parent_span_id").is_null()
    orphans = _orphans(spans)
    if len(orphans):
        is_root = is_root | parent_key().is_in(orphans.implode())
    ours = (pl.col("span_kind") == "request").fill_null(False)
    candidate = ours | is_root
    # one int64 orders the candidates: request spans (rank 0) before roots, then by start
    key = pl.when(ours).then(0).otherwise(_RANK_ROOT) + pl.col("start").cast(pl.Int64)
    keyed = (
        spans.filter(candidate)
        .select(_trace=trace_key(), _span=span_key(), _key=key, _end=pl.col("end").cast(pl.Int64))
        .collect(engine="streaming")
    )
    chosen = _first_of_each_trace(keyed)
    names = spans.collect_schema().names()
    dropped = [
        c
        for c in ("input_tokens", "output_tokens", "cost_usd", "attributes", "resource")
        if c in names
    ]
    return (
        spans.filter(candidate)
        .with_columns(_span=span_key())
        .join(chosen.lazy(), on="_span", how="semi")
        .drop(*dropped)
        .with_columns(_trace=trace_key())
    )


def _first_of_each_trace(keyed: pl.DataFrame) -> pl.DataFrame:
    """``_span`` of each trace's candidate with the least ``_key``, then the latest ``_end``,
    then the least ``_span``. Most traces have one candidate: only the others are ordered."""
    counts = keyed.group_by("_trace").agg(_n=pl.len(), _only=pl.col("_span").first())
    single = counts.filter(pl.col("_n") == 1).select(_span="_only")
    several = keyed.join(counts.filter(pl.col("_n") > 1), on="_trace", how="semi")
    if several.is_empty():
        return single
    for column, best in (("_key", pl.min), ("_end", pl.max)):
        top = several.group_by("_trace").agg(best(column))
        several = several.join(top, on=["_trace", column], how="semi")
    return pl.concat(
        [single, several.group_by("_trace").agg(pl.col("_span").min()).select("_span")]
    )


_RANK_ROOT = 1 << 62
"""Added to a root's start (ns since the epoch, below 2**62 until the year 2116) so that every
request span of a trace orders before its roots."""


def _orphans(spans: pl.LazyFrame) -> pl.Series:
    """Keys of parents named but absent from the data (outside the capture): their children
    are roots. Usually none; collected here so the request filter stays a plain predicate."""
    present = spans.select(_key=span_key())
    return (
        spans.filter(pl.col("parent_span_id").is_not_null())
        .select(_key=parent_key())
        .join(present, on="_key", how="anti")
        .unique()
        .collect()
        .get_column("_key")
    )
