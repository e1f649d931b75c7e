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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "GroupSums",
    "Ratio",
    "bh_adjust",
    "bootstrap_ratio",
    "bootstrap_ratios",
    "cmh_p_value",
    "group_labels",
    "lmdi",
    "log_mean",
    "normal_two_sided_p",
    "pelt",
    "poisson_draws",
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
        rng: np.random.Generator | None = None,
        *,
        groups: int = 64,
        bins: FloatArray | None = None,
        labels: npt.NDArray[np.int64] | None = None,
        k: int | None = None,
        weights: FloatArray | None = None,
    ) -> GroupSums:
        """Reduce ``values`` to groups: random ones (``rng``), or the given ``labels`` in
        ``range(k)`` (one labelling per stratum shared by every metric, so one set of bootstrap
        draws serves them all and the metrics are resampled jointly). ``weights`` (one per row)
        post-stratify the sample: a row counts ``weights[i]`` times in the counts, sums and
        histogram, so a weighted mean or quantile comes out of the same bootstrap."""
        n = len(values)
        if labels is None:
            k = max(1, min(groups, n))
            if n > k:
                if rng is None:
                    raise ValueError("random groups need an rng")
                labels = rng.integers(0, k, size=n)
            else:
                labels = np.arange(n)
        k = k or max(1, int(labels.max(initial=0)) + 1)
        if weights is None:
            counts = np.bincount(labels, minlength=k).astype(np.float64)
            sums = np.bincount(labels, weights=values, minlength=k).astype(np.float64)
        else:
            counts = np.bincount(labels, weights=weights, minlength=k).astype(np.float64)
            sums = np.bincount(labels, weights=values * weights, minlength=k).astype(np.float64)
        hist = None
        if bins is not None:
            index = np.clip(np.searchsorted(bins, values, side="right") - 1, 0, len(bins) - 2)
            flat = np.bincount(
                labels * (len(bins) - 1) + index, weights=weights, minlength=k * (len(bins) - 1)
            )
            hist = flat.reshape(k, len(bins) - 1).astype(np.float64)
        return cls(counts, sums, hist)


def group_labels(
    n: int, rng: np.random.Generator, groups: int = 64
) -> tuple[npt.NDArray[np.int64], int]:
    """Random group labels for n rows: every row its own group when n <= groups."""
    k = max(1, min(groups, n))
    labels = rng.integers(0, k, size=n) if n > k else np.arange(n, dtype=np.int64)
    return labels.astype(np.int64), k


def poisson_draws(
    sizes: Sequence[int], replicates: int, rng: np.random.Generator
) -> list[FloatArray]:
    """Poisson(1) weights per group and replicate, one matrix per stratum."""
    return [rng.poisson(1.0, size=(replicates, k)).astype(np.float64) for k in sizes]


def _quantile_from_hist(hist: FloatArray, bins: FloatArray, q: float) -> FloatArray:
    """Quantile q of each row's histogram, linear within the bin (rows are replicates)."""
    cum = np.cumsum(hist, axis=1)
    return _quantile_from_cum(cum, hist, bins, q)


def _quantile_from_cum(cum: FloatArray, hist: FloatArray, bins: FloatArray, q: float) -> FloatArray:
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
    """Candidate over baseline, mix-adjusted: point estimate, percentile interval, the p-value
    of "no difference", both sides' adjusted statistic, per-stratum ratios (for scope), and the
    bootstrap standard error of the log ratio (``se``; the minimum detectable effect is
    ``exp(2.8 * se) - 1``: 80% power at a two-sided 5% level, before multiple-testing)."""

    point: float
    lo: float
    hi: float
    p_value: float
    baseline: float
    candidate: float
    stratum_points: FloatArray
    stratum_lo: FloatArray
    stratum_hi: FloatArray
    se: float = math.nan

    @property
    def mde(self) -> float:
        """The smallest relative change (either way) this comparison detects with 80% power at
        a two-sided 5% level: ``exp(2.8 se) - 1`` (NaN when the error is unknown)."""
        return math.expm1(2.8 * self.se) if math.isfinite(self.se) else math.nan


