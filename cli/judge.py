"""`blameset judge`: may this canary proceed? PASS (exit 0), FAIL (exit 1) or INCONCLUSIVE
(exit 3, with how many more requests would settle it); 2 stays bad input. Safe to poll: its
confidence sequences stay valid however often it runs as data arrives."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import AsJson, Inputs, Since, SkipBadLines, Until, fail, open_spans, when

if TYPE_CHECKING:
    from blameset.analyze.judge import Judgement

_STYLE = {"pass": "green", "fail": "bold red", "open": "yellow", "no data": "dim"}


def judge(
    inputs: Inputs,
    candidate: Annotated[
        str,
        typer.Option(help="The canary: a version_set id or COMPONENT=VALUE (prompt=outline@v5)."),
    ],
    baseline: Annotated[
        str | None,
        typer.Option(
            help="What it is compared with (default: the version_set it took traffic from)."
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="NAME:LIMIT, how much worse a metric may get (latency_ms.p95:+10%, "
            "error_rate:+0.5pp); repeatable; sets a default's limit or adds a metric.",
        ),
    ] = None,
    only: Annotated[
        bool, typer.Option("--only", help="Watch only the --metric ones, not the defaults.")
    ] = False,
    alpha: Annotated[
        float, typer.Option(help="Chance of a false FAIL (or PASS) over all looks and metrics.")
    ] = 0.05,
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
    skip_bad_lines: SkipBadLines = False,
) -> None:
    """Judge a canary against its baseline: a non-inferiority test per watched metric (cost per
    request, input and output tokens, p95 latency, p95 TTFT, error rate), mix-adjusted within
    strata, on confidence sequences valid at every look. Exit 0 PASS, 1 FAIL, 3 INCONCLUSIVE."""
    from blameset.analyze import request_table
    from blameset.analyze.judge import DEFAULT_LIMITS, parse_limit
    from blameset.analyze.judge import judge as run_judge

    try:
        given = dict(parse_limit(m) for m in metric or [])
    except ValueError as exc:
        fail(f"blameset judge: {exc}")
    if only and not given:
        fail("blameset judge: --only needs at least one --metric")
    limits = given if only else {**DEFAULT_LIMITS, **given}
    spans = open_spans(inputs, "judge", skip_bad_lines)
    try:
        result = run_judge(
            None,
            candidate,
            baseline,
            limits=limits,
            alpha=alpha,
            since=when(since, "--since"),
            until=when(until, "--until"),
            requests=request_table(spans),
        )
    except ValueError as exc:
        fail(f"blameset judge: {exc}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_judgement(result)
    raise typer.Exit(result.exit_code)


def _print_judgement(result: Judgement) -> None:
    from rich.console import Console
    from rich.table import Table

    from blameset.analyze.judge import duration

    console = Console(width=max(120, Console().width))
    say = console.print
    colour = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow"}
    say(result.summary(), style=colour[result.decision], highlight=False)
    table = Table(title=None)
    for c in ("metric", "limit", "effect [confidence sequence]", "baseline -> candidate", "n"):
        table.add_column(c, justify="right" if c == "n" else "left", no_wrap=c != "metric")
    table.add_column("verdict")
    for m in result.metrics:
        verdict = {"pass": "pass", "fail": "FAIL", "no data": "no data"}.get(m.status, "open")
        if m.status == "open":
            verdict = (
                f"open: ~{m.needed:,} more requests"
                + (f" (~{duration(m.needed_seconds)})" if m.needed_seconds else "")
                if m.needed is not None
                else "open: more than 1000x today's requests"
            )
        table.add_row(
            m.metric,
            str(m.limit),
            m.effect_text(),
            m.values_text(),
            f"{m.n_baseline:,}/{m.n_candidate:,}",
            verdict,
            style=_STYLE[m.status],
        )
    say(table)
    w = result.window
    say(
        f"Compared: baseline {result.baseline['name']} ({w['baseline_requests']:,} of "
        f"{w['baseline_served']:,} requests) with candidate {result.candidate['name']} "
        f"({w['candidate_requests']:,} of {w['candidate_served']:,}), "
        f"{w['from'][:16].replace('T', ' ')} to {w['to'][:16].replace('T', ' ')} UTC: {w['why']}. "
        f"Strata: {', '.join(w['strata'])}, weighted by the baseline's mix.",
        highlight=False,
    )
    say(
        f"Method: {result.settings['method']}; alpha {result.settings['alpha']} over all looks "
        "(safe to re-run as data arrives).",
        highlight=False,
        style="dim",
    )
