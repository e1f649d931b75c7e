"""Balance (part of step 3 of attribution): the covariates that moved between a baseline's and a
candidate's traffic, the load level that stands in for the clock, and the weights that put the
candidate on the baseline's mix of every covariate that moved.

**Which covariates.** Every attribute of the request table that describes the traffic rather than
the software: the tenant, the model when it is not a version component, the region, user segment
or tier when the roll-up carries them, and the load level (below). The route (and the tenant when
there are a few) are strata of the bootstrap itself; the others are balanced inside each stratum
by weights, so their cardinality costs no strata: 60 tenants add a weight per request, not 60
cells to resample.

**When.** A covariate is balanced when its distribution differs between the two samples (a
chi-square test at p < 0.001 over its levels): a config rolled out first to small tenants, a
canary that took one region, tenants that only arrived after a deploy. A covariate that did not
move is left alone: weighting for nothing only widens the interval.

**How: raking onto the baseline's mix.** Inside each stratum, each covariate's levels are those
both samples have; a level with fewer than ``min_level`` requests on either side joins a pooled
rest, and a level one side lacks altogether (a tenant that arrived after the change) is dropped
from both, with the share of the candidate's requests that remain reported as ``coverage``. The
candidate's weights are then raked (iterative proportional fitting) until its marginal share of
every covariate's levels equals the baseline's; with one covariate that is exact
post-stratification. The bootstrap resamples the weighted rows, so the interval carries the
weights' variance (a few heavy rows make a wide interval, not a confident one); the estimation
of the weights themselves is not resampled, which with two requests or more per level is small
beside it.

**The clock: like hours and like load.** A before/after comparison across a daily cycle
confuses the peak with the deploy. When the request rate itself swings (``load_levels``: the
smoothed rate per quarter hour varies by more than half between its 5th and 95th percentiles),
each request gets a clock level, its hour of day and its load level (the log of the rate around
it, in ``LOAD_LEVELS`` equal bins) together, and before/after comparisons (over windows of a day
or more, a week when the data spans two, so the same hours of earlier days are there) are
post-stratified on it: the candidate's 10:00-24:00 is compared with the baseline's 10:00-24:00 of
the day before, at like load. Jointly, not as two margins: in a weekly cycle a Sunday's 10:00
matches a Monday's hour but not its load, and only the pair says "like". The hour
because whatever follows the clock (load, the provider's own peak, who is awake) is alike at like
hours of different days; the load because a weekly cycle breaks that (a Monday's 10:00 is busier
than a Sunday's) and latency follows the cycle through load (queues, rate limits); hour x
day-of-week would need 168 levels and a week of data on each side. Where the windows hold no like
hour and load (a cutover whose before-window is all night and after-window all peak) nothing
common is left and the episode is reported ``inconclusive`` rather than compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from .stats import normal_two_sided_p

__all__ = [
    "BALANCE_COLUMNS",
    "CLOCK",
    "LOAD_LEVELS",
    "balance_columns",
    "chi_square_p",
    "load_levels",
    "moved",
    "rake",
]

CLOCK = "clock"
"""The clock covariate: hour of day (UTC) x load level, one level per pair."""
LOAD_LEVELS = 16
BALANCE_COLUMNS = ("tenant_id", "model", "region", "segment", "user_segment", "tier")
"""Request-table columns that describe the traffic, balanced when they move (those present)."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def balance_columns(frame: pl.DataFrame, strata: Sequence[str]) -> list[str]:
    """The traffic covariates of ``frame`` that are not strata already: a model that is a
    version component is the treatment, not a covariate."""
    out = []
    for column in (*BALANCE_COLUMNS, CLOCK):
        if column not in frame.columns or column in strata:
            continue
        if column == "model" and "version.model" in frame.columns:
            continue
        out.append(column)
    return out


_QUARTER_HOUR = 900 * 1_000_000_000


