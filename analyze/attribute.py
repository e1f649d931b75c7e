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
   every test of the run. Every other traffic covariate that moved between the two samples (many
   tenants, a model tier, region, segment) is balanced inside the strata by raked weights
   (:mod:`analyze._balance`). Concurrent cohorts (canary, A/B) are compared over the time both
   ran, which also cancels any drift and any daily cycle; a cutover compares before with after,
   inside the segment between detected change points. The naive (pooled, unweighted) ratio is
   reported beside the adjusted one; each test reports its minimum detectable effect.
3b. **The clock.** When the request rate swings (a daily or weekly cycle), every request gets its
   load level and before/after comparisons balance on it, over windows of at least a day either
   side so like loads exist on both: a cutover at the start of the peak is compared at like load
   with the same hours of the day before, not with the night. Change points are looked for in
   series with the load level taken out too, so the cycle is no ``external`` shift. Where no like
   load (or no like tenant) exists on both sides the episode is ``inconclusive``
   (``Episode.comparison``), not compared; a concurrent comparison that is inconclusive (a
   rollout that took whole tenants) falls back to before/after within each tenant.
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
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ._balance import CLOCK, balance_columns, load_levels, moved
from ._compare import (
    HypothesisTest,
    Sample,
    Settings,
    compare,
    metric_names,
    sample_columns,
    strata_columns,
)
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
    in_window,
    request_table,
    utc,
    window,
)
from ._results import Attribution, Cohort, Episode, Finding
from .costs import decompose
from .stats import bh_adjust

if TYPE_CHECKING:
    from .engine import Inputs

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
    spans: pl.LazyFrame | pl.DataFrame | Inputs,
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
    """Attribute regressions and improvements in ``spans`` to version_set changes and their
    components; see the module docstring. ``spans``: the span table as polars holds it (e.g.
    :func:`analyze.load`, rolled up in memory), or a dataset folder or Parquet file, a DuckDB
    relation or a Spark DataFrame of spans (rolled up out of core by DuckDB, or by Spark for a
    DataFrame: :mod:`analyze.engine`).

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
    levels = load_levels(frame)
    if levels is not None:
        frame = frame.with_columns(levels)
    covariates = balance_columns(frame, chosen)
    tests = _tests(frame, episodes, chosen, covariates, settings, np.random.default_rng(seed))
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
            "balanced_when_moved": covariates,
            "load_cycle": levels is not None,
            "replicates": replicates,
            "seed": seed,
            "requests": frame.height,
        },
    )


def _selected(
    spans: pl.LazyFrame | pl.DataFrame | Inputs,
    requests: pl.DataFrame | None,
    since: datetime | None,
    until: datetime | None,
) -> pl.DataFrame:
    """The request table of ``spans`` (or the one given), from ``since`` until ``until``."""
    if requests is not None:
        frame = requests
    elif isinstance(spans, pl.LazyFrame | pl.DataFrame):
        frame = request_table(spans.lazy())
    else:
        from .engine import request_table as engine_requests

        frame = engine_requests(spans)
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
    covariates: list[str],
    settings: Settings,
    rng: np.random.Generator,
) -> list[HypothesisTest]:
    """Every test of the run, each episode's then the external shifts', with their q-values
    (Benjamini-Hochberg over all of them)."""
    metrics = metric_names(frame, max(10, settings.min_n // 3))
    changes = change_points(frame, strata, settings, covariates=covariates)
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
            frame,
            episode,
            at,
            (t_begin, t_last + 1),
            changes,
            (strata, covariates),
            metrics,
            settings,
            rng,
        )
    tests += external_tests(frame, changes, first_seen_on_route, strata, settings, rng, covariates)
    q = bh_adjust([t.ratio.p_value for t in tests])
    for test, qv in zip(tests, q, strict=True):
        test.q_value = qv
    return tests


_DAY = 86_400 * NS


_Samples = tuple[Sample, Sample, tuple[int, int]]


def _episode_tests(
    frame: pl.DataFrame,
    episode: Episode,
    at: int,
    limits: tuple[int, int],
    changes: list[ChangePoint],
    columns: tuple[list[str], list[str]],
    metrics: list[str],
    settings: Settings,
    rng: np.random.Generator,
) -> list[HypothesisTest]:
    """Concurrent comparison when both cohorts ran side by side long enough (and had like
    traffic); else before/after the episode, inside the segment no detected change point
    crosses. ``columns`` are the strata and the covariates to balance when they moved (the load
    level only before/after: side by side, both cohorts saw the same clock)."""
    strata, covariates = columns
    cycle = CLOCK in covariates
    layout = (strata, sample_columns(frame.columns, strata, covariates))
    tests: list[HypothesisTest] = []
    if episode.kind in ("canary", "ab"):
        samples = _concurrent(frame, episode, at, limits[1], settings.min_n, layout)
        if samples is not None:
            side_by_side = [c for c in covariates if c != CLOCK]
            tests = _run(
                episode, "concurrent", samples, strata, side_by_side, metrics, settings, rng
            )
        samples = None  # let the windows go before the next ones are read
    if not tests:
        samples = _before_after(frame, episode, at, limits, changes, layout, cycle)
        tests = _run(episode, "before_after", samples, strata, covariates, metrics, settings, rng)
    episode.mde = {t.metric: t.ratio.mde for t in tests}
    return tests


def _run(
    episode: Episode,
    mode: str,
    samples: _Samples,
    strata: list[str],
    covariates: list[str],
    metrics: list[str],
    settings: Settings,
    rng: np.random.Generator,
) -> list[HypothesisTest]:
    """One comparison of the episode, balancing the covariates that moved, recorded on the
    episode (``comparison``): inconclusive when both sides have traffic but none alike."""
    base, cand, (lo, hi) = samples
    balance = moved(base.frame, cand.frame, covariates) if base.height and cand.height else []
    context: dict[str, Any] = {
        "baseline": episode.baseline,
        "candidate": episode.candidate,
        "episode": episode.kind,
        "comparison": mode,
        "window": [from_ns(lo).isoformat(), from_ns(hi).isoformat()],
        "routes": episode.routes,
    }
    tests = compare(base, cand, metrics, settings, rng, context, balance)
    for t in tests:
        t.episode = episode
    enough = min(base.height, cand.height) > 0
    episode.comparison = {
        "mode": mode,
        "window": context["window"],
        "adjusted_for": balance,
        "coverage": round(float(context["coverage"]), 4),
        "inconclusive": enough and not tests,
    }
    if enough and not tests:
        episode.comparison["reason"] = (
            "no like traffic on both sides: the baseline and candidate share no "
            + ("hour and load level, " if CLOCK in balance else "")
            + "stratum or level of "
            + (", ".join([*strata, *[c for c in balance if c != CLOCK]]))
            + " with enough requests"
        )
    return tests


_Layout = tuple[list[str], list[str]]
"""A sample's strata and the columns it holds (:func:`analyze._compare.sample_columns`)."""


