"""`blameset attribute`: regressions and cost changes, each put down to the version_set change
(and component) behind it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import (
    AsJson,
    Inputs,
    Since,
    SkipBadLines,
    Until,
    fail,
    open_spans,
    span_window,
    when,
    write_html,
)
from ._engine import EngineOption, MemoryLimit, SparkMaster, roll_up

if TYPE_CHECKING:
    from rich.console import Console

    from blameset.analyze import Attribution, Finding
    from blameset.analyze.attribute import Episode

_FINDING_COLUMNS = (
    "verdict",
    "metric",
    "effect",
    "95% CI",
    "naive",
    "components",
    "routes",
    "baseline -> candidate",
    "n",
)


def attribute(
    inputs: Inputs,
    as_json: AsJson = False,
    min_effect: Annotated[
        float, typer.Option(help="Smallest effect worth a finding (0.05 = 5%).")
    ] = 0.05,
    alpha: Annotated[float, typer.Option(help="False discovery rate (Benjamini-Hochberg).")] = 0.05,
    strata: Annotated[
        str | None,
        typer.Option(help="Comma-separated strata columns (default: route, + tenant if few)."),
    ] = None,
    since: Since = None,
    until: Until = None,
    before: Annotated[
        str | None, typer.Option(help="Cost window before, FROM..TO (default: first half).")
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="Cost window after, FROM..TO (default: second half).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML report here.")
    ] = None,
    skip_bad_lines: SkipBadLines = False,
    engine: EngineOption = None,
    memory_limit: MemoryLimit = None,
    spark_master: SparkMaster = None,
) -> None:
    """Attribute regressions and cost changes to the version_set change (and component) behind
    them; mix-adjusted, with confidence intervals, `confounded` and `external` verdicts."""
    from blameset.analyze import attribute as run_attribute

    spans = open_spans(inputs, "attribute", skip_bad_lines)
    # one roll-up for the attribution and the page, in the engine (DuckDB for datasets)
    table = roll_up(inputs, spans, engine, memory_limit, spark_master, "attribute").requests
    b, a = span_window(before, "--before"), span_window(after, "--after")
    if (b is None) != (a is None):
        fail("--before and --after go together")
    try:
        result = run_attribute(
            spans,
            min_effect=min_effect,
            alpha=alpha,
            strata=[s.strip() for s in strata.split(",")] if strata else None,
            since=when(since, "--since"),
            until=when(until, "--until"),
            cost_windows=(b, a) if b is not None and a is not None else None,
            seed=seed,
            requests=table,
        )
    except ValueError as exc:
        fail(f"blameset attribute: {exc}")
    if html_path is not None:
        write_html(html_path, spans, result, "attribute", table)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    _print_attribution(result)
    if html_path is not None:
        typer.echo(f"HTML report: {html_path}")


def _print_attribution(result: Attribution) -> None:
    from rich.console import Console

    console = Console(width=max(160, Console().width))
    _print_episodes(result, console)
    _print_findings(result, console)
    _print_cost(result, console)
    if not result.findings and not result.tests:
        console.print(
            "No comparison could be made: attribution needs two version_sets (or one over "
            "time) with at least 30 requests each side; this data has "
            f"{result.settings['requests']} requests."
        )
    elif not result.findings:
        console.print(
            f"No finding: {len(result.tests)} comparisons, none both significant "
            f"(q <= {result.settings['alpha']}) and at least "
            f"{result.settings['min_effect']:.0%} in size."
        )


def _print_episodes(result: Attribution, console: Console) -> None:
    from rich.table import Table

    episodes = Table(title=f"{len(result.episodes)} rollout episodes")
    for c in ("at", "kind", "baseline", "candidate", "changed", "routes", "compared (UTC)"):
        episodes.add_column(c)
    for e in result.episodes:
        changed = "; ".join(f"{k}: {v[0]} -> {v[1]}" for k, v in e.changes.items())
        episodes.add_row(
            e.at.strftime("%Y-%m-%d %H:%M"),
            e.kind,
            e.baseline,
            e.candidate,
            changed,
            ", ".join(e.routes),
            compared(e),
        )
    console.print(episodes)


def compared(episode: Episode) -> str:
    """Which window each side's sample came from, and why it is smaller than the data: side by
    side over the time both served, or before/after the change (a quarter of the data each side
    at most, never across a change point in either version_set's own series)."""
    how = episode.comparison
    window = how.get("window")
    if not window:
        return "not compared (too few requests)"
    lo, hi = (t[:16].replace("T", " ") for t in window)
    at = episode.at.strftime("%Y-%m-%d %H:%M")
    if how.get("mode") == "concurrent":
        text = f"side by side {lo} to {hi}: the time both served"
    else:
        text = (
            f"baseline {lo} to {at}, candidate {at} to {hi}: before/after the change, at most "
            "a quarter of the data each side, cut at any change point in either's series"
        )
    if how.get("why"):  # attribution's own account of the window, when it gives one
        text += f" ({how['why']})"
    if how.get("adjusted_for"):
        text += "; balanced on " + ", ".join(how["adjusted_for"])
    if how.get("inconclusive"):
        text += f"; inconclusive: {how.get('reason', 'no like traffic on both sides')}"
    return text


def _print_findings(result: Attribution, console: Console) -> None:
    from rich.table import Table

    findings = Table(title=f"{len(result.findings)} findings ({len(result.tests)} tests, BH)")
    for c in _FINDING_COLUMNS:
        findings.add_column(c, justify="right" if c in ("effect", "naive", "n") else "left")
    for f in result.findings:
        findings.add_row(
            f.verdict,
            f.metric,
            f"x{f.effect:.3f}",
            f"[{f.ci[0]:.3f}, {f.ci[1]:.3f}]",
            f"x{f.naive_effect:.3f}",
            ", ".join(f.components) or "-",
            ", ".join(f.scope.get("routes", [])),
            f"{f.baseline} -> {f.candidate}",
            _n(f, result),
        )
    console.print(findings)
    if result.findings:
        console.print(
            "n: requests compared, baseline/candidate, of all each version_set served: those in "
            "the episode's window ('compared' above) on its routes, in strata (route, tenant) "
            "both sides have, and for latency metrics the successful ones only."
        )


def _n(finding: Finding, result: Attribution) -> str:
    """``58/40 of 100/100``: the requests compared, and how many each version_set served."""
    served = [
        result.cohorts[v].requests if v in result.cohorts else None
        for v in (finding.baseline, finding.candidate)
    ]
    shown = f"{finding.n_baseline}/{finding.n_candidate}"
    if None in served:
        return shown
    return f"{shown} of {served[0]}/{served[1]}"


def _print_cost(result: Attribution, console: Console) -> None:
    """The cost decomposition: its terms, and the version changes behind tokens per call and
    price."""
    from blameset.analyze import usd

    cost = result.cost_decomposition
    if "before" not in cost:
        return
    change = cost["change_usd"]
    console.print(
        f"Cost {usd(cost['before']['cost_usd'])} -> {usd(cost['after']['cost_usd'])} "
        f"({usd(change, sign=True)}): "
        + ", ".join(f"{k} {usd(v, sign=True)}" for k, v in cost["terms"].items())
    )
    for term in ("tokens_per_call", "price"):
        for d in cost["drivers"].get(term, [])[:3]:
            if abs(d["usd"]) >= 0.01 * abs(change):  # drivers worth a line: 1% of the change
                moved = "; ".join(f"{k}: {v[0]} -> {v[1]}" for k, v in d["changes"].items())
                console.print(
                    f"  {term} {usd(d['usd'], sign=True)}: {moved or 'no version change'}"
                )
