"""The statistics attribution rests on, as small functions over numpy arrays, each pinned by a test
on a case small enough to check by hand.

- :func:`log_mean` and :func:`lmdi`: the logarithmic-mean Divisia index (Ang 2004, LMDI-I), whose
  terms add up exactly to the change of a product.
- :func:`bh_adjust`: Benjamini-Hochberg q-values (step-up, monotone), over every test of a run.
- :func:`cmh_p_value`: the Cochran-Mantel-Haenszel test, the stratified test for a rate.
- :class:`GroupSums` + :func:`bootstrap_ratio`: a stratified bootstrap of the ratio of
  mix-adjusted means or quantiles. Each (cohort, stratum) sample is split into at most
  ``groups`` random groups and the groups get Poisson(1) weights per replicate (the Poisson
  bootstrap over random groups); with no more rows than groups every row is its own group, so small
  samples get the ordinary bootstrap, and millions of rows cost no more than thousands.
- :func:`pelt`: exact penalised change points for a shift in the mean (Killick et al. 2012).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "GroupSums",
    "Ratio",
    "bh_adjust",
    "bootstrap_ratio",
    "cmh_p_value",
    "lmdi",
    "log_mean",
    "normal_two_sided_p",
    "pelt",
]

FloatArray = npt.NDArray[np.float64]


def log_mean(a: float, b: float) -> float:
    """The logarithmic mean L(a, b) = (a - b) / (ln a - ln b); L(a, a) = a; 0 if either is 0."""
    if a <= 0 or b <= 0:
        return 0.0
    if math.isclose(a, b, rel_tol=1e-12):
        return a
    return (a - b) / (math.log(a) - math.log(b))


def lmdi(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """Additive LMDI-I terms for a product of factors: ``prod(after) - prod(before)`` split into one
    term per factor, which add up exactly (to rounding).

    A factor that is zero on one side cannot be logged; then the whole change belongs to the first
    such factor (the limit of the LMDI terms as that factor tends to zero, Ang & Liu 2007)."""
    if len(before) != len(after):
        raise ValueError("before and after need the same factors")
    c0, c1 = math.prod(before), math.prod(after)
    zero = [i for i, (x0, x1) in enumerate(zip(before, after, strict=True)) if x0 <= 0 or x1 <= 0]
    if zero:
        terms = [0.0] * len(before)
        terms[zero[0]] = c1 - c0
        return terms
    weight = log_mean(c1, c0)
    return [weight * math.log(x1 / x0) for x0, x1 in zip(before, after, strict=True)]


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values): reject at level a where q <= a."""
    m = len(p_values)
    if m == 0:
        return []
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(running, 1.0)
    return adjusted


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def cmh_p_value(
    events_a: Sequence[float],
    n_a: Sequence[float],
    events_b: Sequence[float],
    n_b: Sequence[float],
) -> float:
    """Cochran-Mantel-Haenszel test (no continuity correction) of equal rates in A and B across
    strata: one 2x2 table per stratum. Strata with one side empty carry no information."""
    num = var = 0.0
    for a, na, c, nb in zip(events_a, n_a, events_b, n_b, strict=True):
        n = na + nb
        if na <= 0 or nb <= 0 or n < 2:
            continue
        events = a + c
        num += a - na * events / n
        var += na * nb * events * (n - events) / (n * n * (n - 1))
    if var <= 0:
        return 1.0
    return math.erfc(math.sqrt(num * num / var / 2.0))


