"""One self-contained HTML page (plotly.js inlined once, no network) that shows what changed:
cost and p95 latency over time by version_set with a marker where each first appears, the latency
breakdown per version_set, the cost decomposition as a waterfall, the findings, and the service
map (which operations call which, by ``blameset.boundary``)."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from ._requests import request_table
from ._results import Attribution

__all__ = ["auto_bucket", "write_html"]

_BUCKETS = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 21600),
    ("1d", 86400),
    ("7d", 604800),
]


def auto_bucket(start: datetime, end: datetime, target: int = 48) -> str:
    """The smallest round bucket giving at most ``target`` buckets over [start, end]."""
    seconds = max((end - start).total_seconds(), 1.0)
    for name, width in _BUCKETS:
        if seconds / width <= target:
            return name
    return _BUCKETS[-1][0]


def _first_seen_markers(fig: go.Figure, attribution: Attribution | None) -> None:
    if attribution is None:
        return
    for cohort in sorted(attribution.cohorts.values(), key=lambda c: c.first_seen)[1:]:
        fig.add_vline(x=cohort.first_seen, line_dash="dot", line_color="#888")
        fig.add_annotation(
            x=cohort.first_seen,
            y=1.0,
            yref="paper",
            text=cohort.id[:6],
            showarrow=False,
            textangle=-90,
            xanchor="left",
            font={"size": 10, "color": "#555"},
        )


def _labels(attribution: Attribution | None) -> dict[str, str]:
    """Legend names: the id plus what differs from the first version_set seen."""
    if attribution is None or not attribution.cohorts:
        return {}
    cohorts = sorted(attribution.cohorts.values(), key=lambda c: c.first_seen)
    first = cohorts[0].components
    out = {}
    for c in cohorts:
        moved = [f"{k}={v}" for k, v in sorted(c.components.items()) if first.get(k) != v]
        out[c.id] = f"{c.id} {' '.join(moved)}".strip() if moved else f"{c.id} (first)"
    return out


def _over_time(
    requests: pl.DataFrame, bucket: str, attribution: Attribution | None
) -> list[go.Figure]:
    series = (
        requests.with_columns(time=pl.col("start").dt.truncate(bucket))
        .group_by("version_set_id", "time")
        .agg(
            cost=pl.col("cost_usd").sum(),
            p95=pl.col("latency_ms").quantile(0.95),
            n=pl.len(),
        )
        .sort("time")
    )
    cost, p95 = go.Figure(), go.Figure()
    labels = _labels(attribution)
    for (vid,), part in series.partition_by("version_set_id", as_dict=True).items():
        name = labels.get(str(vid), str(vid))
        cost.add_trace(go.Scatter(x=part["time"], y=part["cost"], mode="lines+markers", name=name))
        p95.add_trace(go.Scatter(x=part["time"], y=part["p95"], mode="lines+markers", name=name))
    cost.update_layout(title=f"Cost (USD per {bucket}) by version_set", yaxis_title="USD")
    p95.update_layout(title=f"p95 latency per {bucket} by version_set", yaxis_title="ms")
    _first_seen_markers(cost, attribution)
    _first_seen_markers(p95, attribution)
    return [cost, p95]


def _breakdown(requests: pl.DataFrame) -> go.Figure:
    parts = (
        requests.group_by("version_set_id")
        .agg(
            queue=pl.col("queue_ms").mean(),
            ttft=pl.col("ttft_ms").fill_null(0.0).mean(),
            tool=pl.col("tool_ms").mean(),
            total=pl.col("latency_ms").mean(),
        )
        .with_columns(
            generation=(pl.col("total") - pl.col("queue") - pl.col("ttft") - pl.col("tool")).clip(
                0.0
            )
        )
        .sort("version_set_id")
    )
    fig = go.Figure()
    labels = {
        "queue": "queue",
        "ttft": "time to first token",
        "generation": "generation",
        "tool": "tool",
    }
    for column, label in labels.items():
        fig.add_trace(go.Bar(x=parts["version_set_id"], y=parts[column], name=label))
    fig.update_layout(
        barmode="stack", title="Latency breakdown per version_set (mean ms)", yaxis_title="ms"
    )
    return fig


def _waterfall(decomposition: dict[str, Any]) -> go.Figure | None:
    terms = decomposition.get("terms")
    if not terms or "before" not in decomposition:
        return None
    before = decomposition["before"]["cost_usd"]
    after = decomposition["after"]["cost_usd"]
    names = ["before", *terms, "after"]
    values = [before, *terms.values(), after]
    fig = go.Figure(
        go.Waterfall(
            x=names,
            y=values,
            measure=["absolute", *["relative"] * len(terms), "total"],
            text=[f"-${-v:,.2f}" if v < 0 else f"${v:,.2f}" for v in values],
        )
    )
    fig.update_layout(
        title=(
            "Cost change decomposed (LMDI): "
            f"{decomposition['before']['from'][:16]} to {decomposition['before']['to'][:16]} "
            f"vs {decomposition['after']['from'][:16]} to {decomposition['after']['to'][:16]} UTC"
        ),
        yaxis_title="USD",
    )
    return fig


def _findings(attribution: Attribution) -> go.Figure:
    rows = [f.to_dict() for f in attribution.findings]
    header = [
        "verdict",
        "metric",
        "effect",
        "95% CI",
        "naive",
        "components",
        "baseline",
        "candidate",
        "routes",
    ]
    cells = [
        [r["verdict"] for r in rows],
        [r["metric"] for r in rows],
        [f"x{r['effect']:.3f}" for r in rows],
        [f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]" for r in rows],
        [f"x{r['naive_effect']:.3f}" for r in rows],
        [", ".join(r["components"]) or "-" for r in rows],
        [r["baseline"] for r in rows],
        [r["candidate"] for r in rows],
        [", ".join(r["scope"].get("routes", [])) for r in rows],
    ]
    fig = go.Figure(go.Table(header={"values": header}, cells={"values": cells}))
    fig.update_layout(title=f"Findings ({len(rows)})", height=min(1600, 140 + 64 * len(rows)))
    return fig


def _call_sample(spans: pl.LazyFrame, max_traces: int) -> pl.LazyFrame:
    """The spans of up to ``max_traces`` traces, each with its ``blameset.boundary``."""
    names = spans.collect_schema().names()
    boundary = (
        pl.col("attributes").str.extract(r'"blameset\.boundary"\s*:\s*"([a-z]+)"')
        if "attributes" in names
        else pl.lit(None, pl.String)
    )
    traces = spans.select("trace_id").unique().head(max_traces)
    return spans.join(traces, on="trace_id").select(
        "trace_id", "span_id", "parent_span_id", "name", boundary.alias("boundary")
    )


def _call_edges(sample: pl.LazyFrame) -> pl.DataFrame:
    """(caller, name, boundary, len): how often each operation called each other one."""
    callers = sample.select(
        "trace_id",
        pl.col("span_id").alias("parent_span_id"),
        pl.col("name").alias("caller"),
    )
    return (
        sample.join(callers, on=["trace_id", "parent_span_id"])
        .group_by("caller", "name", "boundary")
        .len()
        .collect()
    )


def _service_map(spans: pl.LazyFrame, max_traces: int = 20_000) -> go.Figure | None:
    """A Sankey of who calls whom over a sample of traces; None when no span has a caller."""
    sample = _call_sample(spans, max_traces)
    edges = _call_edges(sample)
    if edges.is_empty():
        return None
    nodes = sorted(set(edges["caller"].to_list()) | set(edges["name"].to_list()))
    index = {n: i for i, n in enumerate(nodes)}
    # a degraded answer is usually a request (a root, with no caller to draw a link from): say
    # on the node how often it degraded
    degraded = dict(
        sample.group_by("name")
        .agg((pl.col("boundary") == "degraded").fill_null(False).mean().alias("share"))
        .collect()
        .iter_rows()
    )
    node_labels = [f"{n} ({degraded[n]:.1%} degraded)" if degraded.get(n) else n for n in nodes]
    node_colours = [
        "rgba(214,39,40,0.8)" if degraded.get(n) else "rgba(120,120,120,0.8)" for n in nodes
    ]
    colour = {
        "sync": "rgba(31,119,180,0.5)",
        "async": "rgba(44,160,44,0.5)",
        "degraded": "rgba(214,39,40,0.6)",
    }
    labels = [f"{b or 'sync'}" for b in edges["boundary"].to_list()]
    fig = go.Figure(
        go.Sankey(
            node={"label": node_labels, "color": node_colours, "pad": 20},
            link={
                "source": [index[c] for c in edges["caller"].to_list()],
                "target": [index[n] for n in edges["name"].to_list()],
                "value": edges["len"].to_list(),
                "label": labels,
                "color": [colour.get(b, colour["sync"]) for b in labels],
            },
        )
    )
    fig.update_layout(
        title="Service map: who calls whom; links by the callee's blameset.boundary "
        "(blue sync, green async, red degraded), red nodes answered degraded"
    )
    return fig


def write_html(
    path: str | Path,
    spans: pl.LazyFrame | pl.DataFrame,
    *,
    attribution: Attribution | None = None,
    bucket: str | None = None,
    requests: pl.DataFrame | None = None,
) -> Path:
    """Write the report page to ``path``; ``attribution`` adds the findings, markers and the
    cost waterfall. One file, plotly.js inlined once: it opens offline."""
    lazy = spans.lazy() if isinstance(spans, pl.DataFrame) else spans
    requests = requests if requests is not None else request_table(lazy)
    figures: list[go.Figure] = []
    summary = "no requests"
    if not requests.is_empty():
        t0, t1 = requests["start"].min(), requests["start"].max()
        assert isinstance(t0, datetime)
        assert isinstance(t1, datetime)
        bucket = bucket or auto_bucket(t0, t1)
        figures += _over_time(requests, bucket, attribution)
        figures.append(_breakdown(requests))
        summary = (
            f"{requests.height:,} requests from {t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} UTC, "
            f"total cost ${float(requests['cost_usd'].sum()):,.2f}"
        )
    if attribution is not None:
        waterfall = _waterfall(attribution.cost_decomposition)
        if waterfall is not None:
            figures.append(waterfall)
        figures.append(_findings(attribution))
    service = _service_map(lazy)
    if service is not None:
        figures.append(service)
    parts = []
    for i, fig in enumerate(figures):
        fig.update_layout(template="plotly_white", margin={"t": 60})
        parts.append(
            pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), default_width="100%")
        )
    generated = (datetime.now(UTC) + timedelta(0)).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>blameset report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px}}
.figure{{margin:1.5rem 0}}</style></head>
<body><h1>blameset report</h1><p>{html.escape(summary)}. Generated {generated}.</p>
{"".join(f'<div class="figure">{p}</div>' for p in parts)}
</body></html>
"""
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
