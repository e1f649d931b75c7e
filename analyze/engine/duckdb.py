"""DuckDB, embedded: the default engine. Out-of-core (a memory limit, spilling what does not fit
into a named temporary folder), every core, one connection per run.

Why these settings: DuckDB's own default limit is 80% of RAM, but the engine shares the process
with the statistics and the request table, so blameset gives it :data:`MEMORY_FRACTION` of RAM
(``--memory-limit`` to change it). Insertion order is not preserved (nothing here needs it, and
keeping it costs memory on large scans); the request table is sorted by start explicitly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl

from .._dataset import HEX_ID, HEX_IDS, HEX_MARK
from ._rollup import FILES, Dialect
from ._source import Source

__all__ = ["DIALECT", "MEMORY_FRACTION", "DuckDBEngine", "default_memory_limit"]

MEMORY_FRACTION = 0.125
"""Of physical RAM, the engine's default memory limit (3 GB on a 24 GB machine)."""


def _nanos(column: str, kind: str) -> str:
    if kind == "int":
        return column
    if kind == "us":
        return f"epoch_us({column}) * 1000"
    return f"epoch_ns({column})"


_LOW = "CAST(18446744073709551615 AS UHUGEINT)"  # 2**64 - 1
_OFFSET = "CAST(9223372036854775808 AS HUGEINT)"  # 2**63: a start before 1970 packs too


def _earliest_code(code: str, start: str, where: str) -> str:
    """``MIN_BY(code, start)`` as a plain ``MIN`` of ``(start + 2**63) << 64 | code``, an
    unsigned 128-bit integer whose low 64 bits are the code: measured at 10M spans, the
    per-trace pass took 0.85x the CPU (three rounds, alternating). Shifts and masks, not
    ``* 2**64`` and ``%``: the 128-bit multiply checks overflow and was slower than
    ``MIN_BY``. On a tie in start it takes the smallest code, where ``MIN_BY`` took any."""
    high = f"CAST(CAST({start} AS HUGEINT) + {_OFFSET} AS UHUGEINT) << 64"
    packed = f"MIN(CASE WHEN {where} THEN ({high}) | CAST({code} AS UHUGEINT) END)"
    return f"CAST({packed} & {_LOW} AS UBIGINT)"


DIALECT = Dialect(
    name="duckdb",
    quote=lambda name: '"' + name.replace('"', '""') + '"',
    string=lambda text: "'" + text.replace("'", "''") + "'",
    # DuckDB's own hash() of a string collides far too often on low-entropy ids (sequential
    # trace ids: 4.6M distinct, 3.5M hashes), so the text is hashed by MD5 first
    hash=lambda *exprs: f"hash(md5(concat_ws('/', {', '.join(exprs)})))",
    code=lambda expr: f"hash({expr})",
    modulo=lambda expr, k: f"({expr} % {k})",
    matches=lambda expr, pattern: f"regexp_matches({expr}, '{_literal(pattern)}')",
    nanos=_nanos,
    struct=lambda fields: "struct_pack(" + ", ".join(f"{k} := {v}" for k, v in fields) + ")",
    earliest_code=_earliest_code,
    # 32 hex digits are 128 bits: keyed by the integer, the per-trace pass of 30M spans under
    # a 2 GB limit took 0.83x the CPU (a 16-byte key, no string compares, a smaller spill)
    trace_key=lambda text: f"CAST(('0x' || {text}) AS UHUGEINT)",
)


