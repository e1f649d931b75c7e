"""One self-contained HTML page (plotly.js inlined once, no network) that says what changed:
first the headline and the findings in words, then the version_sets side by side, cost per
request and p95 latency over time by version_set with a marker where each first appears, the
latency breakdown per version_set, the cost decomposition as a waterfall, and the service map
(which operations call which, by ``blameset.boundary``).

Every chart and table names a version_set by what it changed (``prompt outline@v3 -> v4``), its
id only as a detail; worse is red (a cost or latency rise), better green; a partial time bucket
at either end is left out, not drawn as a fall; titles are HTML headings, clear of plotly's
toolbar, and tables are HTML, so no row is clipped."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from ._money import usd
from ._prose import describe_finding, headline, version_names
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


WORSE, BETTER, NEUTRAL = "#d62728", "#2ca02c", "#7f7f7f"
"""Red for a rise in cost or latency (worse), green for a fall."""

_PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
"""Series colours without red or green, which say worse and better on this page."""


@dataclass
class _Section:
    """One part of the page: a heading, a caption, and a figure or HTML."""

    title: str
    body: str = ""
    figure: go.Figure | None = None
    caption: str = ""


def _first_seen_markers(
    fig: go.Figure, attribution: Attribution | None, names: dict[str, str]
) -> None:
    if attribution is None:
        return
    for cohort in sorted(attribution.cohorts.values(), key=lambda c: c.first_seen)[1:]:
        fig.add_vline(x=cohort.first_seen, line_dash="dot", line_color="#888")
        fig.add_annotation(
            x=cohort.first_seen,
            y=1.0,
            yref="paper",
            text=html.escape(names.get(cohort.id, cohort.id[:6])),
            showarrow=False,
            textangle=-90,
            xanchor="left",
            yanchor="top",
            font={"size": 10, "color": "#555"},
        )


def _full_buckets(
    series: pl.DataFrame, t0: datetime, t1: datetime, width: timedelta
) -> tuple[pl.DataFrame, list[str]]:
    """The buckets the data covers whole: one at either end that the data covers less than 90%
    of is left out (a partial bucket would read as a fall); what was left out, in words."""
    times = series["time"].unique().sort().to_list()
    if len(times) < 3:
        return series, []
    dropped = []
    first, last = times[0], times[-1]
    if (first + width - t0) < 0.9 * width:
        series = series.filter(pl.col("time") != first)
        dropped.append(f"the first (from {first:%Y-%m-%d %H:%M})")
    if (t1 - last) < 0.9 * width:
        series = series.filter(pl.col("time") != last)
        dropped.append(f"the last (from {last:%Y-%m-%d %H:%M})")
    return series, dropped


def _over_time(
    requests: pl.DataFrame, bucket: str, attribution: Attribution | None, names: dict[str, str]
) -> list[_Section]:
    t0, t1 = requests["start"].min(), requests["start"].max()
    assert isinstance(t0, datetime)
    assert isinstance(t1, datetime)
    width = dict(_BUCKETS).get(bucket)
    series = (
        requests.with_columns(time=pl.col("start").dt.truncate(bucket))
        .group_by("version_set_id", "time")
        .agg(
            cost=pl.col("cost_usd").mean(),
            p95=pl.col("latency_ms").quantile(0.95),
            n=pl.len(),
        )
        .sort("time")
    )
    dropped: list[str] = []
    if width is not None:
        series, dropped = _full_buckets(series, t0, t1, timedelta(seconds=width))
    cost, p95 = go.Figure(), go.Figure()
    for (vid,), part in sorted(series.partition_by("version_set_id", as_dict=True).items()):
        name = names.get(str(vid), str(vid))
        detail = [f"{name}<br>version_set {vid}<br>{n:,} requests" for n in part["n"].to_list()]
        for fig, column in ((cost, "cost"), (p95, "p95")):
            fig.add_trace(
                go.Scatter(
                    x=part["time"],
                    y=part[column],
                    mode="lines+markers",
                    name=name,
                    text=detail,
                    hovertemplate="%{text}<br>%{x}<br>%{y}<extra></extra>",
                )
            )
    cost.update_layout(yaxis_title="USD per request", yaxis_tickformat="$.3~r")
    p95.update_layout(yaxis_title="ms")
    _first_seen_markers(cost, attribution, names)
    _first_seen_markers(p95, attribution, names)
    note = (
        f"Buckets of {bucket}; " + " and ".join(dropped) + " bucket, partial, left out."
        if dropped
        else f"Buckets of {bucket}."
    )
    return [
        _Section(f"Cost per request by version_set (mean per {bucket})", figure=cost, caption=note),
        _Section(f"p95 latency by version_set (per {bucket})", figure=p95, caption=note),
    ]


def _breakdown(requests: pl.DataFrame, names: dict[str, str]) -> _Section:
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
    labels = {  # only streamed calls have a first token: a whole answer's time is the rest
        "queue": "queue",
        "ttft": "time to first token (streamed)",
        "generation": "the rest (generation, whole answers)",
        "tool": "tool",
    }
    x = [names.get(str(v), str(v)) for v in parts["version_set_id"].to_list()]
    for column, label in labels.items():
        fig.add_trace(go.Bar(x=x, y=parts[column], name=label))
    fig.update_layout(barmode="stack", yaxis_title="ms", xaxis={"automargin": True})
    return _Section("Latency breakdown per version_set (mean ms)", figure=fig)


def _waterfall(decomposition: dict[str, Any]) -> _Section | None:
    terms = decomposition.get("terms")
    if not terms or "before" not in decomposition:
        return None
    before = decomposition["before"]["cost_usd"]
    after = decomposition["after"]["cost_usd"]
    names = ["before", *terms, "after"]
    values = [before, *terms.values(), after]
    text = [usd(before), *(usd(v, sign=True) for v in terms.values()), usd(after)]
    fig = go.Figure(
        go.Waterfall(
            x=names,
            y=values,
            measure=["absolute", *["relative"] * len(terms), "total"],
            text=text,
            textposition="outside",
            increasing={"marker": {"color": WORSE}},
            decreasing={"marker": {"color": BETTER}},
            totals={"marker": {"color": NEUTRAL}},
        )
    )
    fig.update_layout(yaxis_title="USD", yaxis_tickformat="$.3~r")
    b, a = decomposition["before"], decomposition["after"]
    caption = (
        f"Cost of {b['from'][:16].replace('T', ' ')} to {b['to'][:16].replace('T', ' ')} against "
        f"{a['from'][:16].replace('T', ' ')} to {a['to'][:16].replace('T', ' ')} UTC, "
        f"{usd(before)} to {usd(after)}: red terms raised it, green ones lowered it."
    )
    return _Section("Cost change decomposed (LMDI)", figure=fig, caption=caption)


def _vs(vid: str, names: dict[str, str]) -> str:
    """A version_set's name with its id as a detail."""
    return f'{html.escape(names.get(vid, vid))} <span class="id">{html.escape(vid)}</span>'


