"""External change points: a shift in one version_set's own series is proposed where it happened,
and a traffic-mix shift, taken out with the stratum means, proposes none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from blameset.analyze._compare import Settings
from blameset.analyze._external import change_points, external_tests

SETTINGS = Settings(
    alpha=0.05,
    min_effect=0.05,
    min_rate_delta=0.005,
    min_n=30,
    min_stratum=5,
    replicates=200,
    seed=0,
)
N = 4000
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def requests(latency: np.ndarray, routes: list[str]) -> pl.DataFrame:
    """One version_set's successful requests, one a minute, with the given latencies; every other
    watched metric constant (nothing to find there)."""
    n = len(latency)
    frame = pl.DataFrame(
        {
            "start": [T0 + timedelta(minutes=i) for i in range(n)],
            "route": routes,
            "version_set_id": ["a"] * n,
            "final_status": ["success"] * n,
            "latency_ms": latency,
        }
    )
    constant = ["ttft_ms", "tpot_ms", "tool_ms", "queue_ms", "input_tokens", "output_tokens"]
    return frame.with_columns(*[pl.lit(1.0).alias(c) for c in constant], cost_usd=pl.lit(0.01))


def test_a_shift_in_a_version_sets_own_series_is_found_where_it_happened() -> None:
    """Latency x1.5 from 60% of the run on: one change point near there, confirmed by its test."""
    rng = np.random.default_rng(0)
    latency = rng.lognormal(6.0, 0.3, N) * np.where(np.arange(N) >= 0.6 * N, 1.5, 1.0)
    frame = requests(latency, ["/chat"] * N)
    (point,) = change_points(frame, ["route"], SETTINGS)
    assert (point.cohort, point.metric) == ("a", "latency_ms")
    onset = int((T0 + timedelta(minutes=0.6 * N)).timestamp() * 1e9)
    assert abs(point.at_ns - onset) <= 2 * 3600 * 10**9  # within two hours of the onset
    (test,) = external_tests(frame, [point], {}, ["route"], SETTINGS, rng)
    assert test.metric == "latency_ms.mean"
    assert 1.4 < test.ratio.point < 1.6


def test_a_traffic_mix_shift_proposes_no_change_point() -> None:
    """More slow-route traffic later raises the pooled mean, not the residual from the routes'."""
    rng = np.random.default_rng(1)
    slow = rng.random(N) < np.where(np.arange(N) >= 0.5 * N, 0.8, 0.2)
    latency = rng.lognormal(6.0, 0.3, N) * np.where(slow, 5.0, 1.0)
    frame = requests(latency, ["/slow" if s else "/fast" for s in slow])
    assert change_points(frame, ["route"], SETTINGS) == []
