"""Balance: which covariates moved, the raked weights that put a candidate on the baseline's mix,
the clock covariate of a load cycle, and a mix shift over many tenants that the balanced
comparison sees through while the naive pooled ratio does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from blameset.analyze._balance import (
    CLOCK,
    balance_columns,
    chi_square_p,
    load_levels,
    moved,
    rake,
)
from blameset.analyze._compare import Sample, Settings, compare

SETTINGS = Settings(
    alpha=0.05,
    min_effect=0.05,
    min_rate_delta=0.005,
    min_n=30,
    min_stratum=5,
    replicates=200,
    seed=0,
)
CONTEXT = {"baseline": "a", "candidate": "b", "episode": "ab", "routes": ["/r"]}


def tenants(
    shares: np.ndarray, n: int, rng: np.random.Generator, ratio: float = 1.0
) -> pl.DataFrame:
    """``n`` requests over tenants drawn with ``shares``; tenant i's outputs average 100 + 10 i
    tokens (times ``ratio``)."""
    t = rng.choice(len(shares), size=n, p=shares / shares.sum())
    return pl.DataFrame(
        {
            "route": ["/r"] * n,
            "tenant_id": [f"t{i:02d}" for i in t],
            "output_tokens": (100.0 + 10.0 * t) * ratio * rng.lognormal(0, 0.2, n),
            "final_status": ["success"] * n,
            "error_code": pl.Series([None] * n, dtype=pl.String),
        }
    )


def test_raking_puts_the_candidate_on_the_baseline_mix_and_drops_what_one_side_lacks() -> None:
    """Weighted shares match the baseline's; a level only the candidate has weighs nothing."""
    base = pl.Series(["a"] * 80 + ["b"] * 20)
    cand = pl.Series(["a"] * 20 + ["b"] * 60 + ["new"] * 20)
    w_b, w_c = rake([base], [cand])
    assert w_b.tolist() == [1.0] * 100
    assert w_c[80:].tolist() == [0.0] * 20
    share_a = w_c[:20].sum() / w_c.sum()
    assert abs(share_a - 0.8) < 1e-9


def test_a_covariate_moved_only_when_its_mix_differs() -> None:
    """The chi-square test flags a shifted tenant mix and not a resample of the same one."""
    rng = np.random.default_rng(1)
    shares = np.ones(40)
    base = tenants(shares, 3000, rng)
    same = tenants(shares, 3000, rng)
    shifted = tenants(np.linspace(3.0, 0.2, 40), 3000, rng)
    assert moved(base, same, ["tenant_id"]) == []
    assert moved(base, shifted, ["tenant_id"]) == ["tenant_id"]
    assert chi_square_p(np.array([[50.0, 50.0], [50.0, 50.0]])) > 0.5


def test_a_versioned_model_is_the_treatment_not_a_covariate() -> None:
    """``model`` is balanced only when no version component is the model."""
    frame = pl.DataFrame({"tenant_id": ["a"], "model": ["m"], "route": ["/r"]})
    assert balance_columns(frame, ["route"]) == ["tenant_id", "model"]
    assert balance_columns(frame.with_columns(pl.lit("m").alias("version.model")), ["route"]) == [
        "tenant_id"
    ]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), skew=st.floats(0.05, 0.6))
def test_a_mix_shift_over_many_tenants_is_no_effect_once_balanced(seed: int, skew: float) -> None:
    """Same outputs per tenant, a candidate weighted to the long-output tenants: the balanced
    ratio is no finding (within 5% of 1 or its interval holding 1), the naive one well above."""
    rng = np.random.default_rng(seed)
    k = 60
    base = tenants(np.linspace(1.0, skew, k), 8000, rng)
    cand = tenants(np.linspace(skew, 1.0, k), 8000, rng)
    (test,) = compare(
        Sample.of(base, ["route"]),
        Sample.of(cand, ["route"]),
        ["output_tokens.mean"],
        SETTINGS,
        rng,
        dict(CONTEXT),
        ["tenant_id"],
    )
    r = test.ratio
    assert abs(r.point - 1) < 0.05 or r.lo < 1 < r.hi
    assert test.naive > 1.1
    assert r.mde < 0.1


def test_a_real_effect_inside_every_tenant_survives_the_mix_shift() -> None:
    """-10% in every tenant, the candidate on the long-output tenants: the balanced ratio says
    0.9 where the pooled one says worse."""
    rng = np.random.default_rng(5)
    base = tenants(np.linspace(1.0, 0.1, 60), 4000, rng)
    cand = tenants(np.linspace(0.1, 1.0, 60), 4000, rng, ratio=0.9)
    (test,) = compare(
        Sample.of(base, ["route"]),
        Sample.of(cand, ["route"]),
        ["output_tokens.mean"],
        SETTINGS,
        rng,
        dict(CONTEXT),
        ["tenant_id"],
    )
    assert test.ratio.lo < 0.9 < test.ratio.hi < 1
    assert test.naive > 1


def arrivals(cycle: float, n: int = 6000) -> pl.DataFrame:
    """Request starts over two days, the rate ``cycle`` times higher at 16:00 than at 04:00."""
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0, 48.0, 48 * 60)
    rate = 1 + (cycle - 1) * (0.5 - 0.5 * np.cos(2 * np.pi * (grid - 4) / 24))
    cdf = np.cumsum(rate) / rate.sum()
    hours = np.sort(np.interp(rng.random(n), cdf, grid))
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return pl.DataFrame({"start": [t0 + timedelta(hours=float(h)) for h in hours]})


def test_a_flat_rate_has_no_clock_and_a_cycle_has_one() -> None:
    """No clock covariate without a load swing; with one, peak hours get higher load levels."""
    assert load_levels(arrivals(1.0)) is None
    frame = arrivals(5.5)
    levels = load_levels(frame)
    assert levels is not None and levels.name == CLOCK
    hour = frame["start"].dt.hour().to_numpy()
    load = levels.to_numpy() % 16
    assert load[hour == 16].mean() > load[hour == 4].mean() + 5
