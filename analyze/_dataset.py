"""The span dataset as a Delta Lake table: each ingest is one atomic commit, concurrent ingests
store every span exactly once, and a crash or a full disk leaves the last committed state.

Why Delta (through delta-rs, ``deltalake``)

A folder of hive-partitioned Parquet files has no notion of "the files that are in": a
half-written file, a file another ingest is still de-duplicating, and a file a killed ingest left
behind all look the same to a reader that globs ``*.parquet``. A table format keeps that list in
a log of atomic commits. Delta's log is a folder of numbered JSON files (``_delta_log/``) written
with put-if-absent, so it needs no catalog and no server: a dataset stays one folder that can be
copied, and polars (``scan_delta``), DuckDB (delta extension) and Spark read it. Iceberg through
pyiceberg needs a catalog (a SQL database beside the folder) for the same atomic swap, and plain
Parquet with renames and OS locks would be a protocol of our own for readers to learn. The data
files stay plain Parquet (zstd) in ``day=YYYY-MM-DD/`` folders, with types every engine reads:
times as microsecond UTC timestamps (``start``, ``end``; Spark refuses nanosecond Parquet
timestamps, and Delta's ``timestamp`` is microseconds) plus the exact nanoseconds as int64
(``start_time_unix_nano``, ``end_time_unix_nano``), which :func:`from_stored` turns back into the
span table's nanosecond times.

The commit protocol (optimistic concurrency, no lock held while reading or writing data)

1. Stage: the ingest writes its spans as Parquet files into the day folders, named
   ``part-<run>-<n>.parquet``. They are not in the log, so no reader sees them.
2. De-duplicate: within the staged files (the first occurrence wins) and against the files the
   table held at the version read (only the days the ingest touches; keys compared by a 64-bit
   hash first, then exactly by (trace_id, span_id)). Staged files that lose rows are rewritten.
3. Commit the staged files as one transaction of ``add`` actions at read version + 1, with
   delta-rs's own retries turned off (``max_commit_retries=0``): Delta treats two appends as
   compatible and would rebase ours over another ingest's commit, which could store the same span
   twice. Instead, when another commit won the version, the ingest reads the files that commit
   added, repeats step 2 against them only, and commits again. A new ``version.<component>``
   column is added first by its own schema commit (nullable, no data), after which the loop reads
   the table again.

A ``kill -9`` at any moment leaves either the commit or nothing: staged files of a dead ingest
are orphans that no reader sees, removed by the next ingest's :func:`sweep` (an ingest holds an
OS lock on ``_blameset/ingest-<run>.lock`` while it runs, so a live ingest's staged files are never
taken for orphans). A full disk fails a staged write or the commit: the staged files are removed
and the table is as it was. The commit itself costs one small JSON file and a read of the log
(milliseconds) plus a read of the keys of the days the ingest touches (the duplicate check).

Datasets of the earlier layout (Parquet files in ``day=`` folders, no ``_delta_log``) are read as
before; ``blameset ingest --out OLD`` upgrades one in the same commit as the new spans (its rows
first, so a span it already held stays the stored one) and then removes the old files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "LOG_DIR",
    "StagedDataset",
    "check_span_ids",
    "committed_files",
    "from_stored",
    "is_delta",
    "is_disk_full",
    "is_old_layout",
    "old_files",
    "stored_files",
    "sweep",
    "to_stored",
    "upgrade_decision",
]

LOG_DIR = "_delta_log"
LOCK_DIR = "_blameset"
PARTITION = "day"
MAX_ATTEMPTS = 200
"""Commits tried before giving up (each lost one means another ingest committed meanwhile)."""

WRITE_ROWS = 50_000
"""Spans gathered before a Parquet file is written: fewer, larger files read faster later, but
what is gathered is held in memory (~90 MB more at 100,000), which the decode's chunks need
more (see ``fast.OTLP_CHUNK_BYTES``)."""

_NULL_DAY = "__HIVE_DEFAULT_PARTITION__"
"""The folder of spans without a day (Delta's and Hive's name for a null partition value)."""
_KEY = pl.struct("trace_id", "span_id").hash(7).alias("h")

HEX_IDS = "blameset.trace_ids"
"""A file's Parquet key-value metadata key, :data:`HEX_MARK` when every trace id it holds is 32
lowercase hex digits (W3C's form, and what OTLP's 16 bytes print as): an engine then keys traces
by the 128-bit integer without checking every id first (``analyze.engine``)."""


HEX_ID = "[0-9a-f]{32}"
"""A trace id as W3C writes it (a regular expression the whole id must match): the ids a
:data:`HEX_IDS` mark vouches for, and the check an engine makes where a file has no mark."""

HEX_MARK = "hex32 rows="
""":data:`HEX_IDS`' value, followed by the file's row count: a tool that merges files and keeps
one input's footer metadata leaves a count that no longer matches, and the mark is not trusted."""