def _findings(attribution: Attribution, names: dict[str, str]) -> _Section:
    rows = []
    for f in attribution.findings:
        # every metric compared is worse higher: cost, tokens, latency, error rates
        tone = "worse" if f.effect > 1 else "better"
        rows.append(
            f'<tr class="{tone}"><td class="verdict">{html.escape(f.verdict)}</td>'
            f"<td>{html.escape(describe_finding(f))}</td>"
            f'<td class="num">x{f.effect:.3f}</td>'
            f'<td class="num">[{f.ci[0]:.3f}, {f.ci[1]:.3f}]</td>'
            f'<td class="num">x{f.naive_effect:.3f}</td>'
            f"<td>{_vs(f.baseline, names)} &rarr; {_vs(f.candidate, names)}</td>"
            f'<td class="num">{f.n_baseline:,}/{f.n_candidate:,}</td></tr>'
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in ("verdict", "what", "effect", "95% CI", "naive", "baseline &rarr; candidate", "n")
    )
    body = (
        f'<table class="findings"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No finding.</p>"
    )
    caption = (
        "Mix-adjusted effects (ratio candidate/baseline) with 95% intervals; naive: pooled, "
        "unadjusted. Red: the change made it worse (dearer, slower, more errors); green: better. "
        "n: requests compared, baseline/candidate."
    )
    return _Section(f"Findings ({len(rows)})", body=body, caption=caption)


