"""The heavy pass of report and attribution in a query engine, out of core: the request roll-up
(and the sufficient statistics attribution's tests read) over a dataset's Parquet files, in
DuckDB embedded (the default) or Apache Spark (``blameset[spark]``, local or a cluster).

    from blameset.analyze import engine
    table = engine.request_table("dataset/")                  # DuckDB, a memory limit, spilling
    table = engine.request_table("dataset/", engine="spark")  # the same rows, from Spark
    table = engine.request_table(con.sql("SELECT * FROM spans"))  # a DuckDB relation
    table = engine.request_table(spark.table("spans"))         # a Spark DataFrame, in Spark

The SQL is written once (``_rollup``) and rendered for either engine by a small dialect; see
docs/engine.md for the choices and for what a Spark job of one's own needs to read a dataset.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, cast

import polars as pl

from .._requests import Traffic
from . import _run
from ._run import Engine
from ._source import Source, dataset_source, engine_readable

if TYPE_CHECKING:
    from duckdb import DuckDBPyRelation
    from pyspark.sql import DataFrame as SparkFrame

Inputs: TypeAlias = "str | Path | Iterable[str | Path] | Source | DuckDBPyRelation | SparkFrame"
"""What an engine reads: dataset folders or Parquet files, or a table of spans in a DuckDB
relation or a Spark DataFrame (the span table's columns, either layout)."""

__all__ = [
    "ENGINES",
    "Engine",
    "EngineName",
    "Inputs",
    "Source",
    "dataset_source",
    "engine_readable",
    "frame_engine",
    "open_engine",
    "request_table",
    "traffic",
]

EngineName = Literal["duckdb", "spark", "polars"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark", "polars")


def frame_engine(spans: object) -> EngineName | None:
    """The engine a table of spans lives in: ``duckdb`` for a DuckDB relation, ``spark`` for a
    Spark DataFrame (classic or Connect), else None. Checked without importing either: a
    caller holding one has imported its package already."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(spans, duckdb.DuckDBPyRelation):
        return "duckdb"
    spark = sys.modules.get("pyspark.sql")
    if spark is not None and isinstance(spans, spark.DataFrame):
        return "spark"
    return None


def open_engine(
    inputs: Inputs,
    engine: EngineName = "duckdb",
    *,
    memory_limit: str | None = None,
    temp_dir: str | Path | None = None,
    spark_master: str | None = None,
) -> Engine:
    """An engine over the dataset folders or Parquet files ``inputs``, or over a table of
    spans in a DuckDB relation or a Spark DataFrame (then the table's own engine, whatever
    ``engine`` says); close it when done (it is a context manager). ``memory_limit`` ('3GB')
    and ``temp_dir`` are DuckDB's; a Spark engine takes ``spark_master`` (``local[*]`` by
    default, or ``spark://...``, or ``sc://...`` for Spark Connect) and the memory limit as its
    driver memory."""
    held = frame_engine(inputs)
    if held == "duckdb":
        from .duckdb import DuckDBEngine

        return DuckDBEngine.from_relation(inputs, memory_limit=memory_limit, temp_dir=temp_dir)
    if held == "spark":
        from .spark import SparkEngine

        return SparkEngine(None, frame=inputs)
    if isinstance(inputs, list | tuple | set | frozenset | Iterator):  # not a table's columns
        inputs = list(inputs)
        listed = all(isinstance(item, str | os.PathLike) for item in inputs)
    else:
        listed = False
    if not (isinstance(inputs, str | Path | Source) or listed):
        raise TypeError(
            "spans must be a dataset folder or Parquet file (or a list of them), a DuckDB "
            "relation, a Spark DataFrame or a polars frame, not "
            f"{type(inputs).__module__}.{type(inputs).__qualname__}"
        )
    paths = cast("str | Path | list[str | Path]", inputs)  # checked just above
    source = inputs if isinstance(inputs, Source) else dataset_source(paths)
    if engine == "duckdb":
        from .duckdb import DuckDBEngine

        return DuckDBEngine(source, memory_limit=memory_limit, temp_dir=temp_dir)
    if engine == "spark":
        from .spark import SparkEngine

        return SparkEngine(source, master=spark_master, memory_limit=memory_limit)
    raise ValueError(f"no engine {engine!r}: one of duckdb, spark (polars reads without one)")


def traffic(
    inputs: Inputs | Engine | pl.LazyFrame | pl.DataFrame,
    engine: EngineName = "duckdb",
    *,
    memory_limit: str | None = None,
    temp_dir: str | Path | None = None,
    spark_master: str | None = None,
) -> Traffic:
    """The request table of a dataset and the traces kept apart from it (by route), as
    :func:`analyze._requests.traffic` gives them, computed by ``engine`` (``polars``: in
    memory, by analyze itself). ``inputs`` may be an open engine, a DuckDB relation or a Spark
    DataFrame of spans (rolled up by its own engine), or a polars frame of them (in memory)."""
    if isinstance(inputs, Engine):
        return _run.traffic(inputs)
    from .._requests import traffic as polars_traffic

    if isinstance(inputs, pl.LazyFrame | pl.DataFrame):  # the span table itself: in memory
        return polars_traffic(inputs.lazy())
    if engine == "polars" and frame_engine(inputs) is None:
        from ..source import open_spans

        paths = inputs.files if isinstance(inputs, Source) else inputs
        return polars_traffic(open_spans(cast("str | Path | Iterable[str | Path]", paths)))
    with open_engine(
        inputs, engine, memory_limit=memory_limit, temp_dir=temp_dir, spark_master=spark_master
    ) as opened:
        return _run.traffic(opened)


def request_table(
    inputs: Inputs | Engine | pl.LazyFrame | pl.DataFrame,
    engine: EngineName = "duckdb",
    *,
    memory_limit: str | None = None,
    temp_dir: str | Path | None = None,
    spark_master: str | None = None,
) -> pl.DataFrame:
    """:func:`analyze.request_table` of a dataset, computed by ``engine`` out of core: the same
    rows and values (sums may differ in the last bits: the engines add in another order).
    ``inputs`` may be an open engine (the roll-up then runs on it)."""
    return traffic(
        inputs, engine, memory_limit=memory_limit, temp_dir=temp_dir, spark_master=spark_master
    ).requests