def hex_ids_metadata(stored: pl.DataFrame) -> dict[str, str] | None:
    """The key-value metadata to write with ``stored``: :data:`HEX_IDS` when it holds."""
    if "trace_id" not in stored.columns or stored.schema["trace_id"] != pl.String:
        return None
    ids = stored.get_column("trace_id")
    if ids.null_count() == ids.len():
        return None
    hexes = ids.str.contains(f"^{HEX_ID}$")
    if not bool(hexes.fill_null(True).all()):
        return None
    return {HEX_IDS: f"{HEX_MARK}{stored.height}"}


_CHECKED: dict[str, tuple[int, int]] = {}
"""Files :func:`check_span_ids` found sound, with the (size, mtime) they had: a command reads
its inputs' spans twice (the span view, then the engine), and the footers once."""


def _stamp(file: str) -> tuple[int, int] | None:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def check_span_ids(files: list[str]) -> None:
    """Refuse (``BadInput``, naming the file and the first row) Parquet files where a span has
    no trace id, or without the column, or that are no Parquet at all: such a span belongs to no
    request, and the engines' joins on the trace id dropped it without a word while the
    in-memory path made all of them one request. ``blameset ingest`` refuses such spans when it
    reads them, so this guards Parquet written elsewhere. (A span without a span id is a
    request of its own, in every path alike: the roll-up's corner cases in
    tests/analyze/test_engine.py.) Read off the files' footers (the column's null count per row
    group, a few ms a file); only a file whose footer has no count is scanned."""
    todo = [f for f in dict.fromkeys(files) if _CHECKED.get(f) != _stamp(f)]
    if not todo:
        return
    import duckdb

    from .readers import BadInput

    con = duckdb.connect()
    try:
        try:
            schemas = con.execute(
                "SELECT file_name, bool_or(name = 'trace_id') FROM parquet_schema(?) GROUP BY ALL",
                [todo],
            ).fetchall()
            stats = con.execute(
                "SELECT file_name, SUM(stats_null_count)::BIGINT, bool_or(stats_null_count IS NULL)"
                " FROM parquet_metadata(?) WHERE path_in_schema = 'trace_id' GROUP BY ALL",
                [todo],
            ).fetchall()
        except duckdb.Error:
            for file in todo:  # which file: each on its own
                try:
                    con.execute("SELECT 1 FROM parquet_schema(?) LIMIT 1", [file]).fetchall()
                except duckdb.Error as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise BadInput(file, "", f"not a readable Parquet file ({reason})") from None
            raise
        has_column = dict(schemas)
        counts = {f: (nulls, unknown) for f, nulls, unknown in stats}
        for file in todo:
            if file not in has_column:  # named otherwise by DuckDB (~, file://): on its own
                rows = con.execute(
                    "SELECT bool_or(name = 'trace_id') FROM parquet_schema(?)", [file]
                ).fetchall()
                has_column[file] = bool(rows and rows[0][0])
                found = con.execute(
                    "SELECT SUM(stats_null_count)::BIGINT, bool_or(stats_null_count IS NULL)"
                    " FROM parquet_metadata(?) WHERE path_in_schema = 'trace_id'",
                    [file],
                ).fetchall()
                counts[file] = found[0] if found else (0, False)
            if not has_column[file]:
                raise BadInput(file, "", "no trace_id column: its spans belong to no request")
            nulls, unknown = counts.get(file, (0, False))  # no row groups: no spans
            if unknown:  # no statistics written: count
                nulls = con.execute(
                    "SELECT COUNT(*) FROM read_parquet(?) WHERE trace_id IS NULL", [file]
                ).fetchall()[0][0]
            if nulls:
                first = con.execute(
                    "SELECT MIN(file_row_number) FROM read_parquet(?, file_row_number=true)"
                    " WHERE trace_id IS NULL",
                    [file],
                ).fetchall()[0][0]
                raise BadInput(
                    file,
                    f" row {first + 1}",
                    f"{nulls} span(s) without a trace_id (the first here): a span without one "
                    "belongs to no request",
                )
            stamp = _stamp(file)
            if stamp is not None:
                _CHECKED[file] = stamp
    finally:
        con.close()


