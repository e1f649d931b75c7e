"""The `blameset` command: one typer app, a sub-app per noun. The CLI holds no logic: each command
parses options, calls analyze or instrument, prints, and maps errors to exit codes.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

try:
    import typer
except ImportError:  # the base install (services) has no CLI stack
    typer = None  # type: ignore[assignment]


def _version() -> str:
    try:
        return version("blameset")
    except PackageNotFoundError:
        return "0+unknown"


if typer is not None:
    app = typer.Typer(
        name="blameset",
        help="Which version_set change made your AI backend slower or dearer.",
        no_args_is_help=True,
        add_completion=False,
    )
    audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")
    budget_app = typer.Typer(help="Budgets and the spend breaker.", no_args_is_help=True)
    app.add_typer(budget_app, name="budget")

    def _print_version(value: bool) -> None:
        if value:
            typer.echo(f"blameset {_version()}")
            raise typer.Exit()

    @app.callback()
    def root(
        show_version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_print_version,
                is_eager=True,
                help="Print the version and exit.",
            ),
        ] = False,
    ) -> None:
        """blameset: trace analyzer for AI application backends."""

    @app.command()
    def taxonomy(
        fmt: Annotated[str, typer.Option("--format", help="md (a Markdown table) or json.")] = "md",
    ) -> None:
        """Print the error taxonomy: codes, HTTP status, retry policy, budget, alert, messages."""
        from blameset.instrument import errors

        if fmt == "json":
            typer.echo(json.dumps(errors.taxonomy_json(), ensure_ascii=False, indent=2))
        elif fmt == "md":
            typer.echo(errors.taxonomy_markdown(), nl=False)
        else:
            typer.echo(f"blameset taxonomy: --format must be md or json, not {fmt!r}", err=True)
            raise typer.Exit(2)

    @audit_app.command("verify")
    def audit_verify(
        path: Annotated[Path, typer.Argument(help="The audit log (JSONL) to check.")],
        expect_last: Annotated[
            str | None,
            typer.Option(help="The hash the last record must have (catches a cut-off tail)."),
        ] = None,
    ) -> None:
        """Check the hash chain; exit 1 naming the first edited, removed or moved record."""
        from blameset.instrument.audit import verify

        if not path.is_file():
            typer.echo(f"blameset audit verify: {path}: no such file", err=True)
            raise typer.Exit(2)
        result = verify(path, expect_last=expect_last)
        if result.ok:
            typer.echo(
                f"{path}: chain intact ({result.records} records); last hash "
                f"{result.last_hash} (pass it as --expect-last next time to catch a cut-off tail)"
            )
            return
        where = f"line {result.line}" if result.line is not None else "end of file"
        typer.echo(f"{path}: {where}: {result.problem}", err=True)
        raise typer.Exit(1)

    @budget_app.command("status")
    def budget_status(
        store: Annotated[str, typer.Option(help="sqlite:PATH or redis://HOST:PORT/DB")],
        tenant: Annotated[list[str], typer.Option(help="Tenant to show (repeat for several).")],
        per_minute_usd: Annotated[
            float | None, typer.Option(help="The service's per-minute limit, to show beside it.")
        ] = None,
        per_day_usd: Annotated[
            float | None, typer.Option(help="The service's per-day limit, to show beside it.")
        ] = None,
        at: Annotated[
            float | None, typer.Option(help="Unix time to look at (default: now).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    ) -> None:
        """Spend per tenant and window (settled, held, limit) and the global breaker's state
        as the store shows it now (the service's own breaker may be half-open)."""
        from blameset.instrument.budget import Budget

        if store == "memory":
            typer.echo(
                "blameset budget status: the memory store lives inside one process; "
                "point --store at the service's sqlite:PATH or redis:// store",
                err=True,
            )
            raise typer.Exit(2)
        if store.startswith("sqlite:") and not Path(store[len("sqlite:") :]).is_file():
            typer.echo(f"blameset budget status: no SQLite store at {store[7:]}", err=True)
            raise typer.Exit(2)
        try:
            budget = Budget(
                store, tenant_per_minute_usd=per_minute_usd, tenant_per_day_usd=per_day_usd
            )
            status = budget.status(tenant, now=at)
        except Exception as exc:  # a bad spec or an unreachable store: say which, no traceback
            typer.echo(f"blameset budget status: cannot read store {store!r}: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(status, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"budgets in {store}")
        for column in ("tenant", "window", "settled $", "held $", "limit $"):
            table.add_column(column, justify="left" if column in ("tenant", "window") else "right")
        for row in status["tenants"]:
            limit = "-" if row["limit_usd"] is None else f"{row['limit_usd']:.2f}"
            table.add_row(
                row["tenant"],
                row["window"],
                f"{row['settled_usd']:.4f}",
                f"{row['held_usd']:.4f}",
                limit,
            )
        console = Console()
        console.print(table)
        b = status["breaker"]
        console.print(
            f"global breaker: {b['state']} (last hour ${b['last_hour_usd']:.2f}, baseline "
            f"${b['baseline_usd_per_hour']:.2f}/h, opens above {b['spike_ratio']}x)"
        )

    @app.command()
    def ingest(
        inputs: Annotated[
            list[str],
            typer.Argument(help="Trace files, folders or globs (JSONL, OTLP JSON/proto)."),
        ],
        out: Annotated[Path, typer.Option("--out", help="The Parquet dataset folder.")],
        skip_bad_lines: Annotated[
            bool,
            typer.Option("--skip-bad-lines", help="Count unreadable lines and go on."),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    ) -> None:
        """Read trace files into a Parquet dataset partitioned by day (appends; no duplicates)."""
        from blameset.analyze.ingest import ingest as run_ingest
        from blameset.analyze.readers import BadInput

        progress = None
        if sys.stderr.isatty() and not as_json:
            from rich.progress import Progress

            progress = Progress(transient=True)
        task = None

        def on_file(path: Path, done: int, total: int) -> None:
            nonlocal task
            if progress is None:
                return
            if task is None:
                progress.start()
                task = progress.add_task("ingesting", total=total)
            progress.update(task, completed=done, description=f"ingesting {path.name}")

        try:
            summary = run_ingest(inputs, out, skip_bad=skip_bad_lines, on_file=on_file)
        except OSError as exc:
            typer.echo(f"blameset ingest: {exc}", err=True)
            raise typer.Exit(2) from None
        except BadInput as exc:
            typer.echo(f"blameset ingest: {exc}", err=True)
            if not skip_bad_lines:
                typer.echo("  (--skip-bad-lines counts such lines and goes on)", err=True)
            raise typer.Exit(2) from None
        finally:
            if progress is not None and task is not None:
                progress.stop()
        if as_json:
            typer.echo(json.dumps(summary.as_dict(), indent=2))
            return
        typer.echo(
            f"{summary.spans} spans ({summary.requests} requests; {summary.duplicates} "
            "duplicates not stored again: already in the dataset or repeated in the input) "
            f"from {summary.files} files into {summary.out}; "
            f"tokens {summary.input_tokens} in / {summary.output_tokens} out, "
            f"cost ${summary.cost_usd:.4f}"
        )
        for file, reasons in summary.skipped.items():
            for reason, n in reasons.items():
                typer.echo(f"  skipped {n} line(s) of {file}: {reason}")
        for signal, n in summary.other_signal_lines.items():
            typer.echo(f"  passed over {n} line(s) of {signal}")
        if set(summary.decoders) - {"native"}:  # says why an ingest was slower than usual
            readers = ", ".join(f"{name} {n}" for name, n in sorted(summary.decoders.items()))
            typer.echo(f"  chunks by reader (native is the fast one): {readers}")

    @app.command()
    def check(
        inputs: Annotated[
            list[str], typer.Argument(help="Span files (and *.logs.jsonl) to check.")
        ],
        min_coverage: Annotated[
            float, typer.Option(help="Percent of spans that must carry each required field.")
        ] = 100.0,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    ) -> None:
        """Check telemetry against the contract: per service and span kind, the share of spans
        carrying each required field; exit 1 naming the gaps under --min-coverage."""
        from blameset.analyze.check import coverage, log_coverage
        from blameset.analyze.ingest import load
        from blameset.analyze.readers import BadInput, ReadReport, expand_inputs, read_file
        from blameset.analyze.table import spans_frame

        if not 0 <= min_coverage <= 100:
            typer.echo(f"--min-coverage is a percent (0-100), not {min_coverage:g}", err=True)
            raise typer.Exit(2)
        report = ReadReport(keep_logs=True)
        datasets = [
            i for i in inputs if Path(i).is_dir() and next(Path(i).rglob("*.parquet"), None)
        ]
        try:
            files = [i for i in inputs if i not in datasets]
            records = [r for p in expand_inputs(files) for r in read_file(p, report)]
        except BadInput as exc:
            typer.echo(f"blameset check: {exc}", err=True)
            raise typer.Exit(2) from None
        rows = coverage(spans_frame(records).lazy()) if records else []
        for folder in datasets:  # an ingested dataset: spans only (log records are not stored)
            rows += coverage(load(folder))
        rows += log_coverage(report.logs)
        gaps = [r for r in rows if r.share * 100 < min_coverage]
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "min_coverage": min_coverage,
                        "rows": [
                            {
                                "service": r.service,
                                "kind": r.kind,
                                "field": r.field,
                                "spans": r.spans,
                                "covered": r.covered,
                                "share": r.share,
                            }
                            for r in rows
                        ],
                        "gaps": len(gaps),
                    },
                    indent=2,
                )
            )
        else:
            for r in rows:
                mark = "GAP" if r in gaps else "ok "
                typer.echo(
                    f"{mark} {r.service:<24} {r.kind:<10} {r.field:<38} "
                    f"{r.share * 100:6.1f}% of {r.spans}"
                )
            if not rows:
                typer.echo("no spans or log records found")
        if gaps:
            typer.echo(
                f"FAIL: {len(gaps)} field(s) under {min_coverage:g}% coverage: "
                + "; ".join(f"{g.service}/{g.kind}: {g.field}" for g in gaps[:10]),
                err=True,
            )
            raise typer.Exit(1)

    @app.command()
    def gate(
        files: Annotated[list[Path], typer.Argument(help="Backend design documents (Markdown).")],
    ) -> None:
        """Check design documents name idempotency keys, trace_id, version_set and retry budgets."""
        from blameset.analyze.gate import check_design

        failed = False
        for file in files:
            if not file.is_file():
                typer.echo(f"{file}: no such file", err=True)
                failed = True
                continue
            try:
                result = check_design(file)
            except UnicodeDecodeError:
                typer.echo(f"{file}: not UTF-8 text (a design document is Markdown)", err=True)
                failed = True
                continue
            if result.ok:
                typer.echo(f"PASS {file}: idempotency key, trace_id, version_set, retry budget")
                continue
            failed = True
            typer.echo(f"FAIL {file}: missing {len(result.missing)} required element(s):")
            for req in result.missing:
                typer.echo(f"  - {req.name}: {req.why}")
        if failed:
            raise typer.Exit(1)

    def _when(text: str | None, option: str) -> datetime | None:
        """An ISO date or datetime from the command line; UTC unless it says otherwise."""
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            typer.echo(f"{option}: not an ISO date or datetime: {text!r}", err=True)
            raise typer.Exit(2) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def _span_window(text: str | None, option: str) -> tuple[datetime, datetime] | None:
        if text is None:
            return None
        lo, sep, hi = text.partition("..")
        if not sep or not lo or not hi:
            typer.echo(f"{option}: expected FROM..TO (ISO datetimes), got {text!r}", err=True)
            raise typer.Exit(2)
        start, end = _when(lo, option), _when(hi, option)
        if start is None or end is None or start >= end:
            typer.echo(f"{option}: FROM must come before TO, got {text!r}", err=True)
            raise typer.Exit(2)
        return start, end

    def _open(inputs: list[str], command: str, skip_bad: bool) -> Any:
        from blameset.analyze.readers import BadInput, ReadReport
        from blameset.analyze.source import open_spans

        report = ReadReport()
        try:
            spans = open_spans(inputs, skip_bad=skip_bad, report=report)
        except BadInput as exc:
            typer.echo(f"blameset {command}: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            typer.echo(f"blameset {command}: {exc}", err=True)
            raise typer.Exit(2) from None
        for (file, reason), n in report.skipped.items():
            typer.echo(f"blameset {command}: skipped {n} line(s) of {file}: {reason}", err=True)
        return spans

    def _write_html(
        path: Path, spans: Any, attribution: Any, command: str, requests: Any = None
    ) -> None:
        from blameset.analyze.html import write_html

        try:
            write_html(path, spans, attribution=attribution, requests=requests)
        except OSError as exc:
            typer.echo(f"blameset {command}: cannot write the HTML report: {exc}", err=True)
            raise typer.Exit(2) from None

    _Inputs = Annotated[
        list[str],
        typer.Argument(help="An ingested dataset folder, or trace files / folders / globs."),
    ]
    _Since = Annotated[
        str | None, typer.Option("--since", help="Only requests from this ISO time (UTC).")
    ]
    _Until = Annotated[
        str | None, typer.Option("--until", help="Only requests before this ISO time (UTC).")
    ]
    _Skip = Annotated[
        bool, typer.Option("--skip-bad-lines", help="Count unreadable lines and go on.")
    ]

    @app.command()
    def report(
        inputs: _Inputs,
        by: Annotated[
            str,
            typer.Option(
                help="Group by: version_set, model, route, tenant, time, or a component "
                "(prompt, config...); comma-separated."
            ),
        ] = "version_set",
        bucket: Annotated[str, typer.Option(help="Time bucket for --by time: 15m, 1h, 1d.")] = "1h",
        since: _Since = None,
        until: _Until = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
        html_path: Annotated[
            Path | None,
            typer.Option("--html", help="Also write the self-contained HTML report here."),
        ] = None,
        skip_bad_lines: _Skip = False,
    ) -> None:
        """Cost and latency by version_set, model, route, tenant or time bucket."""
        from blameset.analyze.attribute import request_table
        from blameset.analyze.report import report as run_report

        spans = _open(inputs, "report", skip_bad_lines)
        table = request_table(spans)  # one roll-up for the report, attribution and the page
        try:
            result = run_report(
                spans,
                requests=table,
                by=[b.strip() for b in by.split(",") if b.strip()],
                bucket=bucket,
                since=_when(since, "--since"),
                until=_when(until, "--until"),
            )
        except ValueError as exc:
            typer.echo(f"blameset report: {exc}", err=True)
            raise typer.Exit(2) from None
        if html_path is not None:
            from blameset.analyze.attribute import attribute as run_attribute

            found = run_attribute(
                spans,
                since=_when(since, "--since"),
                until=_when(until, "--until"),
                requests=table,
            )
            _write_html(html_path, spans, found, "report", table)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            _print_report(result)
        if html_path is not None and not as_json:
            typer.echo(f"HTML report: {html_path}")

    _REPORT_COLUMNS = {  # column -> (header, format); the rest is in --json
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
        "cost_usd.mean": ("$/request", "{:.5f}"),
        "cost_usd.total": ("$ total", "{:,.2f}"),
        "error_rate": ("errors", "{:.2%}"),
    }

    def _print_report(result: Any) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{result.totals['requests']:,} requests, ${result.totals['cost_usd']:,.2f} "
            "(means per request; --json for everything)"
        )
        keys = [c for c in result.by if c != "version_set"]
        for c in keys:
            table.add_column(c.removeprefix("version."), no_wrap=True)
        for header, _ in _REPORT_COLUMNS.values():
            table.add_column(header, justify="right", no_wrap=True)
        for row in result.frame.iter_rows(named=True):
            cells = [_cell(row.get(c)) for c in keys]
            cells += [
                "-" if row.get(c) is None else fmt.format(row[c])
                for c, (_, fmt) in _REPORT_COLUMNS.items()
            ]
            table.add_row(*cells)
        Console(width=max(190, Console().width)).print(table)

    def _cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
        return str(value)

    @app.command()
    def attribute(
        inputs: _Inputs,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
        min_effect: Annotated[
            float, typer.Option(help="Smallest effect worth a finding (0.05 = 5%).")
        ] = 0.05,
        alpha: Annotated[
            float, typer.Option(help="False discovery rate (Benjamini-Hochberg).")
        ] = 0.05,
        strata: Annotated[
            str | None,
            typer.Option(help="Comma-separated strata columns (default: route, + tenant if few)."),
        ] = None,
        since: _Since = None,
        until: _Until = None,
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
        skip_bad_lines: _Skip = False,
    ) -> None:
        """Attribute regressions and cost changes to the version_set change (and component) behind
        them; mix-adjusted, with confidence intervals, `confounded` and `external` verdicts."""
        from blameset.analyze.attribute import attribute as run_attribute
        from blameset.analyze.attribute import request_table

        spans = _open(inputs, "attribute", skip_bad_lines)
        table = request_table(spans)  # one roll-up for the attribution and the page
        windows = None
        b, a = _span_window(before, "--before"), _span_window(after, "--after")
        if (b is None) != (a is None):
            typer.echo("--before and --after go together", err=True)
            raise typer.Exit(2)
        if b is not None and a is not None:
            windows = (b, a)
        try:
            result = run_attribute(
                spans,
                min_effect=min_effect,
                alpha=alpha,
                strata=[s.strip() for s in strata.split(",")] if strata else None,
                since=_when(since, "--since"),
                until=_when(until, "--until"),
                cost_windows=windows,
                seed=seed,
                requests=table,
            )
        except ValueError as exc:
            typer.echo(f"blameset attribute: {exc}", err=True)
            raise typer.Exit(2) from None
        if html_path is not None:
            _write_html(html_path, spans, result, "attribute", table)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
            return
        _print_attribution(result)
        if html_path is not None:
            typer.echo(f"HTML report: {html_path}")

    def _print_attribution(result: Any) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(160, Console().width))
        episodes = Table(title=f"{len(result.episodes)} rollout episodes")
        for c in ("at", "kind", "baseline", "candidate", "changed", "routes"):
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
            )
        console.print(episodes)
        findings = Table(title=f"{len(result.findings)} findings ({len(result.tests)} tests, BH)")
        for c in (
            "verdict",
            "metric",
            "effect",
            "95% CI",
            "naive",
            "components",
            "routes",
            "baseline -> candidate",
            "n",
        ):
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
                f"{f.n_baseline}/{f.n_candidate}",
            )
        console.print(findings)
        cost = result.cost_decomposition
        if "before" in cost:
            console.print(
                f"Cost {cost['before']['cost_usd']:.2f} -> {cost['after']['cost_usd']:.2f} USD "
                f"({cost['change_usd']:+.2f}): "
                + ", ".join(f"{k} {v:+.2f}" for k, v in cost["terms"].items())
            )
            for term in ("tokens_per_call", "price"):
                for d in cost["drivers"].get(term, [])[:3]:
                    if abs(d["usd"]) >= 0.005:
                        moved = "; ".join(f"{k}: {v[0]} -> {v[1]}" for k, v in d["changes"].items())
                        console.print(
                            f"  {term} {d['usd']:+.2f} USD: {moved or 'no version change'}"
                        )
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

    @app.command()
    def demo(
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                help="Folder for the demo's files (default: ./blameset-demo, created in the "
                "current directory). A rerun replaces the demo's own files there; a folder "
                "with other files in it is refused.",
            ),
        ] = None,
        requests: Annotated[
            int,
            typer.Option(
                min=1,
                help="Simulated user requests over two days (client retries and double-clicked "
                "exports add about 1%).",
            ),
        ] = 3000,
        seed: Annotated[int, typer.Option(help="Seed of the traffic and its failures.")] = 7,
    ) -> None:
        """Serve two days of simulated traffic through an instrumented AI writing assistant (a
        prompt change and a model canary included), then ingest, report and attribute it and
        write the HTML report. Prints the findings and where the files are."""
        from .demo import main as run_demo

        raise typer.Exit(run_demo(out, requests, seed))


def main() -> None:
    """Console entry point."""
    if typer is None:
        sys.exit(
            "blameset: the command line needs the analysis extra: pip install 'blameset[analyze]'"
        )
    app()


if __name__ == "__main__":
    main()
