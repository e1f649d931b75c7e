"""The attribution statistics on cases small enough to check by hand."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blameset.analyze.stats import (
    GroupSums,
    bh_adjust,
    bootstrap_ratio,
    cmh_p_value,
    lmdi,
    log_mean,
    pelt,
)

positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_log_mean_known_values() -> None:
    """The logarithmic mean of equal values is the value, L(e, 1) is e - 1, and a zero gives 0."""
    assert log_mean(2.0, 2.0) == 2.0
    assert log_mean(math.e, 1.0) == pytest.approx(math.e - 1.0)
    assert log_mean(0.0, 3.0) == 0.0


@given(st.lists(st.tuples(positive, positive), min_size=1, max_size=6))
def test_lmdi_terms_add_up_to_the_change(pairs: list[tuple[float, float]]) -> None:
    """LMDI terms of any positive factors add up to the change of their product."""
    before, after = [p[0] for p in pairs], [p[1] for p in pairs]
    terms = lmdi(before, after)
    change = math.prod(after) - math.prod(before)
    scale = max([1.0, abs(change)] + [abs(t) for t in terms])  # rounding follows the terms
    assert sum(terms) == pytest.approx(change, rel=1e-9, abs=1e-9 * scale)


def test_lmdi_single_factor_takes_the_whole_change() -> None:
    """When only one factor moves, its term is the whole change and the others are 0."""
    # volume doubles, everything else equal: the volume term is the whole change
    assert lmdi([100, 0.5, 2.0], [200, 0.5, 2.0]) == pytest.approx([100.0, 0.0, 0.0])


def test_lmdi_a_factor_from_zero_takes_the_whole_change() -> None:
    """A factor that starts at zero takes the whole change (the limit of the LMDI terms)."""
    # a stratum new in the second window: its share went 0 -> 0.25, the change is all mix
    assert lmdi([1000, 0.0, 3.0], [1000, 0.25, 3.0]) == [0.0, 750.0, 0.0]


def test_bh_matches_the_textbook_example() -> None:
    """Benjamini-Hochberg q-values match the 1995 paper's example and are monotone in p."""
    # Benjamini & Hochberg (1995), section 4: 15 p-values, q = 0.05 rejects the four smallest
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459]
    p += [0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0]
    q = bh_adjust(p)
    assert [x <= 0.05 for x in q] == [True] * 4 + [False] * 11
    assert q[0] == pytest.approx(0.0015)
    assert q[3] == pytest.approx(0.0095 * 15 / 4)
    assert q == sorted(q)  # monotone in p


def test_cmh_with_one_stratum_is_pearson_times_n_minus_1_over_n() -> None:
    """With one stratum the CMH statistic is Pearson's chi-square times (n - 1) / n."""
    a, na, c, nb = 30.0, 100.0, 15.0, 100.0
    n, events = na + nb, a + c
    pearson = n * (a * (nb - c) - c * (na - a)) ** 2 / (na * nb * events * (n - events))
    expected = math.erfc(math.sqrt(pearson * (n - 1) / n / 2))
    assert cmh_p_value([a], [na], [c], [nb]) == pytest.approx(expected)


def test_cmh_sees_through_a_mix_that_fools_a_pooled_test() -> None:
    """Equal rates within strata give p = 1 even when the pooled rates differ (mix)."""
    # equal rates inside each stratum; the candidate gets more of the failing stratum
    p = cmh_p_value([10, 90], [100, 900], [90, 10], [900, 100])
    assert p == pytest.approx(1.0)


def _cells(samples: list[np.ndarray], rng: np.random.Generator, bins=None) -> list[GroupSums]:
    return [GroupSums.of(s, rng, bins=bins) for s in samples]


def test_reweighting_removes_a_simpsons_paradox_reversal() -> None:
    """Weighting strata by the baseline's mix recovers a 10% speed-up that pooling reverses."""
    # Two routes: fast (100 ms) and slow (1000 ms). The candidate is 10% FASTER on each route, but
    # it serves mostly the slow route, so its pooled mean is higher: the naive ratio reverses.
    rng = np.random.default_rng(1)
    base = [np.full(900, 100.0), np.full(100, 1000.0)]
    cand = [np.full(100, 90.0), np.full(900, 900.0)]
    naive = np.concatenate(cand).mean() / np.concatenate(base).mean()
    assert naive > 4
    weights = np.array([0.9, 0.1])  # the baseline's mix
    ratio = bootstrap_ratio(_cells(base, rng), _cells(cand, rng), weights, rng)
    assert ratio.point == pytest.approx(0.9)
    assert ratio.lo == pytest.approx(0.9) and ratio.hi == pytest.approx(0.9)
    assert list(ratio.stratum_points) == pytest.approx([0.9, 0.9])