def load_levels(frame: pl.DataFrame, *, buckets: int = 192) -> pl.Series | None:
    """Each request's clock level (:data:`CLOCK`): its hour of day (UTC) and its load level (0 ..
    LOAD_LEVELS - 1, the log of the request rate around it in equal bins) as one code; None when
    the rate does not swing enough for a cycle to matter."""
    if frame.height < 1000:
        return None
    t = frame["start"].dt.epoch("ns").to_numpy()
    t0, t1 = int(t.min()), int(t.max())
    if t1 <= t0:
        return None
    width = max(min((t1 - t0) // buckets + 1, _QUARTER_HOUR), 1)
    bucket = (t - t0) // width
    counts = np.bincount(bucket, minlength=int(bucket.max()) + 1).astype(np.float64)
    # a moving average over enough buckets to hold ~100 requests (5 to 25 buckets), so Poisson
    # noise in a quiet stretch is no cycle
    span = int(min(max(math.ceil(100 / max(counts.mean(), 1e-9)), 5), 25)) | 1
    if len(counts) < 3 * span:
        return None
    smooth = np.convolve(counts, np.ones(span) / span, mode="same")
    half = span // 2
    smooth[:half], smooth[-half:] = smooth[half], smooth[-half - 1]  # edges average fewer
    lo, hi = np.quantile(smooth, [0.05, 0.95])
    if lo <= 0 or hi / lo < 1.5 or smooth.var() < 4 * counts.mean() / span:
        return None
    log_rate = np.log(np.maximum(smooth, lo))
    edges = np.linspace(math.log(lo), math.log(hi), LOAD_LEVELS + 1)[1:-1]
    level = np.searchsorted(edges, log_rate, side="right")
    hour = frame["start"].dt.hour().cast(pl.Int64).to_numpy()
    return pl.Series(CLOCK, hour * LOAD_LEVELS + level[bucket].astype(np.int64))


def chi_square_p(table: FloatArray) -> float:
    """p-value of independence in a 2 x L table of counts (Wilson-Hilferty's normal
    approximation to the chi-square tail; levels with no count dropped)."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    k = table.shape[1] - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return normal_two_sided_p(z) / 2 if z > 0 else 1.0


def _codes(base: pl.Series, cand: pl.Series) -> tuple[IntArray, IntArray, int]:
    """Both samples' values as codes into their shared list of levels."""
    both = pl.concat([base.cast(pl.String), cand.cast(pl.String)]).fill_null("")
    codes = both.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    _, codes = np.unique(codes, return_inverse=True)
    return codes[: len(base)], codes[len(base) :], int(codes.max(initial=-1)) + 1


def moved(
    base: pl.DataFrame, cand: pl.DataFrame, columns: Sequence[str], *, p: float = 1e-3
) -> list[str]:
    """The columns whose distribution differs between the two samples (chi-square, p < ``p``;
    rare levels pooled so the test's expected counts hold). The clock (load level, hour) always
    counts: a before/after comparison in a cycle balances on it whether or not the windows look
    alike."""
    out = []
    for column in columns:
        if column == CLOCK:
            out.append(column)
            continue
        b, c, k = _codes(base[column], cand[column])
        if k < 2:
            continue
        table = np.stack([np.bincount(b, minlength=k), np.bincount(c, minlength=k)]).astype(
            np.float64
        )
        rare = table.sum(axis=0) < 10
        if rare.any():
            table = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)])
        if chi_square_p(table) < p:
            out.append(column)
    return out


def rake(
    base: Sequence[pl.Series],
    cand: Sequence[pl.Series],
    *,
    min_level: int = 2,
    passes: int = 25,
) -> tuple[FloatArray, FloatArray]:
    """Weights for one stratum's baseline and candidate rows (one Series per covariate on each
    side): 0 for rows in a level the other side lacks, 1 for the other baseline rows, and
    candidate weights raked until each covariate's weighted shares match the baseline's."""
    n_b, n_c = len(base[0]), len(cand[0])
    keep_b, keep_c = np.ones(n_b, dtype=bool), np.ones(n_c, dtype=bool)
    levels: list[tuple[IntArray, IntArray, int]] = []
    for b_values, c_values in zip(base, cand, strict=True):
        b, c, k = _codes(b_values, c_values)
        nb, nc = np.bincount(b, minlength=k), np.bincount(c, minlength=k)
        absent = (nb == 0) | (nc == 0)
        small = ~absent & ((nb < min_level) | (nc < min_level))
        remap = np.arange(k)
        remap[small] = k  # the pooled rest
        b, c = remap[b], remap[c]
        keep_b &= ~absent[np.minimum(b, k - 1)] | (b == k)
        keep_c &= ~absent[np.minimum(c, k - 1)] | (c == k)
        levels.append((b, c, k + 1))
    w_b = keep_b.astype(np.float64)
    w_c = keep_c.astype(np.float64)
    if w_b.sum() == 0 or w_c.sum() == 0:
        return np.zeros(n_b), np.zeros(n_c)
    for b, c, k in levels:
        # a pooled rest one side lacks (after the drops above) goes from both
        gone = (np.bincount(b, weights=w_b, minlength=k) <= 0) | (
            np.bincount(c, weights=w_c, minlength=k) <= 0
        )
        w_b[gone[b]] = 0.0
        w_c[gone[c]] = 0.0
    if w_b.sum() == 0 or w_c.sum() == 0:
        return np.zeros(n_b), np.zeros(n_c)
    targets = [np.bincount(b, weights=w_b, minlength=k) / w_b.sum() for b, _, k in levels]
    for _ in range(passes if len(levels) > 1 else 1):
        for (_, c, k), target in zip(levels, targets, strict=True):
            have = np.bincount(c, weights=w_c, minlength=k)
            have = have / have.sum()
            factor = np.divide(target, have, out=np.zeros(k), where=have > 0)
            w_c = w_c * factor[c]
    total = w_c.sum()
    if total <= 0:
        return w_b, w_c
    return w_b, w_c * (np.count_nonzero(w_c) / total)
