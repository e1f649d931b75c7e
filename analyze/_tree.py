"""The span-tree rules of the request roll-up (docs/rollup.md): which span of a trace is its
request, which LLM spans are the same call seen again, which are calls, and which traces are
kept apart from the traffic (health checks, docs pages).

Spans are keyed by 64-bit hashes of (trace id, span id), as :func:`analyze.requests` keys them.
Every rule is a per-trace aggregate over these keys except the one that needs ancestors (the
nearest LLM span above an LLM span), which follows parent links one level per join, over the
traces that hold more than one LLM span only.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "LLM",
    "PROBE_ROUTE",
    "USAGE",
    "VERSIONED",
    "is_probe",
    "llm_roles",
    "parent_key",
    "span_key",
    "trace_key",
]

USAGE = (
    pl.col("input_tokens").is_not_null()
    | pl.col("output_tokens").is_not_null()
    | pl.col("cost_usd").is_not_null()
)
"""A span that records usage: tokens or a cost."""

LLM = (pl.col("span_kind") == "llm") | (
    pl.col("span_kind").is_null() & (USAGE | pl.col("model").is_not_null())
)
"""An LLM span: ours (``blameset.span.kind = llm``), or another tool's span naming a model or
recording usage (an instrumentation's GenAI span)."""

VERSIONED = pl.col("version_set").is_not_null()

PROBE_ROUTE = (
    r"(?i)^(?:[A-Z]+ )?(?:/[^ ]*)?/(?:healthz?|health[-_]?check|livez|readyz|ping|docs|redoc"
    r"|openapi\.json|metrics|favicon\.ico)(?:/(?:live|ready|liveness|readiness|oauth2-redirect))?/?$"
)
"""Routes that are never traffic: health and readiness probes, the API docs pages, metrics
scrapes (``GET /health``, ``/docs``, ``/openapi.json``, ``/api/healthz``, ``/health/ready``)."""

MAX_DEPTH = 256
"""Parent links followed at most (a deeper chain, or a cycle in broken data, stops there)."""


def trace_key() -> pl.Expr:
    return pl.col("trace_id").hash()


def span_key() -> pl.Expr:
    return pl.struct(pl.col("trace_id"), pl.col("span_id")).hash()


def parent_key() -> pl.Expr:
    """The parent's key; null for a span without a parent."""
    parent = pl.struct(pl.col("trace_id"), pl.col("parent_span_id").alias("span_id")).hash()
    return pl.when(pl.col("parent_span_id").is_not_null()).then(parent)


def is_probe(route: pl.Expr) -> pl.Expr:
    return route.str.contains(PROBE_ROUTE).fill_null(False)


_ROLES = {"_span": pl.UInt64(), "_repeat": pl.Boolean(), "_wrapper": pl.Boolean()}


def llm_roles(spans: pl.LazyFrame) -> pl.DataFrame:
    """For the LLM spans of traces holding more than one: ``_repeat`` (an LLM span above it
    records usage, so its own is the same call seen again) and ``_wrapper`` (an LLM span lies
    beneath it, so it is not itself a call to a provider). Spans of traces with one LLM span
    have neither and are not listed.

    "Above" follows parent links through spans of any kind and stops at a request span: usage
    never crosses from one request into the request it ran in."""
    llm = LLM.fill_null(False)
    nested = (  # found from the trace key alone: the span keys are hashed for these traces only
        spans.select(_trace=trace_key(), _llm=llm.cast(pl.UInt32))
        .group_by("_trace")
        .agg(pl.col("_llm").sum())
        .filter(pl.col("_llm") > 1)
        .collect(engine="streaming")
    )
    if nested.is_empty():
        return pl.DataFrame(schema=_ROLES)
    links = (
        spans.join(nested.lazy(), left_on=trace_key(), right_on="_trace", how="semi")
        .select(
            _span=span_key(),
            _parent=parent_key(),
            _llm=llm,
            _usage=USAGE,
            _request=(pl.col("span_kind") == "request").fill_null(False),
        )
        .collect()
    )
    if links.is_empty():
        return pl.DataFrame(schema=_ROLES)
    edges = _nearest_llm_above(links)
    usage = links.select("_span", "_usage")
    repeat = _has_usage_above(edges, usage)
    wrappers = edges.select(_span="_outer").unique().with_columns(_wrapper=pl.lit(True))
    return (
        links.filter("_llm")
        .select("_span")
        .join(repeat, on="_span", how="left")
        .join(wrappers, on="_span", how="left")
        .with_columns(pl.col("_repeat", "_wrapper").fill_null(False))
        .filter(pl.col("_repeat") | pl.col("_wrapper"))
    )


def _nearest_llm_above(links: pl.DataFrame) -> pl.DataFrame:
    """(``_span``, ``_outer``): each LLM span and the nearest LLM span above it, one level of
    parent links per join (the walk from a span ends at an LLM span, a request span, a span
    missing from the data or the root)."""
    up = links.select(
        _at="_span", _next="_parent", _at_llm="_llm", _stop=pl.col("_request") & ~pl.col("_llm")
    )
    frontier = links.filter("_llm").select("_span", _at="_parent").drop_nulls("_at")
    found = []
    for _ in range(MAX_DEPTH):
        if frontier.is_empty():
            break
        step = frontier.join(up, on="_at", how="inner")
        found.append(step.filter("_at_llm").select("_span", _outer="_at"))
        frontier = (
            step.filter(~pl.col("_at_llm") & ~pl.col("_stop"))
            .select("_span", _at="_next")
            .drop_nulls("_at")
        )
    return (
        pl.concat(found)
        if found
        else pl.DataFrame(schema={"_span": pl.UInt64, "_outer": pl.UInt64})
    )


def _has_usage_above(edges: pl.DataFrame, usage: pl.DataFrame) -> pl.DataFrame:
    """(``_span``, ``_repeat``): whether any LLM span above records usage, by pointer jumping
    up the LLM spans' own forest (a few joins: LLM spans nest a few deep)."""
    state = edges.join(usage.rename({"_span": "_outer"}), on="_outer", how="left").select(
        "_span", _up="_outer", _repeat=pl.col("_usage").fill_null(False)
    )
    for _ in range(MAX_DEPTH):
        pending = state.filter(pl.col("_up").is_not_null() & ~pl.col("_repeat"))
        if pending.is_empty():
            break
        above = state.select(_up="_span", _up2="_up", _repeat2="_repeat")
        state = (
            state.join(above, on="_up", how="left")
            .with_columns(
                _repeat=pl.col("_repeat") | pl.col("_repeat2").fill_null(False),
                _up=pl.when(pl.col("_repeat")).then(None).otherwise("_up2"),
            )
            .select("_span", "_up", "_repeat")
        )
    return state.select("_span", "_repeat")
