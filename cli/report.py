"""`blameset report`: cost and latency grouped by version_set, model, route, tenant or time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import AsJson, Inputs, Since, SkipBadLines, Until, fail, open_spans, when, write_html
from ._engine import EngineOption, MemoryLimit, SparkMaster, roll_up

if TYPE_CHECKING:
    from blameset.analyze import Report

_MONEY = "usd"  # a format that is the money formatter (imported when printing: a cheap import)
_COLUMNS = {  # column -> (header, format); the rest is in --json
    "requests": ("requests", "{:,}"),
    "latency_ms.p50": ("p50 ms", "{:,.0f}"),
    "latency_ms.p95": ("p95 ms", "{:,.0f}"),
    "latency_ms.p99": ("p99 ms", "{:,.0f}"),
    "ttft_ms.p50": ("TTFT p50", "{:,.0f}"),
    "tpot_ms.p50": ("ms/token", "{:.1f}"),
    "tool_ms.mean": ("tool ms", "{:,.0f}"),
    "queue_ms.mean": ("queue ms", "{:,.0f}"),
    "input_tokens.mean": ("in tok", "{:,.0f}"),
    "output_tokens.mean": ("out tok", "{:,.0f}"),
    "cost_usd.mean": ("$/request", _MONEY),
    "cost_usd.total": ("$ total", _MONEY),
    "error_rate": ("errors", "{:.2%}"),
}


def report(
    inputs: Inputs,
    by: Annotated[
        str,
        typer.Option(
            help="Group by: version_set, model, route, tenant, time, or a component "
            "(prompt, config...); comma-separated."
        ),
    ] = "version_set",
    bucket: Annotated[str, typer.Option(help="Time bucket for --by time: 15m, 1h, 1d.")] = "1h",
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
    html_path: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the self-contained HTML report here."),
    ] = None,
    skip_bad_lines: SkipBadLines = False,
    engine: EngineOption = None,
    memory_limit: MemoryLimit = None,
    spark_master: SparkMaster = None,
) -> None:
    """Cost and latency by version_set, model, route, tenant or time bucket."""
    from blameset.analyze import attribute
    from blameset.analyze import report as run_report

    spans = open_spans(inputs, "report", skip_bad_lines)
    # one roll-up for the report, attribution and the page, in the engine
    rolled = roll_up(inputs, spans, engine, memory_limit, spark_master, "report")
    table = rolled.requests
    start, end = when(since, "--since"), when(until, "--until")
    try:
        result = run_report(
            spans,
            requests=table,
            apart=rolled.apart_summary(),
            by=[b.strip() for b in by.split(",") if b.strip()],
            bucket=bucket,
            since=start,
            until=end,
        )
    except ValueError as exc:
        fail(f"blameset report: {exc}")
    if html_path is not None:
        found = attribute(spans, since=start, until=end, requests=table)
        write_html(html_path, spans, found, "report", table)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    _print_report(result)
    if html_path is not None:
        typer.echo(f"HTML report: {html_path}")


def _print_report(result: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    from blameset.analyze import usd

    table = Table(
        title=f"{result.totals['requests']:,} requests, {usd(result.totals['cost_usd'])} "
        "(means per request; --json for everything)"
    )
    keys = [c for c in result.by if c != "version_set"]
    for c in keys:
        table.add_column(c.removeprefix("version."), no_wrap=True)
    for header, _ in _COLUMNS.values():
        table.add_column(header, justify="right", no_wrap=True)
    for row in result.frame.iter_rows(named=True):
        cells = [_cell(row.get(c)) for c in keys]
        cells += [_format(row.get(c), fmt) for c, (_, fmt) in _COLUMNS.items()]
        table.add_row(*cells)
    Console(width=max(190, Console().width)).print(table)


def _format(value: Any, fmt: str) -> str:
    from blameset.analyze import usd

    if value is None:
        return "-"
    return usd(value) if fmt == _MONEY else fmt.format(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)