def default_memory_limit() -> str:
    """:data:`MEMORY_FRACTION` of the machine's RAM, as DuckDB reads a size ('3072MB')."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(512, int(total * MEMORY_FRACTION / 2**20))}MB"


def _kind(sql_type: str) -> str:
    upper = sql_type.upper()
    if upper.startswith("TIMESTAMP") and upper.endswith("_NS"):
        return "ns"
    if upper.startswith("TIMESTAMP"):
        return "us"
    if upper in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT"):
        return "int"
    return upper


class DuckDBEngine:
    """One DuckDB connection over one dataset's files, closed (and its spill folder removed)
    on exit."""

    dialect = DIALECT
    in_process = True

    def __init__(
        self,
        source: Source,
        *,
        memory_limit: str | None = None,
        temp_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        import duckdb

        self.source = source
        self._written: Path | None = None  # a relation's copy (from_relation), removed on close
        self._own_temp = temp_dir is None
        self.temp_dir = Path(
            temp_dir if temp_dir is not None else tempfile.mkdtemp(prefix="blameset-duckdb-spill-")
        )
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(":memory:")
        try:
            self.memory_limit = memory_limit or default_memory_limit()
            self.con.execute(f"SET memory_limit = '{_literal(self.memory_limit)}'")
            self.con.execute(f"SET temp_directory = '{_literal(str(self.temp_dir))}'")
            self.con.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
            self.con.execute("SET preserve_insertion_order = false")
            files = ", ".join(f"'{_literal(f)}'" for f in source.files)
            self.con.execute(
                f"CREATE TEMP VIEW {FILES} AS SELECT * FROM read_parquet([{files}], "
                "union_by_name = true, hive_partitioning = false)"
            )
        except BaseException:  # a bad limit, an unreadable file: nothing is left behind
            self.close()
            raise

    @classmethod
    def from_relation(
        cls,
        relation: Any,
        *,
        memory_limit: str | None = None,
        temp_dir: str | Path | None = None,
    ) -> DuckDBEngine:
        """An engine over a DuckDB relation of spans (the span table's columns, either layout),
        written first to a Parquet file in a folder of its own under ``temp_dir`` (removed on
        close): the roll-up reads its input several times, which a relation of another
        connection cannot give this one, and the file keeps the engine out of core."""
        if temp_dir is not None:
            Path(temp_dir).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="blameset-relation-", dir=temp_dir))
        try:
            path = folder / "spans.parquet"
            relation.write_parquet(str(path), compression="zstd")
            engine = cls(Source((str(path),)), memory_limit=memory_limit, temp_dir=temp_dir)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        engine._written = folder
        return engine

    def __enter__(self) -> DuckDBEngine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        if self._own_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self._written is not None:
            shutil.rmtree(self._written, ignore_errors=True)

    def columns(self) -> dict[str, str]:
        """Every column the files hold -> its kind (``int``/``ns``/``us``, else the SQL type)."""
        rows = self.con.execute(f"DESCRIBE {FILES}").fetchall()
        return {str(r[0]): _kind(str(r[1])) for r in rows}

    def trace_ids_hex(self) -> bool:
        """Whether every trace id of the files is 32 lowercase hex digits (so the roll-up may
        key traces by :attr:`Dialect.trace_key`): read from the files' metadata when every file
        says so for its own row count, else checked on the ids (measured: 1.6 s of CPU per 10M
        spans). A cast alone would not do: DuckDB's hex cast takes upper case and ``_`` too, and
        two ids that differ only so would become one trace. The files are the ones DuckDB reads
        (a name with a glob character in it may stand for several), and the metadata is compared
        as bytes (a key that is not UTF-8 is no error)."""
        if self.columns().get("trace_id") != "VARCHAR":
            return False
        listed = ", ".join(f"'{_literal(f)}'" for f in sorted(set(self.source.files)))
        unmarked = self.con.execute(
            f"""
SELECT COUNT(*) FROM parquet_file_metadata([{listed}]) AS f
WHERE NOT EXISTS (
  SELECT 1 FROM parquet_kv_metadata([{listed}]) AS m
  WHERE m.file_name = f.file_name AND m.key = CAST('{HEX_IDS}' AS BLOB)
    AND m.value = CAST(('{HEX_MARK}' || CAST(f.num_rows AS VARCHAR)) AS BLOB)
)"""
        ).fetchall()[0][0]
        if int(unmarked) == 0:
            return True
        found = self.con.execute(
            f"SELECT NOT EXISTS (SELECT 1 FROM {FILES} WHERE trace_id IS NOT NULL "
            f"AND NOT regexp_full_match(trace_id, '{HEX_ID}'))"
        ).fetchall()[0][0]
        return bool(found)

    def view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def table(self, name: str, sql: str) -> int:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        return int(self.con.execute(f"SELECT COUNT(*) FROM {name}").fetchall()[0][0])

    def drop(self, name: str) -> None:
        """Drop the table or view ``name``, if there is one."""
        import duckdb

        try:
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
        except duckdb.CatalogException:  # a view of that name
            self.con.execute(f"DROP VIEW IF EXISTS {name}")

    def release(self) -> None:
        """Hand the memory of dropped tables back: DuckDB keeps its buffers up to the limit,
        dropped or not, until the limit goes down (measured at 10M spans: 1.7 GB kept after the
        roll-up's tables were dropped, 0.2 GB once the limit was lowered)."""
        import duckdb

        try:
            self.con.execute("SET memory_limit = '64MB'")
        except duckdb.Error:  # could not free enough: the memory stays the engine's, no harm
            return
        self.con.execute(f"SET memory_limit = '{_literal(self.memory_limit)}'")

    def frames(self, sql: str) -> Iterator[pl.DataFrame]:
        """The result of ``sql`` in batches (so text columns can be made categorical batch by
        batch, never all held as strings at once)."""
        from arro3.core import RecordBatchReader

        for batch in RecordBatchReader.from_arrow(self.con.sql(sql)):
            yield pl.DataFrame(batch)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()


def _literal(text: str) -> str:
    return text.replace("'", "''")
