"""The judge's statistics: confidence sequences that stay valid however often they are looked at.

Means and rates: the mix-adjusted effect (each stratum weighted by the baseline's share, as
attribution compares) is an estimate with a plug-in variance ``V`` that shrinks as requests
arrive. Its confidence sequence is the inverted normal-mixture sequential probability ratio test
(mSPRT; Robbins 1970, Johari et al. 2017 "Peeking at A/B tests", Howard et al. 2021 eq. 14 -- the
test Statsig and Optimizely run, an asymptotic confidence sequence in the sense of Waudby-Smith
et al. 2023):

    theta_hat +/- sqrt(2 V (V + tau^2) / tau^2 * log(sqrt((V + tau^2) / V) / alpha))

which covers the true effect at every look at once with probability 1 - alpha (asymptotically:
``V`` is estimated). ``tau`` is the mixture's scale, set to the metric's non-inferiority margin:
the sequence is tightest where its width is about the margin, where the decision is made.

Quantiles (p95): each side's quantile has the confidence sequence of Howard and Ramdas 2022
("Sequential estimation of quantiles"): the same boundary on the empirical CDF, so the p-quantile
lies between the sample's ``p - u`` and ``p + u`` quantiles, ``u`` the boundary for a
Bernoulli(p) mean; the ratio's sequence is the two sides' at alpha/2 each (a union bound). No
density estimate is needed. The candidate's requests are weighted onto the baseline's strata mix
and ``u`` is taken at the weighted sample's effective size (Kish), an approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Interval", "StratifiedMean", "WeightedSample", "half_width", "stratified_mean"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def half_width(variance: float, tau: float, alpha: float) -> float:
    """Half the width of the normal-mixture confidence sequence for an estimate of this
    ``variance``, mixture scale ``tau``, level ``1 - alpha``: infinite with no information."""
    if not variance > 0 or not math.isfinite(variance):
        return 0.0 if variance == 0 else math.inf
    t2 = tau * tau
    return math.sqrt(
        2
        * variance
        * (variance + t2)
        / t2
        * math.log(math.sqrt((variance + t2) / variance) / alpha)
    )


@dataclass(frozen=True, slots=True)
class Interval:
    """An effect (log ratio, or absolute difference) with its confidence sequence's bounds."""

    point: float
    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class StratifiedMean:
    """Both sides' mix-adjusted means (the baseline's strata weights) and their variances."""

    baseline: float
    candidate: float
    var_baseline: float
    var_candidate: float
    n_baseline: int
    n_candidate: int
    raw: tuple[float, float] | None = None
    """A rate's variances without the smoothing, which fades as the sample grows: a sample
    ``s`` times larger has variance ``raw / s + (smoothed - raw) / s^2``."""

    def effect(
        self, relative: bool, scale: tuple[float, float] = (1.0, 1.0)
    ) -> tuple[float, float]:
        """(effect, its variance): the log ratio (relative) or the difference; ``scale`` says how
        many times larger each side's sample is taken to be (variance / scale)."""
        vb, vc = self.var_baseline / scale[0], self.var_candidate / scale[1]
        if self.raw is not None:
            rb, rc = self.raw
            vb = rb / scale[0] + (self.var_baseline - rb) / scale[0] ** 2
            vc = rc / scale[1] + (self.var_candidate - rc) / scale[1] ** 2
        if relative:
            if self.baseline <= 0 or self.candidate <= 0:
                return math.nan, math.inf
            point = math.log(self.candidate / self.baseline)
            return point, vc / self.candidate**2 + vb / self.baseline**2
        return self.candidate - self.baseline, vb + vc


def stratified_mean(
    b_values: FloatArray,
    b_strata: IntArray,
    c_values: FloatArray,
    c_strata: IntArray,
    *,
    rate: bool,
    min_stratum: int = 2,
) -> StratifiedMean | None:
    """Both sides' means over the strata both have (``min_stratum`` requests each), each
    stratum weighted by its share of the baseline's requests; None when no stratum is common.
    A rate's variance is taken at ``(x + 1/2) / (n + 1)``, so a stratum with no error yet still
    has some (a zero variance would claim certainty from a handful of requests)."""
    k = int(max(b_strata.max(initial=-1), c_strata.max(initial=-1))) + 1
    if k == 0:
        return None
    nb = np.bincount(b_strata, minlength=k).astype(np.float64)
    nc = np.bincount(c_strata, minlength=k).astype(np.float64)
    common = (nb >= min_stratum) & (nc >= min_stratum)
    if not common.any():
        return None
    w = np.where(common, nb, 0.0)
    w /= w.sum()
    mb, vb = _moments(b_values, b_strata, nb, k, rate)
    mc, vc = _moments(c_values, c_strata, nc, k, rate)
    keep = np.flatnonzero(common)
    raw = None
    if rate:
        rb, rc = mb * (1 - mb), mc * (1 - mc)
        raw = (
            float((w[keep] ** 2 * rb[keep] / nb[keep]).sum()),
            float((w[keep] ** 2 * rc[keep] / nc[keep]).sum()),
        )
    return StratifiedMean(
        baseline=float((w[keep] * mb[keep]).sum()),
        candidate=float((w[keep] * mc[keep]).sum()),
        var_baseline=float((w[keep] ** 2 * vb[keep] / nb[keep]).sum()),
        var_candidate=float((w[keep] ** 2 * vc[keep] / nc[keep]).sum()),
        n_baseline=int(nb[keep].sum()),
        n_candidate=int(nc[keep].sum()),
        raw=raw,
    )


def _moments(
    values: FloatArray, strata: IntArray, n: FloatArray, k: int, rate: bool
) -> tuple[FloatArray, FloatArray]:
    """Per stratum, the mean and the variance of one request's value."""
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.bincount(strata, weights=values, minlength=k)
        mean = np.where(n > 0, total / np.maximum(n, 1), 0.0)
        if rate:
            smoothed = (total + 0.5) / (n + 1)
            return mean, smoothed * (1 - smoothed)
        squares = np.bincount(strata, weights=values * values, minlength=k)
        var = (squares - n * mean * mean) / np.maximum(n - 1, 1)
    return mean, np.maximum(var, 0.0)


@dataclass(frozen=True, slots=True)
class WeightedSample:
    """One side's values, sorted, with their weights (onto the baseline's strata mix)."""

    values: FloatArray
    cumulative: FloatArray  # cumulative weight share, ending at 1

    @classmethod
    def of(cls, values: FloatArray, weights: FloatArray) -> WeightedSample:
        order = np.argsort(values, kind="stable")
        w = weights[order]
        return cls(values[order], np.cumsum(w) / w.sum())

    @staticmethod
    def effective_size(weights: FloatArray) -> float:
        """Kish's effective sample size of weighted observations."""
        return float(weights.sum() ** 2 / (weights * weights).sum())

    def quantile(self, p: float) -> float:
        """The weighted p-quantile; below the smallest value 0, above the largest infinity."""
        if p <= 0:
            return 0.0
        if p >= 1:
            return math.inf
        i = int(np.searchsorted(self.cumulative, p, side="left"))
        return float(self.values[min(i, len(self.values) - 1)])

    def cdf(self, x: float) -> float:
        i = int(np.searchsorted(self.values, x, side="right"))
        return float(self.cumulative[i - 1]) if i else 0.0

    def bounds(self, p: float, n_eff: float, tau: float, alpha: float) -> tuple[float, float]:
        """The p-quantile's confidence sequence at this effective sample size."""
        u = half_width(p * (1 - p) / n_eff, tau, alpha)
        return self.quantile(p - u), self.quantile(p + u)