@dataclass(frozen=True)
class GroupSums:
    """One cohort's sample in one stratum, reduced to random groups: per group the row count, the
    sum of the metric and (for quantiles) a histogram over shared bins."""

    counts: FloatArray
    sums: FloatArray
    hist: FloatArray | None = None

    @classmethod
    def of(
        cls,
        values: FloatArray,
        rng: np.random.Generator,
        *,
        groups: int = 64,
        bins: FloatArray | None = None,
    ) -> GroupSums:
        n = len(values)
        k = max(1, min(groups, n))
        labels = rng.integers(0, k, size=n) if n > k else np.arange(n)
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.bincount(labels, weights=values, minlength=k).astype(np.float64)
        hist = None
        if bins is not None:
            index = np.clip(np.searchsorted(bins, values, side="right") - 1, 0, len(bins) - 2)
            flat = np.bincount(labels * (len(bins) - 1) + index, minlength=k * (len(bins) - 1))
            hist = flat.reshape(k, len(bins) - 1).astype(np.float64)
        return cls(counts, sums, hist)


def _quantile_from_hist(hist: FloatArray, bins: FloatArray, q: float) -> FloatArray:
    """Quantile q of each row's histogram, linear within the bin (rows are replicates)."""
    cum = np.cumsum(hist, axis=1)
    total = cum[:, -1:]
    target = q * total
    idx = np.minimum((cum < target).sum(axis=1), hist.shape[1] - 1)
    rows = np.arange(hist.shape[0])
    below = np.where(idx > 0, cum[rows, np.maximum(idx - 1, 0)], 0.0)
    inside = hist[rows, idx]
    frac = np.where(inside > 0, (target[:, 0] - below) / np.where(inside > 0, inside, 1.0), 0.0)
    lo, hi = bins[idx], bins[idx + 1]
    return np.asarray(lo + np.clip(frac, 0.0, 1.0) * (hi - lo), dtype=np.float64)


@dataclass(frozen=True)
class Ratio:
    """Candidate over baseline, mix-adjusted: point estimate, percentile interval, the bootstrap
    standard error of its log, and per-stratum replicates (for scope)."""

    point: float
    lo: float
    hi: float
    p_value: float
    baseline: float
    candidate: float
    stratum_points: FloatArray
    stratum_lo: FloatArray
    stratum_hi: FloatArray


def _stat(
    cells: list[GroupSums],
    weights: FloatArray,
    boot: list[FloatArray] | None,
    quantile: float | None,
    bins: FloatArray | None,
    floor: float,
) -> tuple[FloatArray, FloatArray]:
    """(adjusted statistic, per-stratum statistic), one row per replicate (one row if no boot).

    A replicate that happens to draw no row of a stratum keeps that stratum's full-sample shape,
    so a small stratum never drops out of the mix (which would bias the replicate)."""
    per_stratum = []
    hist_mix: FloatArray | None = None
    for s, cell in enumerate(cells):
        w = boot[s] if boot is not None else np.ones((1, len(cell.counts)))
        n = w @ cell.counts
        empty = n <= 0
        if empty.any():
            w = np.where(empty[:, None], 1.0, w)
            n = w @ cell.counts
        if quantile is None:
            per_stratum.append(np.maximum((w @ cell.sums) / n, floor))
        else:
            if cell.hist is None or bins is None:
                raise ValueError("quantiles need histograms")
            h = w @ cell.hist
            per_stratum.append(_quantile_from_hist(h, bins, quantile))
            part = h / n[:, None] * weights[s]
            hist_mix = part if hist_mix is None else hist_mix + part
    stack = np.stack(per_stratum, axis=1)
    if hist_mix is None:
        adjusted = stack @ weights
    else:
        if bins is None:
            raise ValueError("quantiles need bins")
        adjusted = _quantile_from_hist(hist_mix, bins, quantile or 0.5)
    return np.asarray(adjusted, dtype=np.float64), stack


