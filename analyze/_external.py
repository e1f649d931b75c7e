"""External change points (step 5 of attribution): shifts in a version_set's own metric series,
the route mix taken out, that no version change explains (provider drift, price changes),
proposed by PELT and then confirmed by a before/after comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ._balance import moved
from ._compare import HypothesisTest, Sample, Settings, compare, sample_columns
from ._requests import EXTERNAL_METRICS, LATENCY_METRICS, bounds, from_ns, in_window
from .stats import pelt

__all__ = ["ChangePoint", "change_points", "external_tests"]


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """A candidate shift of ``metric`` in ``cohort``'s series at ``at_ns``, with the segments
    (ns, ``[from, to)``) on either side of it."""

    cohort: str
    metric: str
    at_ns: int
    before: tuple[int, int]
    after: tuple[int, int]


def change_points(
    frame: pl.DataFrame,
    strata: list[str],
    settings: Settings,
    *,
    covariates: Sequence[str] = (),
    buckets: int = 120,
) -> list[ChangePoint]:
    """Candidate shifts in each cohort's own series of each watched metric, the stratum means
    taken out and then each covariate's (tenant, the clock: additively, one pass each), so a mix
    shift or a daily cycle moves no residual; proposed by PELT on time-bucket means."""
    found: list[ChangePoint] = []
    if frame.height < 2 * settings.min_n:
        return found
    t0, t1 = bounds(frame)
    width = max((t1 - t0) // buckets + 1, 1)
    # each cohort's rows are read lazily, a few columns at a time: partitioning the table by
    # cohort had copied all of it at once (1.6 GB at 30M spans, the peak of the run)
    sizes = frame.group_by("version_set_id", maintain_order=True).len()
    for cohort, n in sizes.iter_rows():
        if n < 4 * settings.min_n:
            continue
        part = frame.lazy().filter(pl.col("version_set_id") == cohort)
        for metric in EXTERNAL_METRICS:
            series = _residual_series(part, metric, (strata, covariates), t0, width, settings.min_n)
            if series is not None:
                found += _cuts(*series, str(cohort), metric, width, settings)
    return found


def _residual_series(
    part: pl.LazyFrame,
    metric: str,
    columns: tuple[list[str], Sequence[str]],
    t0: int,
    width: int,
    min_n: int,
) -> tuple[pl.DataFrame, float] | None:
    """One cohort's metric as time-bucket means of its residual from the stratum means (``r``,
    with the bucket's row count ``n`` and first start ``t``), and the residual variance; None
    when the series is too short or flat to look for shifts in."""
    rows = part.filter(pl.col("final_status") == "success") if metric in LATENCY_METRICS else part
    # means on the log scale (multiplicative effects); a rate as the failure share
    y = (
        (pl.col("final_status") == "failure").fill_null(False).cast(pl.Float64)
        if metric == "error_rate"
        else pl.col(metric).cast(pl.Float64).log()
    )
    strata, covariates = columns
    values = (
        rows.select(pl.col("start").dt.epoch("ns").alias("t"), y.alias("y"), *strata, *covariates)
        .filter(pl.col("y").is_finite())
        .collect()
    )
    if values.height < 4 * min_n:
        return None
    values = values.with_columns(
        r=pl.col("y") - pl.col("y").mean().over(strata), b=(pl.col("t") - t0) // width
    )
    for covariate in covariates:
        values = values.with_columns(r=pl.col("r") - pl.col("r").mean().over(covariate))
    sigma2 = float(np.var(values["r"].to_numpy()))
    if sigma2 <= 0:
        return None
    series = (
        values.group_by("b")
        .agg(pl.col("r").mean(), pl.len().alias("n"), pl.col("t").min().alias("t"))
        .sort("b")
        .filter(pl.col("n") >= 3)
    )
    if series.height < 6:
        return None
    return series, sigma2


def _cuts(
    series: pl.DataFrame,
    sigma2: float,
    cohort: str,
    metric: str,
    width: int,
    settings: Settings,
) -> list[ChangePoint]:
    """PELT's change points in the series whose shift (weighted mean after minus before) is at
    least half the practical size a finding needs."""
    means = series["r"].to_numpy()
    weights = series["n"].to_numpy().astype(np.float64) / sigma2
    penalty = 4.0 * math.log(series.height) + 10.0
    points = pelt(means, weights, penalty, min_size=3)
    edges = [0, *points, series.height]
    starts = series["t"].to_numpy()
    small = (
        settings.min_rate_delta * 0.5
        if metric == "error_rate"
        else math.log1p(settings.min_effect) * 0.5
    )
    found = []
    for j, cut in enumerate(points):
        seg_b = means[edges[j] : cut]
        seg_a = means[cut : edges[j + 2]]
        wb, wa = weights[edges[j] : cut], weights[cut : edges[j + 2]]
        shift = float(np.average(seg_a, weights=wa) - np.average(seg_b, weights=wb))
        if abs(shift) < small:
            continue
        lo_t = int(starts[edges[j]])
        cut_t = int(starts[cut])
        hi_t = int(starts[edges[j + 2] - 1]) + width
        found.append(ChangePoint(cohort, metric, cut_t, (lo_t, cut_t), (cut_t, hi_t)))
    return found


def external_tests(
    frame: pl.DataFrame,
    changes: list[ChangePoint],
    first_seen_on_route: dict[tuple[str, str], int],
    strata: list[str],
    settings: Settings,
    rng: np.random.Generator,
    covariates: list[str] | None = None,
) -> list[HypothesisTest]:
    """Before/after tests of each candidate shift within one cohort's own series, balancing the
    ``covariates`` that moved between the two sides (a tenant mix, the clock). Another
    version_set appearing beside it cannot move this cohort's requests, so only a shift at the
    cohort's own start on a route (where its traffic begins, an edge of the series) is passed
    over."""
    tests = []
    for cp in changes:
        cohort_routes = (
            frame.lazy()
            .filter(pl.col("version_set_id") == cp.cohort)
            .select(pl.col("route").unique())
            .collect()
        )
        routes = sorted(str(r) for r in cohort_routes["route"].to_list())
        tolerance = max((cp.after[1] - cp.before[0]) // 20, 1)
        if any(
            abs(t - cp.at_ns) <= tolerance
            for (route, vid), t in first_seen_on_route.items()
            if route in routes and vid == cp.cohort
        ):
            continue  # the cohort reaching another route: a mix edge, not a shift
        metrics = [cp.metric if cp.metric.endswith("_rate") else f"{cp.metric}.mean"]
        labels = sample_columns(frame.columns, strata, covariates or [])
        before = Sample.take(frame, in_window(cp.cohort, routes, *cp.before), strata, labels)
        after = Sample.take(frame, in_window(cp.cohort, routes, *cp.after), strata, labels)
        context = {
            "baseline": cp.cohort,
            "candidate": cp.cohort,
            "episode": "external",
            "comparison": "before_after",
            "window": [from_ns(cp.before[0]).isoformat(), from_ns(cp.after[1]).isoformat()],
            "since": from_ns(cp.at_ns).isoformat(),
            "routes": routes,
        }
        tests += compare(
            before,
            after,
            metrics,
            settings,
            rng,
            context,
            moved(before.frame, after.frame, covariates or [])
            if before.height and after.height
            else [],
        )
    return tests
