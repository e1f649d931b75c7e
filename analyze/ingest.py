"""Ingest: trace files in, a Parquet dataset out, partitioned by day (hive: ``day=YYYY-MM-DD``)
so polars, DuckDB and Spark read it as it is. Appending works; a span already in the dataset
(same trace_id and span_id) is not stored again.

JSON lines (flat or OTLP, compressed or not) are read in chunks by the fast path
(``analyze.fast``: the native decoder), two chunks at a time so both cores work; a chunk the fast
path does not take is read by the row reader (``analyze.readers``), which names a bad line by its
number in the file. Everything else (protobuf, one pretty-printed document) goes the row reader's
way. Memory follows the chunk and batch sizes; what grows with the input is 16 bytes a span for
the duplicate check.

How to add

- **a column** filled from attributes: one ``Column(name, Value.<kind>, (attribute, ...))``
  entry in ``analyze.columns.COLUMNS``, where it should sit in the table. The schema, the row
  reader, the number checks, the fast path's expressions and the keys the native decoder picks
  out all derive from it (``tests/analyze/test_columns.py`` adds one that way). A column computed
  from others goes in the same list without attributes, and its rule in both
  ``table._row`` and ``fast._finish`` (or ``table.with_derived_columns``, which both use).
- **an alias** (another tool's name for a column): append it to that column's ``attributes``,
  after ours (the first non-empty one wins); a cost attribute goes in ``COST_ALIASES``, a version
  attribute in ``VERSION_ALIASES``. A test in ``tests/analyze/test_readers.py`` with the tool's
  real attribute map (``tests/fixtures/genai-attributes/``) pins it.
- **an input format**: a reader in ``analyze.readers`` that yields ``SpanRecord`` dicts, told
  apart by content in ``read_file``; ingest then reads it through the row reader. Only a format
  common and large enough to be slow that way needs a layout in the native decoder
  (``_spanjson.c``) and in ``fast.layout_of``, held to the row reader by the property tests of
  ``tests/analyze/test_native.py``. Kind, status and id rules come from ``analyze.columns``.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from . import fast
from ._dataset import (
    StagedDataset,
    from_stored,
    is_delta,
    is_disk_full,
    stored_files,
    sweep,
    upgrade_decision,
)
from .readers import (
    BadInput,
    ReadReport,
    SpanRecord,
    expand_inputs,
    json_line_chunks,
    read_file,
    read_json_lines_chunk,
)
from .table import request_totals, spans_frame

__all__ = ["IngestSummary", "ingest", "load"]

BATCH_SPANS = 50_000
"""Spans per batch of the row reader: memory stays bounded by this, not by the size of the input."""

IN_FLIGHT = 2
"""Chunks the fast path decodes at once (one per core on the machines it was measured on)."""


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
    decoders: dict[str, int] = field(default_factory=dict)
    """Chunks (or whole files) each reader decoded: "native", "rows" (the row reader,
    for what the column readers refuse, protobuf and pretty-printed documents)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    out: str = ""
    upgraded: int = 0
    """Spans of an earlier-layout dataset carried into the Delta table by this ingest."""
    version: int | None = None
    """The table version this ingest committed (None: nothing new to store)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(records: Iterable[SpanRecord]) -> Iterator[pl.DataFrame]:
    batch: list[SpanRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH_SPANS:
            yield spans_frame(batch)
            batch = []
    if batch:
        yield spans_frame(batch)


def _file_tables(
    path: Path, report: ReadReport, skip_bad: bool, reader: fast.FastReader | None
) -> Iterator[pl.DataFrame]:
    """The span tables of one file, chunk by chunk or batch by batch."""
    source = json_line_chunks(path, report, skip_bad=skip_bad)
    if source is None:  # protobuf, one pretty-printed document, an empty file
        report.decoders["rows"] += 1
        yield from _batches(read_file(path, report, skip_bad=skip_bad))
        return
    report.files += 1
    first, chunked = source
    name = str(path)
    layout = fast.layout_of(first) if reader is not None else None
    chunks = chunked(fast.OTLP_CHUNK_BYTES if layout == "otlp" else fast.CHUNK_BYTES)
    if reader is None or layout is None:
        report.decoders["rows"] += 1
        yield from _batches(
            record
            for before, data in chunks
            for record in read_json_lines_chunk(data, name, report, before, skip_bad=skip_bad)
        )
        return

    def settle(
        before: int, data: bytes, job: Future[fast.FastChunk | None]
    ) -> Iterator[pl.DataFrame]:
        chunk = job.result()
        if chunk is None:  # not clean: the row reader reads it and names any bad line
            report.decoders["rows"] += 1
            yield from _batches(
                read_json_lines_chunk(data, name, report, before, skip_bad=skip_bad)
            )
            return
        report.decoders[chunk.decoder] += 1
        report.spans += chunk.table.height
        report.other_signals.update(chunk.other_signals)
        yield chunk.table

    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="blameset-ingest") as pool:
        pending: deque[tuple[int, bytes, Future[fast.FastChunk | None]]] = deque()
        while True:
            try:
                before, data = next(chunks)
            except StopIteration:
                break
            except BadInput:  # the stream broke off; the lines before it come first
                while pending:
                    yield from settle(*pending.popleft())
                raise
            pending.append((before, data, pool.submit(reader.read, data, layout)))
            if len(pending) > IN_FLIGHT:
                yield from settle(*pending.popleft())
        while pending:
            yield from settle(*pending.popleft())


def _roll_up(written: list[Path], summary: IngestSummary) -> None:
    """Requests, tokens and cost of what this ingest wrote, over all of it at once (a request's
    spans may have come in different files or chunks): the sums of ``requests()`` on it, by
    ``request_totals``, which reads only the columns they need."""
    if not written:
        return
    spans = pl.concat([pl.scan_parquet(p) for p in written], how="diagonal_relaxed")
    totals = request_totals(from_stored(spans))
    summary.requests = totals.requests
    summary.input_tokens = totals.input_tokens
    summary.output_tokens = totals.output_tokens
    summary.cost_usd = totals.cost_usd


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
    reader = fast.FastReader() if fast.available() else None
    try:
        with upgrade_decision(out) as old, StagedDataset(out) as dataset:
            sweep(out)
            if old:
                dataset.upgrade_from(old)
            for done, path in enumerate(files):
                for table in _file_tables(path, report, skip_bad, reader):
                    dataset.write(table)
                if on_file is not None:
                    on_file(path, done + 1, len(files))
            summary.duplicates = dataset.commit()
            summary.upgraded = dataset.upgraded_rows
            summary.spans = dataset.rows - summary.duplicates - dataset.upgraded_rows
            summary.version = dataset.version
            _roll_up(dataset.new_files(), summary)
            dataset.finish_upgrade()
    except Exception as exc:
        if is_disk_full(exc) and not isinstance(exc, OSError):
            raise OSError(errno.ENOSPC, _FULL.format(out=out)) from exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, _FULL.format(out=out)) from exc
        raise
    finally:
        if reader is not None:
            reader.close()
    summary.files = report.files
    summary.skipped_lines = report.skipped_lines
    for (file, reason), n in report.skipped.items():
        summary.skipped.setdefault(file, {})[reason] = n
    summary.other_signal_lines = dict(report.other_signals)
    summary.decoders = dict(report.decoders)
    return summary


_FULL = (
    "no space left on the device of {out}: nothing of this ingest was committed, the dataset "
    "is as it was (free space and run it again)"
)


def load(path: str | Path) -> pl.LazyFrame:
    """The span table of an ingested dataset (a folder written by :func:`ingest`): the Delta
    table's current version, or every Parquet file of a dataset of the earlier layout."""
    root = Path(path)
    if is_delta(root):
        return from_stored(pl.scan_delta(str(root.resolve())))
    files = list(stored_files(root))
    if not files:
        raise FileNotFoundError(f"{root}: no Parquet files (run `blameset ingest` first)")
    # One scan per file, combined by name: files differ in their version.<component> columns
    # (another tool's spans have none), which a single multi-file scan would refuse.
    scans = [
        pl.scan_parquet(f).with_columns(day=pl.lit(f.parent.name.partition("=")[2])) for f in files
    ]
    return pl.concat(scans, how="diagonal_relaxed")