def _weights_or_full(w: FloatArray, counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """A replicate that draws no row of a stratum keeps that stratum's full-sample shape, so a
    small stratum never drops out of the mix (which would bias the replicate)."""
    n = w @ counts
    empty = n <= 0
    if empty.any():
        w = np.where(empty[:, None], 1.0, w)
        n = w @ counts
    return w, n


def _stats(
    cells: list[GroupSums],
    weights: FloatArray,
    boot: list[FloatArray] | None,
    quantiles: Sequence[float] | None,
    bins: FloatArray | None,
    floor: float,
) -> list[tuple[FloatArray, FloatArray]]:
    """Per statistic (the mean, or each quantile): (adjusted value, per-stratum values), one row
    per replicate (one row without ``boot``)."""
    if quantiles is None:
        per_stratum = []
        for s, cell in enumerate(cells):
            w, n = _weights_or_full(
                boot[s] if boot is not None else np.ones((1, len(cell.counts))), cell.counts
            )
            per_stratum.append(np.maximum((w @ cell.sums) / n, floor))
        stack = np.stack(per_stratum, axis=1)
        return [(np.asarray(stack @ weights, dtype=np.float64), stack)]
    if bins is None:
        raise ValueError("quantiles need bins")
    strata: list[list[FloatArray]] = [[] for _ in quantiles]
    mix: FloatArray | None = None
    for s, cell in enumerate(cells):
        if cell.hist is None:
            raise ValueError("quantiles need histograms")
        w, n = _weights_or_full(
            boot[s] if boot is not None else np.ones((1, len(cell.counts))), cell.counts
        )
        h = w @ cell.hist
        cum = np.cumsum(h, axis=1)
        for i, q in enumerate(quantiles):
            strata[i].append(_quantile_from_cum(cum, h, bins, q))
        part = h * (weights[s] / n)[:, None]
        mix = part if mix is None else mix + part
    assert mix is not None
    cum = np.cumsum(mix, axis=1)
    return [
        (_quantile_from_cum(cum, mix, bins, q), np.stack(strata[i], axis=1))
        for i, q in enumerate(quantiles)
    ]


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
    bootstrap interval. ``floor`` keeps a mean away from zero (a rate of 0 has no ratio)."""
    draws = (
        poisson_draws([len(c.counts) for c in baseline], replicates, rng),
        poisson_draws([len(c.counts) for c in candidate], replicates, rng),
    )
    quantiles = None if quantile is None else [quantile]
    return bootstrap_ratios(
        baseline,
        candidate,
        weights,
        draws,
        quantiles=quantiles,
        bins=bins,
        floor=floor,
        level=level,
    )[0]


def bootstrap_ratios(
    baseline: list[GroupSums],
    candidate: list[GroupSums],
    weights: FloatArray,
    draws: tuple[list[FloatArray], list[FloatArray]],
    *,
    quantiles: Sequence[float] | None = None,
    bins: FloatArray | None = None,
    floor: float = 0.0,
    level: float = 0.95,
) -> list[Ratio]:
    """:func:`bootstrap_ratio` for the mean (``quantiles=None``) or several quantiles at once,
    with given ``draws`` (per stratum, replicates x groups; see :func:`poisson_draws`).

    The p-value is two-sided for "ratio = 1", from the bootstrap standard error of the log ratio
    (normal approximation), so it keeps resolving below 1/replicates for the multiple-testing
    correction."""
    base_points = _stats(baseline, weights, None, quantiles, bins, floor)
    cand_points = _stats(candidate, weights, None, quantiles, bins, floor)
    base_reps = _stats(baseline, weights, draws[0], quantiles, bins, floor)
    cand_reps = _stats(candidate, weights, draws[1], quantiles, bins, floor)
    alpha = (1 - level) / 2
    out = []
    for (bp, bs), (cp, cs), (br, bsr), (cr, csr) in zip(
        base_points, cand_points, base_reps, cand_reps, strict=True
    ):
        est = float(cp[0] / bp[0]) if bp[0] > 0 else math.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = cr / br
            log_reps = np.log(reps[np.isfinite(reps) & (reps > 0)])
            strata_reps = csr / bsr
            s_point = cs[0] / bs[0]
        if len(log_reps) >= 2 and est > 0 and math.isfinite(est):
            lo, hi = np.quantile(np.exp(log_reps), [alpha, 1 - alpha])
            se = float(np.std(log_reps, ddof=1))
            p = normal_two_sided_p(math.log(est) / se) if se > 0 else (1.0 if est == 1 else 0.0)
        else:
            lo, hi, p, se = math.nan, math.nan, 1.0, math.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a stratum with no finite replicate
            # per-stratum intervals at a Bonferroni level: they pick out where an effect sits
            a_s = alpha / max(strata_reps.shape[1], 1)
            s_lo = np.nanquantile(strata_reps, a_s, axis=0)
            s_hi = np.nanquantile(strata_reps, 1 - a_s, axis=0)
        out.append(
            Ratio(
                point=est,
                lo=float(lo),
                hi=float(hi),
                p_value=p,
                baseline=float(bp[0]),
                candidate=float(cp[0]),
                stratum_points=s_point,
                stratum_lo=s_lo,
                stratum_hi=s_hi,
                se=se,
            )
        )
    return out


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
    # A candidate found worse at t may still be the best split for T < t + min_size (t itself is
    # not a legal split there yet), so a pruning decided at t takes effect at t + min_size.
    pending: dict[int, set[int]] = {}
    for t in range(min_size, n + 1):
        scores = [(best[s] + cost(s, t) + penalty, s) for s in candidates if t - s >= min_size]
        if scores:
            value, arg = min(scores)
            best[t], last[t] = value, arg
            doomed = {s for s in candidates if t - s >= min_size and best[s] + cost(s, t) > value}
            if doomed:
                pending.setdefault(t + min_size, set()).update(doomed)
        drop = pending.pop(t, set())
        candidates = [s for s in candidates if s not in drop]
        candidates.append(t - min_size + 1)
    points = []
    t = n
    while t > 0:
        t = int(last[t])
        if t > 0:
            points.append(t)
    return sorted(points)
