"""What an engine reads: the Parquet files of a dataset (the Delta table's current files as
delta-rs lists them, or every file of the earlier layout, or Parquet files named on the command
line) and the columns they hold between them.

An engine never globs a Delta table's folder: a glob also finds files no commit holds (a staged
file of a running ingest, an orphan of a killed one). It reads exactly
``deltalake.DeltaTable(DIR).file_uris()`` as plain Parquet, so neither DuckDB's delta extension nor
Spark's Delta jars (which these machines could not fetch) are needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .._dataset import check_span_ids, is_delta, stored_files

__all__ = ["Source", "dataset_source"]


@dataclass(frozen=True, slots=True)
class Source:
    """The Parquet files an engine scans, all of them at once (columns unioned by name)."""

    files: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.files:
            raise FileNotFoundError("no Parquet files to read (run `blameset ingest` first)")


def _is_dataset(path: Path) -> bool:
    return path.is_dir() and (is_delta(path) or next(path.rglob("*.parquet"), None) is not None)


def engine_readable(inputs: Iterable[str | Path]) -> bool:
    """Whether an engine can read these inputs as they are: dataset folders and Parquet files.
    Trace files (JSON lines, OTLP) are read by the row reader and the fast path instead."""
    items = [Path(i) for i in inputs]
    return bool(items) and all(_is_dataset(p) or p.suffix == ".parquet" for p in items)


def dataset_source(inputs: str | Path | Iterable[str | Path]) -> Source:
    """The files of dataset folders (Delta: the current version's; earlier layout: all) and of
    Parquet files, in order; ``BadInput`` when a span in them has no trace id."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = [str(p.resolve()) for p in stored_files(path)]
            if not found:
                raise FileNotFoundError(f"{path}: no Parquet files (run `blameset ingest` first)")
            files += found
        elif path.suffix == ".parquet" and path.is_file():
            files.append(str(path.resolve()))
        else:
            raise FileNotFoundError(f"{path}: not a dataset folder or a Parquet file")
    check_span_ids(files)
    return Source(tuple(files))
