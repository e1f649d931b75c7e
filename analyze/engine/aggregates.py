"""Sufficient statistics of the request table, computed in the engine, so Python's statistics
read aggregates and never the requests themselves.

Per (cohort and strata columns, random group, time bucket) the engine returns:

- ``moments``: the request count; per mean metric its count, sum and sum of squares (latency
  metrics over successful requests only, as attribution compares them); the counts of failures,
  degraded and blocked answers (the rates).
- ``sketches``: per quantile metric (over successful requests) the counts per log bucket
  (:mod:`.sketch`, 1% relative accuracy).

A request's random group is its trace key mod ``groups`` (64, as the bootstrap's groups per
stratum), so groups are the same in every engine and every run over the same data; the time
bucket is ``floor(start / bucket)``. A comparison window made of whole buckets reads its groups'
sums by adding rows; a mean is ``sum / count``, a variance ``(sumsq - sum^2/n) / (n - 1)``, a
quantile a :class:`~.sketch.Sketch` of the summed counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from .._requests import LATENCY_METRICS, MEAN_METRICS, QUANTILE_METRICS
from ._rollup import Dialect
from ._run import Engine, collect, rollup
from .sketch import ACCURACY, Sketch, index_sql

__all__ = ["Aggregates", "Spec", "aggregates", "moments_sql", "sketches_sql"]

HOUR_NS = 3_600 * 1_000_000_000


@dataclass(frozen=True)
class Spec:
    """What to aggregate: the key columns (cohort first, then strata), groups, bucket, metrics."""

    by: tuple[str, ...] = ("version_set_id", "route")
    groups: int = 64
    bucket_ns: int = HOUR_NS
    means: tuple[str, ...] = MEAN_METRICS
    quantiles: tuple[str, ...] = tuple(QUANTILE_METRICS)
    accuracy: float = ACCURACY

    def __post_init__(self) -> None:
        if self.groups < 1 or self.bucket_ns < 1:
            raise ValueError("groups and the time bucket must be positive")


@dataclass
class Aggregates:
    """The engine's sufficient statistics (see the module docstring)."""

    spec: Spec
    moments: pl.DataFrame
    sketches: pl.DataFrame
    keys: list[str] = field(default_factory=list)

    def sketch(self, metric: str, where: pl.Expr | None = None) -> Sketch:
        """The metric's sketch over the rows ``where`` selects (all when None)."""
        rows = self.sketches.filter(pl.col("metric") == metric)
        if where is not None:
            rows = rows.filter(where)
        merged = rows.group_by("bucket_index").agg(pl.col("n").sum())
        return Sketch.of(
            merged["bucket_index"].to_numpy(), merged["n"].to_numpy(), self.spec.accuracy
        )

    def mean(self, metric: str, where: pl.Expr | None = None) -> float:
        rows = self.moments if where is None else self.moments.filter(where)
        n = float(rows[f"{metric}.n"].sum())
        return float(rows[f"{metric}.sum"].sum()) / n if n else float("nan")


def _keys(d: Dialect, spec: Spec) -> list[str]:
    q = d.quote
    return [
        *(f"CAST({q(c)} AS STRING) AS {q(c)}" for c in spec.by),
        f"{d.modulo('request_key', spec.groups)} AS grp",
        f"CAST(FLOOR(start / {spec.bucket_ns}) AS BIGINT) AS time_bucket",
    ]


def _group_by(d: Dialect, spec: Spec) -> str:
    return ", ".join([*(d.quote(c) for c in spec.by), "grp", "time_bucket"])


def _filtered(metric: str) -> str:
    """The rows a metric counts: not null, and successful for latency metrics."""
    ok = " AND final_status = 'success'" if metric in LATENCY_METRICS else ""
    return f"{metric} IS NOT NULL{ok}"


def moments_sql(d: Dialect, requests: str, spec: Spec) -> str:
    """Counts, sums and sums of squares per key, group and time bucket."""
    cols = ["COUNT(*) AS n"]
    for m in spec.means:
        x = f"CAST({m} AS DOUBLE)"
        where = f"FILTER (WHERE {_filtered(m)})"
        cols += [
            f"COUNT(*) {where} AS {d.quote(m + '.n')}",
            f"COALESCE(SUM({x}) {where}, CAST(0 AS DOUBLE)) AS {d.quote(m + '.sum')}",
            f"COALESCE(SUM({x} * {x}) {where}, CAST(0 AS DOUBLE)) AS {d.quote(m + '.sumsq')}",
        ]
    for status in ("failure", "degraded", "blocked"):
        cols.append(f"COUNT(*) FILTER (WHERE final_status = '{status}') AS {status}s")
    inner = f"SELECT *, {', '.join(_keys(d, spec))} FROM ({requests}) AS requests"
    return (
        f"SELECT {_group_by(d, spec)}, {', '.join(cols)}\nFROM ({inner}) AS keyed\n"
        f"GROUP BY {_group_by(d, spec)}"
    )


def sketches_sql(d: Dialect, requests: str, spec: Spec) -> str:
    """Counts per log bucket of each quantile metric, per key, group and time bucket."""
    inner = f"SELECT *, {', '.join(_keys(d, spec))} FROM ({requests}) AS requests"
    parts = [
        f"SELECT {_group_by(d, spec)}, '{m}' AS metric, "
        f"{index_sql(f'CAST({m} AS DOUBLE)', spec.accuracy)} AS bucket_index, COUNT(*) AS n\n"
        f"FROM ({inner}) AS keyed WHERE {_filtered(m)}\n"
        f"GROUP BY {_group_by(d, spec)}, {index_sql(f'CAST({m} AS DOUBLE)', spec.accuracy)}"
        for m in spec.quantiles
    ]
    return "\nUNION ALL\n".join(parts)


def aggregates(engine: Engine, spec: Spec | None = None, *, by: Sequence[str] = ()) -> Aggregates:
    """The sufficient statistics of the engine's dataset's request table (traces kept apart
    left out), one pass of the roll-up for the moments and one for the sketches."""
    spec = spec or (Spec(by=tuple(by)) if by else Spec())
    made = rollup(engine, order=False, random_key=True)
    engine.table("blameset_requests", f"SELECT * FROM ({made.sql}) AS r WHERE NOT apart")
    made.drop(engine)
    try:
        moments = collect(
            engine, moments_sql(engine.dialect, "SELECT * FROM blameset_requests", spec)
        )
        sketches = collect(
            engine, sketches_sql(engine.dialect, "SELECT * FROM blameset_requests", spec)
        )
    finally:
        engine.drop("blameset_requests")
    return Aggregates(spec, moments, sketches, list(spec.by))