def _sample(
    frame: pl.DataFrame, cohort: str, routes: list[str], lo: int, hi: int, layout: _Layout
) -> Sample:
    """The cohort's requests on the routes in ``[lo, hi)``: their labels copied, their metrics
    read from ``frame`` when compared."""
    strata, labels = layout
    return Sample.take(frame, in_window(cohort, routes, lo, hi), strata, labels)


def _concurrent(
    frame: pl.DataFrame, episode: Episode, at: int, end: int, min_n: int, layout: _Layout
) -> _Samples | None:
    """Both cohorts from ``at`` on, over the time both served (a canary that ended must not
    meet later drift alone); None when either has fewer than ``min_n`` requests there."""
    lasts = [
        _last_start(frame, c, episode.routes, at, end)
        for c in (episode.baseline, episode.candidate)
    ]
    if None in lasts:
        return None
    both_end = min(t for t in lasts if t is not None) + 1
    base = _sample(frame, episode.baseline, episode.routes, at, both_end, layout)
    if base.height < min_n:
        return None
    cand = _sample(frame, episode.candidate, episode.routes, at, both_end, layout)
    if cand.height < min_n:
        return None
    return base, cand, (at, both_end)


def _last_start(
    frame: pl.DataFrame, cohort: str, routes: list[str], lo: int, hi: int
) -> int | None:
    """The last start (ns) of the cohort's requests on the routes in ``[lo, hi)``, read without
    copying them."""
    found = (
        window(frame.lazy(), cohort, routes, lo, hi)
        .select(pl.col("start").dt.epoch("ns").max())
        .collect()
        .item()
    )
    return None if found is None else int(found)


def _before_after(
    frame: pl.DataFrame,
    episode: Episode,
    at: int,
    limits: tuple[int, int],
    changes: list[ChangePoint],
    layout: _Layout,
    cycle: bool = False,
) -> _Samples:
    """The baseline before ``at`` and the candidate after it: at most a quarter of the data on
    each side (in a load cycle at least a day, a week when the data spans two, so each side
    holds every hour and like loads can meet), and never across a change point detected in
    either cohort's own series (drift the episode did not cause)."""
    whole = limits[1] - limits[0]
    cycle_span = (7 if whole >= 14 * _DAY else 1) * _DAY if cycle else 1
    span = max(whole // 4, cycle_span)
    lo, hi = max(limits[0], at - span), min(limits[1], at + span)
    for cp in changes:
        if cp.cohort in (episode.baseline, episode.candidate):
            if cp.at_ns <= at:
                lo = max(lo, cp.at_ns)
            else:
                hi = min(hi, cp.at_ns)
    base = _sample(frame, episode.baseline, episode.routes, lo, at, layout)
    cand = _sample(frame, episode.candidate, episode.routes, at, hi, layout)
    return base, cand, (lo, hi)