def bootstrap_ratio(
    baseline: list[GroupSums],
    candidate: list[GroupSums],
    weights: FloatArray,
    rng: np.random.Generator,
    *,
    replicates: int = 400,
    quantile: float | None = None,
    bins: FloatArray | None = None,
    floor: float = 0.0,
    level: float = 0.95,
) -> Ratio:
    """Ratio of the candidate's to the baseline's statistic (mean, or ``quantile`` read off the
    ``bins``), each stratum weighted by ``weights`` (the baseline's mix), with a stratified
    bootstrap interval. ``floor`` keeps a mean away from zero (a rate of 0 has no ratio).

    The p-value is two-sided for "ratio = 1", from the bootstrap standard error of the log ratio
    (normal approximation), so it keeps resolving below 1/replicates for the multiple-testing
    correction."""

    def point(cells: list[GroupSums]) -> tuple[FloatArray, FloatArray]:
        return _stat(cells, weights, None, quantile, bins, floor)

    base_point, base_strata = point(baseline)
    cand_point, cand_strata = point(candidate)
    base_boot, base_rep = _stat(
        baseline, weights, _ragged_draws(baseline, replicates, rng), quantile, bins, floor
    )
    cand_boot, cand_rep = _stat(
        candidate, weights, _ragged_draws(candidate, replicates, rng), quantile, bins, floor
    )
    est = float(cand_point[0] / base_point[0]) if base_point[0] > 0 else math.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = cand_boot / base_boot
        log_reps = np.log(reps[np.isfinite(reps) & (reps > 0)])
        strata_reps = cand_rep / base_rep
    alpha = (1 - level) / 2
    if len(log_reps) >= 2 and est > 0 and math.isfinite(est):
        lo, hi = np.quantile(np.exp(log_reps), [alpha, 1 - alpha])
        se = float(np.std(log_reps, ddof=1))
        p = normal_two_sided_p(math.log(est) / se) if se > 0 else (1.0 if est == 1 else 0.0)
    else:
        lo, hi, p = math.nan, math.nan, 1.0
    with np.errstate(invalid="ignore"):
        s_lo = np.nanquantile(strata_reps, alpha, axis=0)
        s_hi = np.nanquantile(strata_reps, 1 - alpha, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_point = cand_strata[0] / base_strata[0]
    return Ratio(
        point=est,
        lo=float(lo),
        hi=float(hi),
        p_value=p,
        baseline=float(base_point[0]),
        candidate=float(cand_point[0]),
        stratum_points=s_point,
        stratum_lo=s_lo,
        stratum_hi=s_hi,
    )


def _ragged_draws(
    cells: list[GroupSums], replicates: int, rng: np.random.Generator
) -> list[FloatArray]:
    """Poisson(1) weights per group and replicate, one matrix per stratum."""
    return [rng.poisson(1.0, size=(replicates, len(c.counts))).astype(np.float64) for c in cells]


def pelt(
    means: FloatArray,
    weights: FloatArray,
    penalty: float,
    *,
    min_size: int = 2,
) -> list[int]:
    """Change points of a piecewise-constant mean, by PELT with the weighted squared-error cost:
    segment cost = sum w_i (y_i - weighted mean)^2 (the normal log-likelihood when w_i is the
    inverse variance of y_i). Returns the indices where new segments start."""
    n = len(means)
    if n < 2 * min_size:
        return []
    cw = np.concatenate([[0.0], np.cumsum(weights)])
    cwy = np.concatenate([[0.0], np.cumsum(weights * means)])
    cwyy = np.concatenate([[0.0], np.cumsum(weights * means * means)])

    def cost(a: int, b: int) -> float:
        w = cw[b] - cw[a]
        if w <= 0:
            return 0.0
        s = cwy[b] - cwy[a]
        return float(cwyy[b] - cwyy[a] - s * s / w)

    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=np.int64)
    candidates = [0]
    for t in range(min_size, n + 1):
        scores = [(best[s] + cost(s, t) + penalty, s) for s in candidates if t - s >= min_size]
        if not scores:
            continue
        value, arg = min(scores)
        best[t], last[t] = value, arg
        candidates = [s for s in candidates if t - s < min_size or best[s] + cost(s, t) <= value]
        candidates.append(t - min_size + 1)
    points = []
    t = n
    while t > 0:
        t = int(last[t])
        if t > 0:
            points.append(t)
    return sorted(points)
