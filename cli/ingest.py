"""`blameset ingest`: trace files into the day-partitioned Parquet dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import fail

if TYPE_CHECKING:
    from blameset.analyze import IngestSummary


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
    from blameset.analyze import BadInput
    from blameset.analyze import ingest as run_ingest

    bar = _FileProgress(enabled=sys.stderr.isatty() and not as_json)
    try:
        summary = run_ingest(inputs, out, skip_bad=skip_bad_lines, on_file=bar.update)
    except OSError as exc:
        fail(f"blameset ingest: {exc}")
    except BadInput as exc:
        typer.echo(f"blameset ingest: {exc}", err=True)
        if not skip_bad_lines and exc.skippable:
            typer.echo("  (--skip-bad-lines counts such lines and goes on)", err=True)
        raise typer.Exit(2) from None
    finally:
        bar.stop()
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_summary(summary)


class _FileProgress:
    """A transient progress bar over the files, on a terminal only; started by the first file."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)

    def update(self, path: Path, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task("ingesting", total=total)
        self._bar.update(self._task, completed=done, description=f"ingesting {path.name}")

    def stop(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()


def _print_summary(summary: IngestSummary) -> None:
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