def _version_table(
    requests: pl.DataFrame, attribution: Attribution, names: dict[str, str]
) -> _Section:
    """One row per version_set: its name, id, first seen, requests, cost, p95, errors; a cost or
    p95 above the version_set it took traffic from in red, below in green."""
    stats = {
        str(r["version_set_id"]): r
        for r in requests.group_by("version_set_id")
        .agg(
            n=pl.len(),
            cost=pl.col("cost_usd").mean(),
            p95=pl.col("latency_ms").quantile(0.95),
            errors=(pl.col("final_status") == "failure").mean(),
        )
        .iter_rows(named=True)
    }
    parent = {e.candidate: e.baseline for e in reversed(attribution.episodes)}

    def cell(vid: str, key: str) -> str:
        """The class of a cost or p95 cell: red above its baseline's, green below."""
        base = stats.get(parent.get(vid, ""))
        if base is None or not base[key]:
            return "num"
        ratio = stats[vid][key] / base[key]
        return "num worse" if ratio > 1.02 else ("num better" if ratio < 0.98 else "num")

    rows = []
    for cohort in sorted(attribution.cohorts.values(), key=lambda c: c.first_seen):
        s = stats.get(cohort.id)
        if s is None:
            continue
        rows.append(
            f"<tr><td>{_vs(cohort.id, names)}</td>"
            f"<td>{cohort.first_seen:%Y-%m-%d %H:%M}</td>"
            f'<td class="num">{s["n"]:,}</td>'
            f'<td class="{cell(cohort.id, "cost")}">{usd(s["cost"])}</td>'
            f'<td class="{cell(cohort.id, "p95")}">{s["p95"]:,.0f} ms</td>'
            f'<td class="num">{s["errors"]:.2%}</td></tr>'
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in ("version_set", "first seen (UTC)", "requests", "$/request", "p95", "errors")
    )
    body = (
        f'<table class="versions"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return _Section(
        "Version sets",
        body=body,
        caption="Each named by what it changed from the version_set it took traffic from; "
        "red: dearer or slower than that one, green: cheaper or faster.",
    )


def _call_sample(spans: pl.LazyFrame, max_traces: int) -> pl.DataFrame:
    """The spans of up to ``max_traces`` traces, each with its ``blameset.boundary``: traces
    named by the first spans read, then all of their spans, in one streaming pass. (Taking
    them from every trace id of the data held all of those ids and joined every span to them
    in memory: 2.5 GB at 30M spans, more than the roll-up itself.)"""
    names = spans.collect_schema().names()
    boundary = (
        pl.col("attributes").str.extract(r'"blameset\.boundary"\s*:\s*"([a-z]+)"')
        if "attributes" in names
        else pl.lit(None, pl.String)
    )
    traces = (
        spans.select("trace_id")
        .head(max_traces * 64)
        .unique(maintain_order=True)
        .head(max_traces)
        .collect()
    )
    return (
        spans.join(traces.lazy(), on="trace_id", how="semi")
        .select("trace_id", "span_id", "parent_span_id", "name", boundary.alias("boundary"))
        .collect(engine="streaming")
    )


def _call_edges(sample: pl.DataFrame) -> pl.DataFrame:
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


