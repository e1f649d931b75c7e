"""The heavy pass of report and attribution in a query engine, out of core: the request roll-up
(and the sufficient statistics attribution's tests read) over a dataset's Parquet files, in
DuckDB embedded (the default) or Apache Spark (``blameset[spark]``, local or a cluster).

    from blameset.analyze import engine
    table = engine.request_table("dataset/")                  # DuckDB, a memory limit, spilling
    table = engine.request_table("dataset/", engine="spark")  # the same rows, from Spark

The SQL is written once (``_rollup``) and rendered for either engine by a small dialect; see
docs/engine.md for the choices and for what a Spark job of one's own needs to read a dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import polars as pl

from .._requests import Traffic
from . import _run
from ._run import Engine
from ._source import Source, dataset_source, engine_readable

__all__ = [
    "ENGINES",
    "Engine",
    "EngineName",
    "Source",
    "dataset_source",
    "engine_readable",
    "open_engine",
    "request_table",
    "traffic",
]

EngineName = Literal["duckdb", "spark", "polars"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark", "polars")


def open_engine(
    inputs: str | Path | Iterable[str | Path] | Source,
    engine: EngineName = "duckdb",
    *,
    memory_limit: str | None = None,
    temp_dir: str | Path | None = None,
    spark_master: str | None = None,
) -> Engine:
    """An engine over the dataset folders or Parquet files ``inputs``; close it when done (it is
    a context manager). ``memory_limit`` ('3GB') and ``temp_dir`` are DuckDB's; a Spark engine
    takes ``spark_master`` (``local[*]`` by default, or ``spark://...``, or ``sc://...`` for
    Spark Connect) and the memory limit as its driver memory."""
    source = inputs if isinstance(inputs, Source) else dataset_source(inputs)
    if engine == "duckdb":
        from .duckdb import DuckDBEngine

        return DuckDBEngine(source, memory_limit=memory_limit, temp_dir=temp_dir)
    if engine == "spark":
        from .spark import SparkEngine

        return SparkEngine(source, master=spark_master, memory_limit=memory_limit)
    raise ValueError(f"no engine {engine!r}: one of duckdb, spark (polars reads without one)")


def traffic(
    inputs: str | Path | Iterable[str | Path] | Source | Engine,
    engine: EngineName = "duckdb",
    *,
    memory_limit: str | None = None,
    temp_dir: str | Path | None = None,
    spark_master: str | None = None,
) -> Traffic:
    """The request table of a dataset and the traces kept apart from it (by route), as
    :func:`analyze._requests.traffic` gives them, computed by ``engine`` (``polars``: in
    memory, by analyze itself). ``inputs`` may be an open engine."""
    if isinstance(inputs, Engine):
        return _run.traffic(inputs)
    if engine == "polars":
        from .._requests import traffic as polars_traffic
        from ..source import open_spans

        return polars_traffic(open_spans(inputs.files if isinstance(inputs, Source) else inputs))
    with open_engine(
        inputs, engine, memory_limit=memory_limit, temp_dir=temp_dir, spark_master=spark_master
    ) as opened:
        return _run.traffic(opened)


def request_table(
    inputs: str | Path | Iterable[str | Path] | Source | Engine,
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
