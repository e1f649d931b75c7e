"""One entry point for "the spans in these inputs": an ingested dataset folder, Parquet files, or
trace files of any format the readers know, in any mix. Reports, attribution and notebooks start
here, so ``blameset report spans.jsonl`` and ``blameset report dataset/`` answer the same."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from ._dataset import check_span_ids, is_delta, stored_files
from .ingest import load
from .readers import ReadReport, expand_inputs, read_file
from .table import spans_frame

__all__ = ["open_spans"]


def _is_dataset(path: Path) -> bool:
    """A folder written by ``blameset ingest``: a Delta table, or the earlier layout's Parquet."""
    return path.is_dir() and (is_delta(path) or next(path.rglob("*.parquet"), None) is not None)


def open_spans(
    inputs: str | Path | Iterable[str | Path],
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
) -> pl.LazyFrame:
    """The span table of ``inputs``: dataset folders (from ``blameset ingest``) are scanned
    lazily; trace files are read (``BadInput`` names the file and line of anything unreadable,
    unless ``skip_bad``, which counts it in ``report``). Parquet holding a span without a
    trace id is ``BadInput`` too (such a span belongs to no request)."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    frames: list[pl.LazyFrame] = []
    files: list[str | Path] = []
    for item in items:
        path = Path(item)
        if _is_dataset(path):
            check_span_ids([str(p) for p in stored_files(path)])
            frames.append(load(path).drop("day", strict=False))
        else:
            files.append(item)
    if files:
        report = report if report is not None else ReadReport()
        paths = expand_inputs(files)
        parquet = [p for p in paths if p.suffix == ".parquet"]
        check_span_ids([str(p) for p in parquet])
        frames += [pl.scan_parquet(p) for p in parquet]
        records = [
            r
            for p in paths
            if p.suffix != ".parquet"
            for r in read_file(p, report, skip_bad=skip_bad)
        ]
        if records:
            # the same span twice (a re-export, a spill replayed) counts once, as ingest stores it
            frames.append(
                spans_frame(records)
                .unique(subset=["trace_id", "span_id"], keep="first", maintain_order=True)
                .lazy()
            )
    if not frames:
        raise FileNotFoundError("no spans in " + ", ".join(str(i) for i in items))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