def _headline(attribution: Attribution | None) -> str:
    if attribution is None:
        return ""
    first = headline(attribution)
    if first is not None:
        return describe_finding(first)
    return (
        f"No finding: {len(attribution.tests)} comparisons, none both significant and at least "
        f"{attribution.settings.get('min_effect', 0.05):.0%} in size."
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
  color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{margin:2rem 0 .3rem;font-size:1.25rem}
.headline{font-size:1.2rem;font-weight:600;padding:.8rem 1rem;border-left:6px solid #d62728;
  background:#fff5f5;overflow-wrap:anywhere}
.headline.none{border-color:#7f7f7f;background:#f6f6f6}
.caption{color:#555;margin:.2rem 0 .5rem;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;table-layout:auto}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top;
  overflow-wrap:anywhere}
td.num,td.verdict{text-align:right;white-space:nowrap}td.verdict{text-align:left}
tr.worse td,td.worse{color:#b01c1d}tr.worse td:first-child{border-left:4px solid #d62728}
tr.better td,td.better{color:#1f7a1f}tr.better td:first-child{border-left:4px solid #2ca02c}
.id{color:#888;font-size:.8em;font-family:ui-monospace,monospace}
.figure{margin:.5rem 0 1rem}
"""


def write_html(
    path: str | Path,
    spans: pl.LazyFrame | pl.DataFrame,
    *,
    attribution: Attribution | None = None,
    bucket: str | None = None,
    requests: pl.DataFrame | None = None,
) -> Path:
    """Write the report page to ``path``; ``attribution`` adds the headline, the findings, the
    version_sets' names and markers and the cost waterfall. One file, plotly.js inlined once: it
    opens offline."""
    lazy = spans.lazy() if isinstance(spans, pl.DataFrame) else spans
    requests = requests if requests is not None else request_table(lazy)
    names = version_names(attribution)
    sections: list[_Section] = []
    summary = "no requests"
    if attribution is not None:
        sections.append(_findings(attribution, names))
        if not requests.is_empty():
            sections.append(_version_table(requests, attribution, names))
    if not requests.is_empty():
        t0, t1 = requests["start"].min(), requests["start"].max()
        assert isinstance(t0, datetime)
        assert isinstance(t1, datetime)
        bucket = bucket or auto_bucket(t0, t1)
        sections += _over_time(requests, bucket, attribution, names)
        sections.append(_breakdown(requests, names))
        summary = (
            f"{requests.height:,} requests from {t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} UTC, "
            f"total cost {usd(float(requests['cost_usd'].sum()))}"
        )
    if attribution is not None:
        waterfall = _waterfall(attribution.cost_decomposition)
        if waterfall is not None:
            sections.append(waterfall)
    service = _service_map(lazy)
    if service is not None:
        sections.append(
            _Section(
                "Service map: who calls whom",
                figure=service,
                caption="Links by the callee's blameset.boundary (blue sync, green async, red "
                "degraded); red nodes answered degraded.",
            )
        )
    parts = []
    plotted = 0
    for section in sections:
        inner = section.body
        if section.figure is not None:
            section.figure.update_layout(
                template="plotly_white",
                margin={"t": 30, "r": 20},
                legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0},
                colorway=_PALETTE,
            )
            inner = (
                '<div class="figure">'
                + pio.to_html(
                    section.figure,
                    full_html=False,
                    include_plotlyjs=(plotted == 0),
                    default_width="100%",
                    config={"displaylogo": False},
                )
                + "</div>"
            )
            plotted += 1
        caption = (
            f'<p class="caption">{html.escape(section.caption)}</p>' if section.caption else ""
        )
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>{caption}{inner}</section>")
    said = _headline(attribution)
    lead = ""
    if said:
        tone = "headline" if attribution is not None and attribution.findings else "headline none"
        lead = f'<p id="headline" class="{tone}">{html.escape(said)}</p>'
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>blameset report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body><h1>blameset report</h1><p>{html.escape(summary)}. Generated {generated}.</p>
{lead}
{"".join(parts)}
</body></html>
"""
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
