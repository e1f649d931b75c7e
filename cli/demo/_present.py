"""What the newcomer reads: the headline finding in one sentence, the version sets side by side,
the rollout, every finding, and where the files are; and `blameset demo` itself, with a progress
bar on a terminal.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._run import DEFAULT_OUT, DemoResult, NotADemoFolder, run
from ._traffic import DAYS

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main", "print_result"]


def print_result(result: DemoResult, console: Console, limit: int = 12) -> None:
    """The headline finding, the version sets side by side, the rollout, every finding, and
    where the files are."""
    from blameset.analyze import describe_finding, headline  # the page says the same sentences

    att = result.attribution
    say = functools.partial(console.print, highlight=False, soft_wrap=True)
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(result.statuses.items()))
    say(
        f"Served {result.requests:,} simulated requests ({DAYS} days of traffic: {outcomes}) in "
        f"{result.seconds['serve']:.1f} s; {result.ingest.spans:,} spans ingested."
    )
    console.print(_version_sets(result))
    say(f"Rollout episodes ({len(att.episodes)}):")
    for e in att.episodes:
        changed = "; ".join(f"{k} {v[0]} -> {v[1]}" for k, v in e.changes.items())
        say(f"  {e.at:%Y-%m-%d %H:%M} UTC {e.kind}: {changed}")
    first = headline(att)
    if first is not None:
        say(f"Headline: {describe_finding(first)}", style="bold")
    say(f"Findings ({len(att.findings)}; mix-adjusted effect [95% CI]):")
    for finding in att.findings[:limit]:
        say(f"  - {describe_finding(finding)}")
    if len(att.findings) > limit:
        say(f"  ... and {len(att.findings) - limit} more (blameset attribute shows them all)")
    if not att.findings:
        say("  none")
    say("Files:")
    for label, path in result.files.items():
        say(f"  {label:<18} {path}")
    dataset = result.dataset
    say(
        "Next: open the HTML report in a browser, or try\n"
        f"  blameset report {dataset} --by prompt,route\n"
        f"  blameset attribute {dataset}"
    )


def _version_sets(result: DemoResult) -> Any:
    """The report as a table: one row per version set, the busiest first."""
    from rich.table import Table

    table = Table(title="Requests by version_set")
    columns = ("prompt", "model", "id", "requests", "cost_usd.mean", "latency_ms.p95")
    for column in (*columns, "error_rate"):
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    for row in result.report.frame.sort("requests", descending=True).iter_rows(named=True):
        versions = dict(
            part.partition("=")[::2] for part in str(row.get("version_set") or "").split(";")
        )
        table.add_row(
            versions.get("prompt", "-"),
            versions.get("model", "-"),
            str(row.get("version_set_id") or "-"),
            f"{row['requests']:,}",
            f"${row['cost_usd.mean']:.5f}",
            f"{row['latency_ms.p95']:,.0f} ms",
            f"{row['error_rate']:.2%}",
        )
    return table


_STAGES = {
    "serving": "serving simulated traffic",
    "ingesting": "ingesting spans",
    "attributing": "attributing",
    "writing": "writing the HTML report",
}


class _StageBar:
    """The progress bar on stderr, on a terminal only; started by the first report of progress."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar: Progress | None = None
        self._task: Any = None
        if sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(stage, total=total)
        self._bar.update(self._task, description=_STAGES[stage], completed=done, total=total)

    def stop(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()


def main(out: Path | None, requests: int, seed: int) -> int:
    """`blameset demo`: run with a progress bar on a terminal, print the result; exit code."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a pipe or a file: no terminal width to fit, so no wrapping
        console = Console(width=120)
    bar = _StageBar()
    started = time.perf_counter()
    try:
        result = run(
            out if out is not None else DEFAULT_OUT, requests=requests, seed=seed, progress=bar
        )
    except NotADemoFolder as exc:
        Console(stderr=True).print(f"blameset demo: {exc}")
        return 2
    finally:
        bar.stop()
    print_result(result, console)
    console.print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0
