"""The engine options `report` and `attribute` share, and the one roll-up per run they feed to
the report, the attribution and the HTML page.

Default: DuckDB for dataset folders and Parquet files (out of core under a memory limit), polars
in memory for trace files (JSON lines, OTLP), which only the row reader and the fast path read.
DuckDB gives the polars path's rows (tests/analyze/test_engine.py) and, measured with
bench/scale.py (docs/engine.md), attributes 10M spans in about the polars path's time at 0.61x
its peak memory, 30M spans in 1.0x the time at 0.26x the memory. ``--engine polars`` still
reads a dataset in memory. Spark (``--engine spark``) is for data one machine cannot hold."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import fail

if TYPE_CHECKING:
    import polars as pl

    from blameset.analyze._requests import Traffic

EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Where the roll-up runs: duckdb (out of core under --memory-limit; the default "
        "for datasets and Parquet files), polars (in memory; the default for trace files), or "
        "spark (datasets; blameset[spark]).",
    ),
]
MemoryLimit = Annotated[
    str | None,
    typer.Option(
        "--memory-limit",
        help="The engine's memory limit, e.g. 3GB (default: 1/8 of RAM); DuckDB spills beyond it, "
        "Spark takes it as its driver memory.",
    ),
]
SparkMaster = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        help="Spark master URL: local[*] (default), spark://host:7077, or sc://host:15002 "
        "(Spark Connect).",
    ),
]


def roll_up(
    inputs: list[str],
    spans: pl.LazyFrame,
    engine: str | None,
    memory_limit: str | None,
    spark_master: str | None,
    command: str,
) -> Traffic:
    """The run's one roll-up: the request table and the traces kept apart; a failure of the
    engine (not installed, no Java, bad memory limit) is exit 2 with a sentence."""
    from blameset.analyze import engine as engines
    from blameset.analyze._requests import traffic

    readable = engines.engine_readable(inputs)
    chosen = engine or ("duckdb" if readable else "polars")
    if chosen not in engines.ENGINES:
        fail(f"blameset {command}: --engine must be one of duckdb, spark, polars, not {chosen!r}")
    if spark_master and chosen != "spark":
        fail(f"blameset {command}: --spark-master goes with --engine spark")
    if memory_limit and chosen == "polars":
        fail(f"blameset {command}: --memory-limit goes with --engine duckdb or spark")
    if chosen == "polars":
        return traffic(spans)
    if not readable:
        fail(
            f"blameset {command}: --engine {chosen} reads dataset folders and Parquet files; "
            "ingest trace files first (`blameset ingest --out DIR ...`) or use --engine polars"
        )
    try:
        return engines.traffic(
            inputs,
            chosen,
            memory_limit=memory_limit,
            spark_master=spark_master,
        )
    except ModuleNotFoundError as exc:
        fail(
            f"blameset {command}: --engine {chosen} needs {exc.name}: pip install 'blameset[spark]'"
        )
    except (OSError, ValueError) as exc:
        fail(f"blameset {command}: {exc}")
    except Exception as exc:  # an engine's own error (DuckDB, Spark, Java): a sentence
        fail(f"blameset {command}: the {chosen} engine failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