_NANOS = {"start": "start_time_unix_nano", "end": "end_time_unix_nano"}


def is_delta(root: Path) -> bool:
    return (root / LOG_DIR).is_dir()


def is_old_layout(root: Path) -> bool:
    """A dataset written before the Delta table: Parquet files in day folders, no log. Files
    named by an ingest run (``part-<run>-<n>``: staged by an ingest creating the table) are no
    old spans to carry over."""
    return root.is_dir() and not is_delta(root) and bool(old_files(root))


def old_files(root: Path) -> list[Path]:
    """The Parquet files of an earlier-layout dataset at ``root``: those no ingest run named."""
    return sorted(p for p in root.rglob("*.parquet") if _run_of(p) is None)


@contextlib.contextmanager
def upgrade_decision(root: Path) -> Iterator[list[Path]]:
    """The old-layout files this ingest carries into the table (usually none), decided under an
    OS lock (``_blameset/upgrade.lock``) that stays held until the ingest ends when there are
    some. Two ingests into an old-layout folder at once: one upgrades, the other waits for that
    commit (and the old files' removal), instead of committing a table without the old spans,
    which readers would then see without them until the upgrade landed."""
    if is_delta(root):
        yield []
        return
    (root / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_DIR / "upgrade.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        old = [] if is_delta(root) else old_files(root)
        if not old:  # nothing to carry over: others need not wait for this ingest
            os.close(fd)
            fd = -1
        yield old
    finally:
        if fd >= 0:
            os.close(fd)


def to_stored(table: pl.DataFrame) -> pl.DataFrame:
    """The span table as stored: microsecond timestamps plus the exact nanoseconds, and a
    column polars could only type as null (no value in this batch) as text."""
    nanos = [pl.col(c).cast(pl.Int64).alias(n) for c, n in _NANOS.items() if c in table.columns]
    frame = table.with_columns(*nanos).with_columns(
        pl.col(c).cast(pl.Datetime("us", "UTC")) for c in _NANOS if c in table.columns
    )
    nulls = [c for c, t in frame.schema.items() if t == pl.Null]
    return frame.with_columns(pl.col(c).cast(pl.String) for c in nulls) if nulls else frame


def from_stored(spans: pl.LazyFrame) -> pl.LazyFrame:
    """The span table from the stored layout: nanosecond times back from the int64 columns."""
    names = spans.collect_schema().names()
    present = {c: n for c, n in _NANOS.items() if n in names}
    if not present:
        return spans
    return spans.with_columns(
        pl.col(n).cast(pl.Datetime("ns", "UTC")).alias(c) for c, n in present.items()
    ).drop(list(present.values()))


def _table(root: Path) -> Any:
    """The Delta table at its latest version, or None where there is none yet."""
    from deltalake import DeltaTable

    return DeltaTable(str(root)) if is_delta(root) else None


def committed_files(root: Path) -> list[Path]:
    """The data files of the table's current version (what every reader of it reads)."""
    table = _table(root)
    return [] if table is None else _files_of(table)


def _files_of(table: Any) -> list[Path]:
    return [Path(u.removeprefix("file://")) for u in table.file_uris()]


def _lock_held(lock: Path) -> bool:
    """Whether a live ingest holds this lock file (a dead one's lock is released by the OS)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _run_of(path: Path) -> str | None:
    parts = path.stem.split("-")
    return parts[1] if len(parts) == 3 and parts[0] == "part" and len(parts[1]) == 32 else None


def sweep(root: Path) -> int:
    """Remove the data files no commit references and no live ingest is staging (what a killed
    ingest, or an upgrade killed before its clean-up, left); the number removed."""
    if not is_delta(root):
        return 0
    listed = {p for p in root.glob(f"{PARTITION}=*/*.parquet")}
    candidates = listed - set(committed_files(root))
    dead = [
        p for p in candidates if (run := _run_of(p)) is None or not _lock_held(_lock(root, run))
    ]
    if not dead:
        return 0
    # read again after the lock checks: an ingest that committed and finished in between has
    # its files in this list
    still = set(committed_files(root))
    removed = 0
    for path in dead:
        if path not in still:
            path.unlink(missing_ok=True)
            removed += 1
    for lock in (root / LOCK_DIR).glob("ingest-*.lock"):  # create.lock stays: it is shared
        if not _lock_held(lock):
            lock.unlink(missing_ok=True)
    return removed


def _lock(root: Path, run: str) -> Path:
    return root / LOCK_DIR / f"ingest-{run}.lock"


def _schema(frame: pl.DataFrame) -> Any:
    from arro3.core import Table
    from deltalake import Schema

    return Schema.from_arrow(Table.from_arrow(frame.head(0)).schema)


class StagedDataset:
    """One ingest's staged files and their commit (the protocol of the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.run = uuid.uuid4().hex
        self.written: list[Path] = []
        self.days: list[str | None] = []
        self.rows = 0
        self.upgraded_files: list[Path] = []
        self.upgraded_rows = 0
        """Rows of the upgraded (old-layout) files among ``written``' first files."""
        self._upgraded_parts: set[Path] = set()
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._keys: list[pl.DataFrame] | None = []
        """Per written file: its rows' key hashes (16 bytes a span: the duplicate check's)."""
        self._schema: dict[str, pl.DataType] = {}
        self._lock_fd: int | None = None
        self.version: int | None = None

    # -- the run's lock ------------------------------------------------------------------------

    def __enter__(self) -> StagedDataset:
        folder = self.out / LOCK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        # locked before it is visible under its name, so a sweep never sees it unlocked
        tmp = folder / f".tmp-{self.run}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, _lock(self.out, self.run))
        self._lock_fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.discard()
        _lock(self.out, self.run).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        with contextlib.suppress(OSError):  # not empty: another ingest runs
            (self.out / LOCK_DIR).rmdir()

    def discard(self) -> None:
        """Remove what this ingest staged (nothing of it was committed)."""
        self._pending = []
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written = []

    # -- staging -------------------------------------------------------------------------------

    def upgrade_from(self, files: list[Path]) -> None:
        """Stage the rows of old-layout files first (so they win the duplicate check)."""
        for path in files:
            frame = pl.read_parquet(path)
            day = path.parent.name.partition("=")[2]
            self._write_part(frame, None if day in ("", "unknown") else day)
            self.upgraded_rows += frame.height
        self._upgraded_parts = set(self.written)
        self.upgraded_files = list(files)

    def write(self, table: pl.DataFrame) -> None:
        if table.height == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.height
        if self._pending_rows >= WRITE_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pl.concat(self._pending, how="diagonal_relaxed", rechunk=False)
        self._pending, self._pending_rows = [], 0
        days = table.get_column("start").dt.date()
        if days.n_unique() == 1:  # the usual case: no copy per day
            parts = {(days[0],): table}
        else:
            frame = table.with_columns(_day=days)
            parts = frame.partition_by("_day", as_dict=True, include_key=False)
        for (day,), part in parts.items():
            self._write_part(part, day.isoformat() if day is not None else None)

    def _write_part(self, part: pl.DataFrame, day: str | None) -> None:
        stored = to_stored(part) if "start_time_unix_nano" not in part.columns else part
        folder = (
            self.out / f"{PARTITION}={day if day is not None else '__HIVE_DEFAULT_PARTITION__'}"
        )
        folder.mkdir(exist_ok=True)
        path = folder / f"part-{self.run}-{len(self.written):05d}.parquet"
        self.written.append(path)  # before the write: a failed write is removed by discard()
        self.days.append(day)
        stored.write_parquet(
            path, compression="zstd", compression_level=1, metadata=hex_ids_metadata(stored)
        )
        for name, dtype in stored.schema.items():
            self._schema.setdefault(name, dtype)
        assert self._keys is not None
        self._keys.append(
            stored.select(
                _KEY,
                file=pl.lit(len(self.written) - 1, pl.UInt32),
                row=pl.int_range(pl.len(), dtype=pl.UInt32),
            )
        )
        self.rows += stored.height

    # -- de-duplication ------------------------------------------------------------------------

    def _key_table(self) -> pl.DataFrame:
        if self._keys is None:  # rewritten since: read the keys back from the files
            self._keys = [
                pl.read_parquet(p, columns=["trace_id", "span_id"]).select(
                    _KEY,
                    file=pl.lit(i, pl.UInt32),
                    row=pl.int_range(pl.len(), dtype=pl.UInt32),
                )
                for i, p in enumerate(self.written)
                if p.exists()
            ]
        return pl.concat(self._keys) if self._keys else pl.DataFrame()

    def drop_duplicates(self, older: list[Path]) -> int:
        """Remove the staged spans written twice (keeping the first) or held by ``older``
        (committed files); the number removed. Keys are compared by a 64-bit hash first,
        exactly (trace_id, span_id) for the few that share one."""
        if not self.written:
            return 0
        new = self._key_table()
        if new.height == 0:
            return 0
        hashes = new.get_column("h")
        suspects = new.filter(pl.col("h").is_duplicated()).get_column("h")
        if older:
            seen = pl.concat([pl.scan_parquet(f).select(_KEY) for f in older]).filter(
                pl.col("h").is_in(hashes.implode())
            )
            suspects = pl.concat([suspects, seen.collect().get_column("h")])
        if suspects.len() == 0:
            return 0
        suspects = suspects.unique()
        rows = new.filter(pl.col("h").is_in(suspects.implode()))
        exact = pl.concat(
            [
                pl.scan_parquet(self.written[int(i)])
                .select("trace_id", "span_id", row=pl.int_range(pl.len(), dtype=pl.UInt32))
                .join(part.lazy().select("row", "file"), on="row")
                for (i,), part in rows.partition_by("file", as_dict=True).items()
            ]
        ).collect()
        exact = exact.sort("file", "row").with_columns(
            first=pl.struct("trace_id", "span_id").is_first_distinct()
        )
        drop = exact.filter(~pl.col("first"))
        if older:
            stored = (
                pl.concat([pl.scan_parquet(f).select("trace_id", "span_id") for f in older])
                .filter(_KEY.is_in(suspects.implode()))
                .collect()
                .unique()
            )
            drop = pl.concat(
                [drop, exact.join(stored, on=["trace_id", "span_id"], how="semi")]
            ).unique(["file", "row"])
        for (i,), gone in drop.partition_by("file", as_dict=True).items():
            path = self.written[int(i)]
            kept = (
                pl.read_parquet(path)
                .with_row_index("_row")
                .filter(~pl.col("_row").is_in(gone.get_column("row").cast(pl.UInt32).implode()))
                .drop("_row")
            )
            if path in self._upgraded_parts:
                self.upgraded_rows -= gone.height
            if kept.height:
                kept.write_parquet(
                    path, compression="zstd", compression_level=1, metadata=hex_ids_metadata(kept)
                )
            else:
                path.unlink()
        if drop.height:
            self._keys = None
        return drop.height

    # -- the commit ----------------------------------------------------------------------------

    def _actions(self) -> list[Any]:
        from deltalake.transaction import AddAction

        actions = []
        for path, day in zip(self.written, self.days, strict=True):
            if not path.exists():
                continue
            st = path.stat()
            rows = pl.scan_parquet(path).select(pl.len()).collect().item()
            actions.append(
                AddAction(
                    path.relative_to(self.out).as_posix(),
                    st.st_size,
                    {PARTITION: day},
                    int(st.st_mtime * 1000),
                    True,
                    json.dumps({"numRecords": rows}),
                )
            )
        return actions

    def commit(self) -> int:
        """De-duplicate and commit the staged files as one transaction; the spans dropped as
        duplicates. Loops while other ingests win the version (see the module docstring)."""
        from deltalake import CommitProperties, Field, PostCommitHookProperties
        from deltalake.exceptions import CommitFailedError, DeltaError
        from deltalake.transaction import create_table_with_add_actions

        self.flush()
        dropped = 0
        seen: set[Path] = set()
        my_days = {p.parent for p in self.written}
        once = CommitProperties(max_commit_retries=0)
        hooks = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
        for _ in range(MAX_ATTEMPTS):
            table = _table(self.out)
            files = set(_files_of(table)) if table is not None else set()
            if files & set(self.written):  # a commit reported failed did land
                self.version = table.version()
                return dropped
            older = sorted(f for f in files - seen if f.parent in my_days)
            dropped += self.drop_duplicates(older)
            seen = files
            self.written, self.days = _existing(self.written, self.days)
            self._keys = None
            if not self.written:
                return dropped
            actions = self._actions()
            try:
                if table is None:
                    # the one step under an OS lock: two first ingests racing to create the
                    # table (delta-rs does not make its creation a put-if-absent of version 0)
                    with _creating(self.out):
                        if is_delta(self.out):
                            continue  # another ingest created it: de-duplicate against it
                        frame = pl.DataFrame(schema=self._schema).with_columns(
                            pl.lit(None, pl.String).alias(PARTITION)
                        )
                        create_table_with_add_actions(
                            str(self.out),
                            _schema(frame),
                            actions,
                            mode="error",
                            partition_by=[PARTITION],
                            commit_properties=once,
                            post_commithook_properties=hooks,
                        )
                    self.version = 0
                    return dropped
                have = {f.name for f in table.schema().fields}
                missing = {n: t for n, t in self._schema.items() if n not in have}
                if missing:
                    fields = _schema(pl.DataFrame(schema=missing)).fields
                    table.alter.add_columns(
                        [Field(f.name, f.type, nullable=True) for f in fields],
                        commit_properties=once,
                    )
                    continue  # read the table again: others may have committed before it
                table.create_write_transaction(
                    actions,
                    "append",
                    table.schema(),
                    partition_by=[PARTITION],
                    commit_properties=once,
                    post_commithook_properties=hooks,
                )
                self.version = table.version()
                return dropped
            except CommitFailedError:
                continue
            except DeltaError as exc:
                if _is_full(exc):
                    raise OSError(
                        errno.ENOSPC, f"no space left on the device of {self.out}"
                    ) from exc
                if (
                    table is None
                    or "already exists" in str(exc).lower()
                    or "conflict" in str(exc).lower()
                ):
                    continue  # another ingest created the table, or changed it, first
                raise
        raise OSError(
            errno.EAGAIN, f"{self.out}: {MAX_ATTEMPTS} commits lost to other ingests; try again"
        )

    def new_files(self) -> list[Path]:
        """The committed files that hold this ingest's new spans (not the upgraded ones)."""
        return [p for p in self.written if p not in self._upgraded_parts]

    def finish_upgrade(self) -> None:
        """After the commit: the old-layout files are in the table as new files; remove them."""
        for path in self.upgraded_files:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _creating(root: Path) -> Iterator[None]:
    """Hold the dataset's creation lock (released by the OS if the process dies)."""
    fd = os.open(root / LOCK_DIR / "create.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _existing(written: list[Path], days: list[str | None]) -> tuple[list[Path], list[str | None]]:
    pairs = [(p, d) for p, d in zip(written, days, strict=True) if p.exists()]
    return [p for p, _ in pairs], [d for _, d in pairs]


def _is_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "no space left" in text or "os error 28" in text or "enospc" in text


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error (OSError, or polars' or delta-rs' wrapping of one) is a full disk."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return _is_full(exc)


def stored_files(root: Path) -> Iterator[Path]:
    """The data files a reader of this dataset reads: the table's, or an old layout's all."""
    if is_delta(root):
        yield from committed_files(root)
    else:  # not what an ingest creating the table staged: no commit holds that yet
        yield from old_files(root)
