"""What the commands share: the options several take, reading the command line's times, and the
one way a command fails (a sentence on stderr, then an exit code; never a traceback).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import polars as pl

    from blameset.analyze import Attribution

Inputs = Annotated[
    list[str],
    typer.Argument(help="An ingested dataset folder, or trace files / folders / globs."),
]
Since = Annotated[
    str | None, typer.Option("--since", help="Only requests from this ISO time (UTC).")
]
Until = Annotated[
    str | None, typer.Option("--until", help="Only requests before this ISO time (UTC).")
]
SkipBadLines = Annotated[
    bool, typer.Option("--skip-bad-lines", help="Count unreadable lines and go on.")
]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON document.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Say what went wrong on stderr and exit: 2 for bad input or options, 1 for a failed check."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def when(text: str | None, option: str) -> datetime | None:
    """An ISO date or datetime from the command line; UTC unless it says otherwise."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option}: not an ISO date or datetime: {text!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def span_window(text: str | None, option: str) -> tuple[datetime, datetime] | None:
    """``FROM..TO`` (two ISO datetimes, FROM first) from the command line."""
    if text is None:
        return None
    lo, sep, hi = text.partition("..")
    if not sep or not lo or not hi:
        fail(f"{option}: expected FROM..TO (ISO datetimes), got {text!r}")
    start, end = when(lo, option), when(hi, option)
    if start is None or end is None or start >= end:
        fail(f"{option}: FROM must come before TO, got {text!r}")
    return start, end


def open_spans(inputs: list[str], command: str, skip_bad: bool) -> pl.LazyFrame:
    """The spans of a dataset folder or of trace files; unreadable input is exit 2 naming the
    file and line, and each line skipped with ``--skip-bad-lines`` is counted on stderr."""
    from blameset.analyze import BadInput, ReadReport
    from blameset.analyze import open_spans as open_inputs

    report = ReadReport()
    try:
        spans = open_inputs(inputs, skip_bad=skip_bad, report=report)
    except (BadInput, OSError) as exc:
        fail(f"blameset {command}: {exc}")
    for (file, reason), n in report.skipped.items():
        typer.echo(f"blameset {command}: skipped {n} line(s) of {file}: {reason}", err=True)
    return spans


def write_html(
    path: Path, spans: pl.LazyFrame, attribution: Attribution, command: str, requests: Any
) -> None:
    """The self-contained HTML report; a path it cannot write is exit 2."""
    from blameset.analyze.html import write_html as write_page

    try:
        write_page(path, spans, attribution=attribution, requests=requests)
    except OSError as exc:
        fail(f"blameset {command}: cannot write the HTML report: {exc}")
