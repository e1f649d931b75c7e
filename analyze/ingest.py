"""Ingest: trace files in, a Parquet dataset out, partitioned by day (hive: ``day=YYYY-MM-DD``)
so polars, DuckDB and Spark read it as it is. Appending works; a span already in the dataset
(same trace_id and span_id) is not stored again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from analyze.fast import flat_frames
from analyze.readers import ReadReport, SpanRecord, expand_inputs, read_file
from analyze.table import requests, spans_frame

__all__ = ["IngestSummary", "ingest", "load"]

BATCH_SPANS = 50_000
"""Spans per batch: memory stays bounded by this, not by the size of the input."""


@dataclass
class IngestSummary:
    """What an ingest read and wrote (``blameset ingest --json`` prints it)."""

    files: int = 0
    spans: int = 0
    duplicates: int = 0
    requests: int = 0
    skipped_lines: int = 0
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    other_signal_lines: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    out: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _looks_flat(path: Path) -> bool:
    """Uncompressed flat JSONL (blameset's own): the fast path can try it."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    first = head.lstrip().split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"span_id"' in first and b'"start_time_unix_nano"' in first


def _write(table: pl.DataFrame, out: Path, summary: IngestSummary, written: list[Path]) -> None:
    """Append one table's new spans to the dataset, day by day; count the rest as duplicates."""
    frame = table.unique(["trace_id", "span_id"], keep="first")
    summary.duplicates += table.height - frame.height
    frame = frame.with_columns(day=pl.col("start").dt.strftime("%Y-%m-%d").fill_null("unknown"))
    days = frame.get_column("day").unique().to_list()
    existing = _existing_keys(out, days)
    if existing is not None:
        before = frame.height
        frame = frame.join(existing, on=["trace_id", "span_id"], how="anti")
        summary.duplicates += before - frame.height
    if frame.height == 0:
        return
    for (day,), part in frame.group_by(["day"]):
        folder = out / f"day={day}"
        folder.mkdir(exist_ok=True)
        path = folder / f"part-{uuid.uuid4().hex}.parquet"
        part.drop("day").write_parquet(path, compression="zstd")
        written.append(path)
    summary.spans += frame.height


def _roll_up(written: list[Path], summary: IngestSummary) -> None:
    """Requests, tokens and cost of what this ingest wrote, over all of it at once (a request's
    spans may have come in different files or chunks)."""
    if not written:
        return
    spans = pl.concat([pl.scan_parquet(p) for p in written], how="diagonal_relaxed")
    sums = (
        requests(spans)
        .select(
            pl.len(),
            pl.col("input_tokens").sum(),
            pl.col("output_tokens").sum(),
            pl.col("cost_usd").sum(),
        )
        .collect()
        .row(0)
    )
    summary.requests = int(sums[0])
    summary.input_tokens = int(sums[1] or 0)
    summary.output_tokens = int(sums[2] or 0)
    summary.cost_usd = float(sums[3] or 0.0)


def _existing_keys(out: Path, days: list[str]) -> pl.DataFrame | None:
    files = [f for day in days for f in (out / f"day={day}").glob("*.parquet")]
    if not files:
        return None
    return pl.scan_parquet(files).select("trace_id", "span_id").collect()


def ingest(
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    skip_bad: bool = False,
    on_file: Callable[[Path, int, int], None] | None = None,
) -> IngestSummary:
    """Read ``inputs`` (files, folders, globs) and append their spans to the dataset at ``out``.

    Raises ``BadInput`` on the first unreadable line or frame unless ``skip_bad``.
    ``on_file(path, done, total)`` reports progress.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs)
    report = ReadReport()
    summary = IngestSummary(out=str(out))

    def frames() -> Iterator[pl.DataFrame]:
        batch: list[SpanRecord] = []
        for done, path in enumerate(files):
            fast_ok = _looks_flat(path)
            if fast_ok:  # our own clean JSONL: read column-wise, chunk by chunk
                for table in flat_frames(path):
                    if table is None:
                        fast_ok = False  # the row reader takes over (the dataset keeps one copy)
                        break
                    report.spans += table.height
                    yield table
            if fast_ok:
                report.files += 1
            else:
                for record in read_file(path, report, skip_bad=skip_bad):
                    batch.append(record)
                    if len(batch) >= BATCH_SPANS:
                        yield spans_frame(batch)
                        batch = []
            if on_file is not None:
                on_file(path, done + 1, len(files))
        if batch:
            yield spans_frame(batch)

    written: list[Path] = []
    for table in frames():
        _write(table, out, summary, written)
    _roll_up(written, summary)
    summary.files = report.files
    summary.skipped_lines = report.skipped_lines
    for (file, reason), n in report.skipped.items():
        summary.skipped.setdefault(file, {})[reason] = n
    summary.other_signal_lines = dict(report.other_signals)
    return summary


def load(path: str | Path) -> pl.LazyFrame:
    """The span table of an ingested dataset (a folder written by :func:`ingest`)."""
    root = Path(path)
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root}: no Parquet files (run `blameset ingest` first)")
    # One scan per file, combined by name: files differ in their version.<component> columns
    # (another tool's spans have none), which a single multi-file scan would refuse.
    scans = [
        pl.scan_parquet(f).with_columns(day=pl.lit(f.parent.name.partition("=")[2])) for f in files
    ]
    return pl.concat(scans, how="diagonal_relaxed")
