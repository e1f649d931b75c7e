"""Attribution: which version_set change, and which component of it, made requests slower or
dearer; or that nothing shipped did (``external``); or that several components moved together and
cannot be told apart (``confounded``). The method is DESIGN.md's, step by step:

1. **Cohorts and episodes.** Each version_set's first and last request, per route; an episode is
   a version_set taking traffic from another on a route: a ``cutover`` (it takes over), a
   ``canary`` (a small share beside the incumbent), an ``ab`` split, or a ``rollback`` (an earlier
   version_set takes over again). The components an episode changed are the components whose values
   differ between the two.
2. **Metrics per request** from the request roll-up (:func:`request_table`).
3. **Comparison within strata** (route, and tenant when there are few), weighted by the baseline's
   mix, so a traffic-mix shift is not blamed on a version: a stratified bootstrap of the ratio of
   means and of p50/p95/p99; a Cochran-Mantel-Haenszel test for rates; Benjamini-Hochberg over
   every test of the run. Concurrent cohorts (canary, A/B) are compared over the time both ran,
   which also cancels any drift; a cutover compares before with after, inside the segment between
   detected change points. The naive (pooled, unweighted) ratio is reported beside the adjusted one.
4. **Components.** One changed component: it is named. Several: ``confounded``, unless another
   episode changed one of them alone with the same values and shows the same effect.
5. **External.** Change points (PELT) in each version_set's own metric series, with the route
   mix taken out, that no version change on those routes explains and that the before/after test
   confirms.
6. **Cost** decomposition lives in :mod:`analyze.costs` (LMDI).

A finding needs significance after correction (q <= ``alpha``) and a practical size
(``min_effect``; for rates also ``min_rate_delta`` in absolute terms).

This module runs the steps in order (:func:`attribute`) and chooses each episode's comparison
window. Each step has a private module of its own: ``_episodes`` (1), ``_requests`` (2),
``_compare`` (3), ``_components`` (4), ``_external`` (5); the result types are ``_results``'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from ._compare import HypothesisTest, Sample, Settings, compare, metric_names, strata_columns
from ._components import finding, passes
from ._episodes import cohorts as find_cohorts
from ._episodes import episodes as find_episodes
from ._episodes import timeline
from ._external import ChangePoint, change_points, external_tests
from ._requests import (
    MEAN_METRICS,
    NS,
    QUANTILE_METRICS,
    bounds,
    from_ns,
    request_table,
    utc,
    window,
)
from ._results import Attribution, Cohort, Episode, Finding
from .costs import decompose
from .stats import bh_adjust

__all__ = [
    "MEAN_METRICS",
    "QUANTILE_METRICS",
    "Attribution",
    "Cohort",
    "Episode",
    "Finding",
    "attribute",
    "request_table",
]

_Windows = tuple[tuple[datetime, datetime], tuple[datetime, datetime]]


def attribute(
    spans: pl.LazyFrame | pl.DataFrame,
    *,
    strata: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    min_rate_delta: float = 0.005,
    min_n: int = 30,
    replicates: int = 400,
    seed: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
    cost_windows: _Windows | None = None,
    requests: pl.DataFrame | None = None,
) -> Attribution:
    """Attribute regressions and improvements in ``spans`` (the span table, e.g.
    :func:`analyze.load`) to version_set changes and their components; see the module docstring.

    ``strata`` defaults to the route, plus the tenant when there are at most 12 tenants.
    ``requests`` is :func:`request_table` of ``spans`` when the caller has it already (the
    roll-up is most of the run's time on a large dataset)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    if min_effect < 0:
        raise ValueError(f"min_effect must be 0 or more, not {min_effect}")
    frame = _selected(spans, requests, since, until)
    settings = Settings(alpha, min_effect, min_rate_delta, min_n, 5, replicates, seed)
    versions = sorted(c for c in frame.columns if c.startswith("version."))
    cohorts = find_cohorts(frame, versions)
    episodes = find_episodes(frame, cohorts)
    chosen = strata_columns(frame, strata)
    tests = _tests(frame, episodes, chosen, settings, np.random.default_rng(seed))
    significant = [t for t in tests if passes(t, settings)]
    findings = [finding(t, significant, chosen, min_effect) for t in significant]
    findings.sort(key=lambda f: (f.verdict == "external", f.q_value, -abs(math.log(f.effect or 1))))
    windows = None if cost_windows is None else _utc_windows(cost_windows)
    return Attribution(
        findings=findings,
        cohorts=cohorts,
        episodes=episodes,
        timeline=timeline(frame),
        cost_decomposition=decompose(frame, windows=windows, strata=["route"], cohorts=cohorts),
        tests=[t.to_dict() for t in tests],
        settings={
            "alpha": alpha,
            "min_effect": min_effect,
            "min_rate_delta": min_rate_delta,
            "strata": chosen,
            "replicates": replicates,
            "seed": seed,
            "requests": frame.height,
        },
    )


def _selected(
    spans: pl.LazyFrame | pl.DataFrame,
    requests: pl.DataFrame | None,
    since: datetime | None,
    until: datetime | None,
) -> pl.DataFrame:
    """The request table of ``spans`` (or the one given), from ``since`` until ``until``."""
    lazy = spans.lazy() if isinstance(spans, pl.DataFrame) else spans
    frame = requests if requests is not None else request_table(lazy)
    if since is not None:
        frame = frame.filter(pl.col("start") >= utc(since))
    if until is not None:
        frame = frame.filter(pl.col("start") < utc(until))
    return frame


def _utc_windows(windows: _Windows) -> _Windows:
    (b0, b1), (a0, a1) = windows
    return (utc(b0), utc(b1)), (utc(a0), utc(a1))


def _tests(
    frame: pl.DataFrame,
    episodes: list[Episode],
    strata: list[str],
    settings: Settings,
    rng: np.random.Generator,
) -> list[HypothesisTest]:
    """Every test of the run, each episode's then the external shifts', with their q-values
    (Benjamini-Hochberg over all of them)."""
    metrics = metric_names(frame, max(10, settings.min_n // 3))
    changes = change_points(frame, strata, settings)
    first_seen_on_route = {
        (r["route"], r["version_set_id"]): int(r["first"])
        for r in frame.group_by("route", "version_set_id")
        .agg(pl.col("start").min().dt.epoch("ns").alias("first"))
        .iter_rows(named=True)
    }
    t_begin, t_last = bounds(frame)
    tests: list[HypothesisTest] = []
    for episode in episodes:
        at = int(episode.at.timestamp() * NS)
        if episode.kind != "rollback":  # a rollback's candidate was first seen long before
            at = min(first_seen_on_route.get((r, episode.candidate), at) for r in episode.routes)
        tests += _episode_tests(
            frame, episode, at, (t_begin, t_last + 1), changes, strata, metrics, settings, rng
        )
    tests += external_tests(frame, changes, first_seen_on_route, strata, settings, rng)
    q = bh_adjust([t.ratio.p_value for t in tests])
    for test, qv in zip(tests, q, strict=True):
        test.q_value = qv
    return tests


_Samples = tuple[pl.DataFrame, pl.DataFrame, tuple[int, int]]


def _episode_tests(
    frame: pl.DataFrame,
    episode: Episode,
    at: int,
    limits: tuple[int, int],
    changes: list[ChangePoint],
    strata: list[str],
    metrics: list[str],
    settings: Settings,
    rng: np.random.Generator,
) -> list[HypothesisTest]:
    """Concurrent comparison when both cohorts ran side by side long enough; else before/after
    the episode, inside the segment no detected change point crosses."""
    samples = None
    if episode.kind in ("canary", "ab"):
        samples = _concurrent(frame, episode, at, limits[1], settings.min_n)
    mode = "concurrent" if samples is not None else "before_after"
    if samples is None:
        samples = _before_after(frame, episode, at, limits, changes)
    base, cand, (lo, hi) = samples
    context = {
        "baseline": episode.baseline,
        "candidate": episode.candidate,
        "episode": episode.kind,
        "comparison": mode,
        "window": [from_ns(lo).isoformat(), from_ns(hi).isoformat()],
        "routes": episode.routes,
    }
    tests = compare(
        Sample.of(base, strata), Sample.of(cand, strata), metrics, settings, rng, context
    )
    for t in tests:
        t.episode = episode
    return tests


def _concurrent(
    frame: pl.DataFrame, episode: Episode, at: int, end: int, min_n: int
) -> _Samples | None:
    """Both cohorts from ``at`` on, over the time both served (a canary that ended must not
    meet later drift alone); None when either has fewer than ``min_n`` requests there."""
    base_after = window(frame, episode.baseline, episode.routes, at, end)
    cand_after = window(frame, episode.candidate, episode.routes, at, end)
    both_end = min(bounds(base_after)[1], bounds(cand_after)[1]) + 1
    base = base_after.filter(pl.col("start").dt.epoch("ns") < both_end)
    cand = cand_after.filter(pl.col("start").dt.epoch("ns") < both_end)
    if min(base.height, cand.height) < min_n:
        return None
    return base, cand, (at, both_end)


def _before_after(
    frame: pl.DataFrame,
    episode: Episode,
    at: int,
    limits: tuple[int, int],
    changes: list[ChangePoint],
) -> _Samples:
    """The baseline before ``at`` and the candidate after it: at most a quarter of the data on
    each side, and never across a change point detected in either cohort's own series (drift
    the episode did not cause)."""
    span = max((limits[1] - limits[0]) // 4, 1)
    lo, hi = max(limits[0], at - span), min(limits[1], at + span)
    for cp in changes:
        if cp.cohort in (episode.baseline, episode.candidate):
            if cp.at_ns <= at:
                lo = max(lo, cp.at_ns)
            else:
                hi = min(hi, cp.at_ns)
    base = window(frame, episode.baseline, episode.routes, lo, at)
    cand = window(frame, episode.candidate, episode.routes, at, hi)
    return base, cand, (lo, hi)