def test_bootstrap_interval_covers_the_true_ratio_near_the_nominal_rate() -> None:
    """The stratified bootstrap's 95% interval covers the true ratio in 88-99% of seeded runs."""
    true_ratio, covered, runs = 1.2, 0, 200
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        base = [rng.lognormal(5.0, 0.8, 400), rng.lognormal(6.0, 0.5, 200)]
        cand = [
            rng.lognormal(5.0, 0.8, 300) * true_ratio,
            rng.lognormal(6.0, 0.5, 300) * true_ratio,
        ]
        r = bootstrap_ratio(
            _cells(base, rng), _cells(cand, rng), np.array([2 / 3, 1 / 3]), rng, replicates=300
        )
        covered += r.lo <= true_ratio <= r.hi
    assert 0.88 <= covered / runs <= 0.99


def test_bootstrap_quantile_ratio() -> None:
    """A p95 scaled by 1.5 gives a quantile ratio of 1.5 inside its interval, tiny p-value."""
    rng = np.random.default_rng(3)
    base = [rng.lognormal(5.0, 0.5, 5000)]
    cand = [base[0] * 1.5]
    bins = np.geomspace(1.0, 1e5, 3001)
    r = bootstrap_ratio(
        _cells(base, rng, bins),
        _cells(cand, rng, bins),
        np.array([1.0]),
        rng,
        quantile=0.95,
        bins=bins,
    )
    assert r.point == pytest.approx(1.5, rel=0.01)
    assert r.lo < 1.5 * 1.01 and r.hi > 1.5 * 0.99
    assert r.p_value < 1e-6


def test_no_difference_gives_a_large_p_value() -> None:
    """Two samples of one distribution give an interval around 1 and p > 0.01."""
    rng = np.random.default_rng(4)
    base = [rng.lognormal(5.0, 0.5, 3000)]
    cand = [rng.lognormal(5.0, 0.5, 3000)]
    r = bootstrap_ratio(_cells(base, rng), _cells(cand, rng), np.array([1.0]), rng)
    assert r.lo < 1 < r.hi
    assert r.p_value > 0.01


def test_pelt_finds_a_step() -> None:
    """PELT puts change points exactly at the edges of a step in the mean."""
    means = np.array([1.0] * 30 + [2.0] * 20 + [1.0] * 25)
    assert pelt(means, np.ones(len(means)), penalty=1.0) == [30, 50]


def test_pelt_leaves_noise_alone() -> None:
    """PELT with a BIC-like penalty finds no change point in white noise."""
    rng = np.random.default_rng(5)
    means = rng.normal(0.0, 1.0, 200)
    assert pelt(means, np.ones(200), penalty=3 * math.log(200)) == []


def _exact_segmentation(means: np.ndarray, penalty: float, min_size: int) -> float:
    """Optimal penalised cost by dynamic programming over every split (the reference)."""
    n = len(means)

    def cost(a: int, b: int) -> float:
        seg = means[a:b]
        return float(((seg - seg.mean()) ** 2).sum())

    best = [math.inf] * (n + 1)
    best[0] = -penalty
    for t in range(min_size, n + 1):
        best[t] = min(best[s] + cost(s, t) + penalty for s in range(0, t - min_size + 1))
    return best[n]


@given(
    st.lists(st.floats(-3, 3, allow_nan=False), min_size=4, max_size=24),
    st.floats(0.1, 5.0),
    st.integers(1, 3),
)
def test_pelt_is_exact(values: list[float], penalty: float, min_size: int) -> None:
    """PELT's segmentation has the optimal penalised cost of exhaustive dynamic programming."""
    means = np.array(values)
    points = pelt(means, np.ones(len(means)), penalty, min_size=min_size)
    edges = [0, *points, len(means)]
    assert all(b - a >= min_size for a, b in pairwise(edges))
    if len(means) < 2 * min_size:
        return
    found = sum(
        float(((means[a:b] - means[a:b].mean()) ** 2).sum()) for a, b in pairwise(edges)
    ) + penalty * len(points)
    assert found == pytest.approx(_exact_segmentation(means, penalty, min_size), abs=1e-9)
