"""Apache Spark, for when one machine is not enough (``pip install 'blameset[spark]'``):
``local[*]`` by default, a cluster's master URL (``spark://host:7077``), or a Spark Connect
remote (``sc://host:15002``). The same SQL as DuckDB (``_rollup``), over the same Parquet files.

Nothing here fetches jars: the dataset's files are read as plain Parquet (delta-rs lists them), so
neither ``spark.jars.packages`` nor delta-spark is needed. Two settings make the dataset readable:

- ``spark.sql.legacy.parquet.nanosAsLong=true``: a dataset of the earlier layout (and any Parquet
  with nanosecond timestamps) holds ``TIMESTAMP(NANOS)`` columns, which Spark refuses by default
  (``[PARQUET_TYPE_ILLEGAL]``); with it they read as int64 nanoseconds, which is what the roll-up
  wants anyway. The Delta layout stores microsecond timestamps plus the nanoseconds as int64, so
  it needs nothing, but the setting costs nothing there.
- ``spark.sql.session.timeZone=UTC``: span times are UTC.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import polars as pl

from ._rollup import FILES, Dialect
from ._source import Source

__all__ = ["DIALECT", "SPARK_CONF", "SparkEngine"]

SPARK_CONF = {
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.mergeSchema": "true",
}
"""The SQL settings every session of ours runs with (see the module docstring)."""

_LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}


def _nanos(column: str, kind: str) -> str:
    return column if kind == "int" else f"unix_micros({column}) * 1000"


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


DIALECT = Dialect(
    name="spark",
    quote=lambda name: "`" + name.replace("`", "``") + "`",
    string=_string,
    hash=lambda *exprs: f"xxhash64({', '.join(exprs)})",
    code=lambda expr: f"xxhash64({expr})",
    modulo=lambda expr, k: f"pmod({expr}, {k})",
    matches=lambda expr, pattern: f"({expr} RLIKE {_string(pattern)})",
    nanos=_nanos,
    struct=lambda fields: "named_struct(" + ", ".join(f"'{k}', {v}" for k, v in fields) + ")",
)


def _kind(type_name: str) -> str:
    if type_name in ("bigint", "int", "long"):
        return "int"
    if type_name.startswith("timestamp"):
        return "us"
    return type_name.upper()


def session(master: str | None = None, memory_limit: str | None = None) -> Any:
    """A Spark session for blameset: Spark Connect for ``sc://`` URLs, else a classic session
    on ``master`` (``local[*]`` by default; driver memory from ``memory_limit`` when the JVM is
    started here)."""
    from pyspark.sql import SparkSession

    master = master or os.environ.get("BLAMESET_SPARK_MASTER") or "local[*]"
    builder = SparkSession.builder.appName("blameset")
    if master.startswith("sc://"):
        spark = builder.remote(master).getOrCreate()
    else:
        builder = builder.master(master)
        for key, value in _LOCAL_CONF.items():
            builder = builder.config(key, value)
        if master.startswith("local"):
            cores = os.cpu_count() or 1
            builder = builder.config("spark.sql.shuffle.partitions", str(max(4, 2 * cores)))
        if memory_limit:
            builder = builder.config("spark.driver.memory", _jvm_size(memory_limit))
        spark = builder.getOrCreate()
    for key, value in SPARK_CONF.items():
        spark.conf.set(key, value)
    return spark


def _jvm_size(limit: str) -> str:
    """'3GB' / '3072MB' / '3g' as the JVM writes a size ('3g', '3072m')."""
    text = limit.strip().lower().replace(" ", "").removesuffix("b").removesuffix("i")
    return text if text[-1:] in ("k", "m", "g", "t") else f"{text}m"


class SparkEngine:
    """One Spark session over one dataset's files or a DataFrame; ``close()`` drops the views
    it made and leaves the session running (Spark's to keep, or the DataFrame's owner's)."""

    dialect = DIALECT
    in_process = False

    def __init__(
        self,
        source: Source | None,
        *,
        master: str | None = None,
        memory_limit: str | None = None,
        frame: Any = None,
    ) -> None:
        """Over ``source``'s files, or over ``frame``, a DataFrame of spans (the span table's
        columns, either layout) in its own session, whose settings are left as they are."""
        self.source = source
        if frame is None:
            if source is None:
                raise ValueError("a Spark engine needs files or a DataFrame")
            self.spark = session(master, memory_limit)
            frame = self.spark.read.option("mergeSchema", "true").parquet(*source.files)
        else:
            self.spark = frame.sparkSession
        frame.createOrReplaceTempView(FILES)
        self._frame = frame
        self._views = {FILES}

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the temporary views this engine made (they live in the session, which may be
        a user's own, given with a DataFrame); the session itself is reused by the next
        engine."""
        for name in self._views:
            self.spark.catalog.dropTempView(name)
        self._views.clear()

    def columns(self) -> dict[str, str]:
        return {f.name: _kind(f.dataType.simpleString()) for f in self._frame.schema.fields}

    def trace_ids_hex(self) -> bool:
        """Always False: Spark has no 128-bit integer to key traces by, so it keys by text."""
        return False

    def view(self, name: str, sql: str) -> None:
        self.spark.sql(sql).createOrReplaceTempView(name)
        self._views.add(name)

    def table(self, name: str, sql: str) -> int:
        """Materialized by a local checkpoint: the walk's loop reads each step again, and its
        plan would otherwise grow by a level per step."""
        frame = self.spark.sql(sql).localCheckpoint(eager=True)
        frame.createOrReplaceTempView(name)
        self._views.add(name)
        return int(frame.count())

    def drop(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)
        self._views.discard(name)

    def release(self) -> None:
        """Nothing to hand back here: Spark's memory is its JVM's."""

    def frames(self, sql: str) -> Iterator[pl.DataFrame]:
        table = self.spark.sql(sql).toArrow()
        for batch in table.to_batches():
            yield pl.DataFrame(batch)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]
