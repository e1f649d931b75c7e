"""A canary judge: may this candidate version_set proceed? For each watched metric a
non-inferiority test of the candidate against its baseline, mix-adjusted within strata as
attribution compares, on a confidence sequence that stays valid when the judge runs again and
again as data arrives (:mod:`analyze._judge_stats` says which and why). The decision:

- ``PASS`` (exit 0): every metric's sequence lies below its limit: shown to be no worse;
- ``FAIL`` (exit 1): some metric's sequence lies above its limit: shown to be worse;
- ``INCONCLUSIVE`` (exit 3): not yet; with, per open metric, how many more candidate requests
  would settle it if the data goes on as it is (from how the sequence's width shrinks), and at the
  candidate's current rate how long that takes.

The level ``alpha`` is split over the metrics (Bonferroni), so a false FAIL of any metric, at any
look, has probability at most ``alpha``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from ._compare import column_values, strata_columns
from ._episodes import cohorts as find_cohorts
from ._episodes import episodes as find_episodes
from ._judge_stats import (
    FloatArray,
    IntArray,
    Interval,
    StratifiedMean,
    WeightedSample,
    half_width,
    stratified_mean,
)
from ._money import usd
from ._requests import UNVERSIONED, from_ns, request_table, utc

__all__ = [
    "DEFAULT_LIMITS",
    "EXIT_CODES",
    "Judgement",
    "Limit",
    "MetricJudgement",
    "judge",
    "parse_limit",
]


@dataclass(frozen=True, slots=True)
class Limit:
    """How much worse a metric may get: ``relative`` (0.10 = +10% of the baseline) or in the
    metric's own units (a rate's 0.005 = +0.5 percentage points)."""

    value: float
    relative: bool

    def __str__(self) -> str:
        if self.relative:
            return (
                f"{self.value:+.0%}"
                if self.value * 100 == round(self.value * 100)
                else (f"{self.value:+.1%}")
            )
        return f"{self.value * 100:+g}pp"


DEFAULT_LIMITS: dict[str, Limit] = {
    "cost_usd.mean": Limit(0.05, True),
    "input_tokens.mean": Limit(0.05, True),
    "output_tokens.mean": Limit(0.05, True),
    "latency_ms.p95": Limit(0.10, True),
    "ttft_ms.p95": Limit(0.10, True),
    "error_rate": Limit(0.01, False),
}
"""The metrics watched unless told otherwise, and how much worse each may get."""

EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
"""The command's exit code per decision (2 stays bad input)."""

_RATES = ("error_rate", "degraded_rate", "blocked_rate")
_MIN_N = 10  # fewer candidate requests than this: no variance worth the name yet
_MAX_SCALE = 1000.0  # beyond 1000x today's candidate sample "more than" is all that is said

_Scales = Callable[[float], tuple[float, float]]
"""For a candidate sample ``s`` times today's, how many times larger each side's sample is."""


def parse_limit(text: str) -> tuple[str, Limit]:
    """``latency_ms.p95:+10%``, ``error_rate:+0.5pp``, ``cost_usd:+5%`` (a bare column is its
    mean) -> (metric, limit). A limit without ``%`` or ``pp`` is in the metric's units."""
    name, sep, raw = text.partition(":")
    name, raw = name.strip(), raw.strip().replace(" ", "")
    if not sep or not name or not raw:
        raise ValueError(f"--metric: expected NAME:LIMIT like latency_ms.p95:+10%, got {text!r}")
    metric = _metric_name(name)
    match = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)(%|pp)?", raw)
    if match is None:
        raise ValueError(f"--metric {text!r}: the limit is a number with % or pp, like +10%")
    number, unit = float(match.group(1)), match.group(2)
    if number < 0:
        raise ValueError(f"--metric {text!r}: a limit is how much worse it may get, 0 or more")
    if unit == "%":
        return metric, Limit(number / 100, True)
    if unit == "pp":
        return metric, Limit(number / 100, False)
    return metric, Limit(number, False)


def _metric_name(name: str) -> str:
    if name in _RATES or name.startswith("error_rate."):
        return name
    column, _, stat = name.partition(".")
    if not stat:
        stat = "mean"
    if stat != "mean" and not re.fullmatch(r"p\d{1,2}", stat):
        raise ValueError(f"--metric {name!r}: a metric is COLUMN.mean, COLUMN.pNN or a rate")
    return f"{column}.{stat}"


@dataclass
class MetricJudgement:
    """One metric's test: the effect with its confidence sequence, against its limit."""

    metric: str
    limit: Limit
    status: str  # pass | fail | open | no data
    effect: float = math.nan
    """Relative (0.12 = +12%) for a relative limit, else a difference in the metric's units."""
    lo: float = math.nan
    hi: float = math.nan
    baseline_value: float = math.nan
    candidate_value: float = math.nan
    n_baseline: int = 0
    n_candidate: int = 0
    needed: int | None = None
    """More candidate requests that would settle an open metric (None: more than 1000x today's)."""
    needed_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "limit": str(self.limit),
            "limit_value": self.limit.value,
            "relative": self.limit.relative,
            "status": self.status,
            "effect": _finite(self.effect),
            "interval": [_finite(self.lo), _finite(self.hi)],
            "baseline_value": _finite(self.baseline_value),
            "candidate_value": _finite(self.candidate_value),
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "needed_requests": self.needed,
            "needed_seconds": self.needed_seconds,
        }

    def effect_text(self) -> str:
        """``+12.3% [+8.1%, +16.0%]`` or ``+0.41pp [-0.2pp, +1.0pp]``."""
        if math.isnan(self.effect):
            return "-"
        if self.limit.relative:
            return f"{self.effect:+.1%} [{_pct(self.lo)}, {_pct(self.hi)}]"
        return f"{self.effect * 100:+.2f}pp [{self.lo * 100:+.2f}pp, {self.hi * 100:+.2f}pp]"

    def values_text(self) -> str:
        """``$0.0056 -> $0.0108``, ``1,820 -> 2,010 ms``, ``1.00% -> 1.30%``."""
        b, c = self.baseline_value, self.candidate_value
        if math.isnan(b):
            return "-"
        column = self.metric.partition(".")[0]
        if column == "cost_usd":
            return f"{usd(b)} -> {usd(c)}"
        if self.metric in _RATES or self.metric.startswith("error_rate."):
            return f"{b:.2%} -> {c:.2%}"
        unit = " ms" if column.endswith("_ms") else ""
        return f"{b:,.0f} -> {c:,.0f}{unit}"


def _pct(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:+.1%}"


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else (max(min(x, 1e12), -1e12))


@dataclass
class Judgement:
    """What :func:`judge` decided, over which samples, and each metric's test."""

    decision: str  # PASS | FAIL | INCONCLUSIVE
    candidate: dict[str, Any]
    baseline: dict[str, Any]
    window: dict[str, Any]
    metrics: list[MetricJudgement]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    @property
    def failed(self) -> list[MetricJudgement]:
        return [m for m in self.metrics if m.status == "fail"]

    @property
    def open(self) -> list[MetricJudgement]:
        return [m for m in self.metrics if m.status == "open"]

    def summary(self) -> str:
        """The decision in one sentence."""
        name = self.candidate["name"]
        if self.decision == "FAIL":
            worse = "; ".join(f"{m.metric} {m.effect_text()}" for m in self.failed)
            return f"FAIL: {name} is worse than its limits: {worse}"
        if self.decision == "PASS":
            return f"PASS: {name} is shown to be within every limit"
        settle = [m.needed for m in self.open]
        if settle and all(n is not None for n in settle):
            most = max(n for n in settle if n is not None)
            seconds = max((m.needed_seconds or 0.0) for m in self.open)
            when = f" (about {duration(seconds)} at today's rate)" if seconds else ""
            return (
                f"INCONCLUSIVE: not enough data yet; about {most:,} more {name} requests"
                f"{when} would settle it"
            )
        return (
            f"INCONCLUSIVE: not enough data, and at this effect more than "
            f"{_MAX_SCALE:,.0f}x today's {name} requests would be needed for some metric"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "candidate": self.candidate,
            "baseline": self.baseline,
            "window": self.window,
            "metrics": [m.to_dict() for m in self.metrics],
            "settings": self.settings,
        }

    def __repr__(self) -> str:
        lines = [
            f"  {m.status:<7} {m.metric:<20} limit {m.limit!s:<6} {m.effect_text()}"
            + (f"  needs {m.needed:,} more" if m.needed is not None else "")
            for m in self.metrics
        ]
        return "\n".join([self.summary(), *lines])


def duration(seconds: float) -> str:
    """``40 min``, ``3.5 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- choosing the two samples ------------------------------------------------------------------


def _selector(frame: pl.DataFrame, text: str, option: str) -> pl.Expr:
    """A version_set id (or a unique prefix of 6+ hex digits) or ``component=value``."""
    name, sep, value = text.partition("=")
    if sep:
        column = f"version.{name.strip()}"
        if column not in frame.columns:
            known = ", ".join(
                sorted(
                    c.removeprefix("version.") for c in frame.columns if c.startswith("version.")
                )
            )
            raise ValueError(f"{option} {text!r}: no component {name.strip()!r}; known: {known}")
        return pl.col(column).cast(pl.String) == value.strip()
    ids: list[str] = [str(i) for i in frame["version_set_id"].cast(pl.String).unique()]
    if text in ids:
        return pl.col("version_set_id").cast(pl.String) == text
    matches = [i for i in ids if len(text) >= 6 and i.startswith(text)]
    if len(matches) == 1:
        return pl.col("version_set_id").cast(pl.String) == pl.lit(matches[0])
    raise ValueError(
        f"{option} {text!r} is neither a version_set id of this data nor COMPONENT=VALUE "
        "(like prompt=outline@v5)"
    )


def _describe(frame: pl.DataFrame, selector: str) -> dict[str, Any]:
    """The side as JSON and for people: its selector, version_set ids, requests."""
    counts = frame.group_by("version_set_id").len().sort("len", descending=True)
    ids = [str(v) for v in counts["version_set_id"].to_list()]
    return {"selector": selector, "name": selector, "version_sets": ids, "requests": frame.height}


def _default_baseline(frame: pl.DataFrame, cand_ids: list[str]) -> str:
    """What attribution compares the candidate with: the baseline of the episode in which the
    busiest of the candidate's version_sets appeared."""
    versions = sorted(c for c in frame.columns if c.startswith("version."))
    cohorts = find_cohorts(frame, versions)
    for episode in find_episodes(frame, cohorts):
        if episode.candidate == cand_ids[0] and episode.baseline not in cand_ids:
            return episode.baseline
    raise ValueError(
        f"cannot tell what {cand_ids[0]} is compared with (it took traffic from no other "
        "version_set in this data); name one with --baseline"
    )


def _samples(
    frame: pl.DataFrame, cand: pl.DataFrame, base_all: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Side by side over the time both served on the candidate's routes, when the baseline kept
    serving beside it; else before/after: the baseline's last requests before the candidate's
    first (as many as the candidate has, at least 2,000), against the candidate since."""
    routes = sorted(str(r) for r in cand["route"].unique().to_list())
    base_all = base_all.filter(pl.col("route").cast(pl.String).is_in(routes))
    t = pl.col("start").dt.epoch("ns")
    c0 = int(cand["start"].dt.epoch("ns").min())  # type: ignore[arg-type]
    c1 = int(cand["start"].dt.epoch("ns").max())  # type: ignore[arg-type]
    beside = base_all.filter(t >= c0)
    data = (int(frame["start"].dt.epoch("ns").min()), int(frame["start"].dt.epoch("ns").max()))  # type: ignore[arg-type]
    if beside.height >= _MIN_N:
        end = min(c1, int(beside["start"].dt.epoch("ns").max())) + 1  # type: ignore[arg-type]
        base, cand = beside.filter(t < end), cand.filter(t < end)
        why = (
            f"side by side from the candidate's first request to the last time both served "
            f"(the candidate began at {_t(c0)}"
            + (f"; after {_t(end)} only one of them served" if end <= data[1] else "")
            + f"), on the candidate's routes ({', '.join(routes)})"
        )
        return base, cand, _window("concurrent", c0, end, data, why, routes)
    history = base_all.filter(t < c0)
    before = history.tail(max(cand.height, 2000))
    lo = int(before["start"].dt.epoch("ns").min()) if before.height else c0  # type: ignore[arg-type]
    why = (
        "before/after: the baseline served no traffic beside the candidate (a cutover), so its "
        f"last {before.height:,} requests before the candidate's first ({_t(lo)} to {_t(c0)}) "
        f"are compared with the candidate's since, on its routes ({', '.join(routes)})"
    )
    window = _window("before_after", lo, c1 + 1, data, why, routes)
    window["baseline_before"] = history.height
    return before, cand, window


def _growth(window: dict[str, Any], n_base: int, n_cand: int) -> _Scales:
    """How both samples grow with the candidate's: side by side, together; before/after, the
    baseline's sample follows the candidate's size (at least 2,000) as far as its history goes."""
    if window["mode"] == "concurrent":
        return lambda s: (s, s)
    available = int(window["baseline_before"])
    return lambda s: (min(max(n_cand * s, 2000.0), available) / max(n_base, 1), s)


def _t(ns: int) -> str:
    return from_ns(ns).strftime("%Y-%m-%d %H:%M")


def _window(
    mode: str, lo: int, hi: int, data: tuple[int, int], why: str, routes: list[str]
) -> dict[str, Any]:
    return {
        "mode": mode,
        "from": from_ns(lo).isoformat(),
        "to": from_ns(hi).isoformat(),
        "data_from": from_ns(data[0]).isoformat(),
        "data_to": from_ns(data[1]).isoformat(),
        "routes": routes,
        "why": why,
    }


# --- the tests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    values: FloatArray
    strata: IntArray


def _side(frame: pl.DataFrame, metric: str, codes: IntArray) -> _Side:
    column = (
        metric if metric in _RATES or metric.startswith("error_rate.") else metric.partition(".")[0]
    )
    if (
        column not in frame.columns
        and column not in _RATES
        and not column.startswith("error_rate.")
    ):
        return _Side(np.zeros(0), np.zeros(0, dtype=np.int64))
    values, mask = column_values(frame, column)
    return _Side(np.asarray(values, dtype=np.float64), codes[mask])


def _strata_codes(
    base: pl.DataFrame, cand: pl.DataFrame, strata: list[str]
) -> tuple[IntArray, IntArray]:
    """Each request's stratum as a small integer, the same on both sides."""
    key = pl.concat_str([pl.col(s).cast(pl.String).fill_null("") for s in strata], separator="\x1f")
    kb = base.select(key.alias("k"))["k"]
    kc = cand.select(key.alias("k"))["k"]
    names = {k: i for i, k in enumerate(sorted(set(kb.to_list()) | set(kc.to_list())))}
    return (
        np.array([names[k] for k in kb.to_list()], dtype=np.int64),
        np.array([names[k] for k in kc.to_list()], dtype=np.int64),
    )


def _tau(limit: Limit) -> float:
    """The mixture's scale on the effect's scale: the margin (a default one for a zero limit)."""
    if limit.relative:
        return math.log1p(limit.value if limit.value > 0 else 0.05)
    return limit.value if limit.value > 0 else 0.005


def _bound(limit: Limit) -> float:
    return math.log1p(limit.value) if limit.relative else limit.value


def _decided(iv: Interval, bound: float) -> str:
    if iv.lo > bound:
        return "fail"
    if iv.hi <= bound:
        return "pass"
    return "open"


def _mean_test(
    metric: str, limit: Limit, base: _Side, cand: _Side, alpha: float, scales: _Scales
) -> MetricJudgement:
    rate = metric in _RATES or metric.startswith("error_rate.")
    if len(base.values) == 0 and len(cand.values) == 0:
        return MetricJudgement(metric, limit, "no data")
    sm = stratified_mean(base.values, base.strata, cand.values, cand.strata, rate=rate)
    if sm is None or sm.n_candidate < _MIN_N or sm.n_baseline < _MIN_N:
        n_c = 0 if sm is None else sm.n_candidate
        return MetricJudgement(metric, limit, "open", n_candidate=n_c, needed=max(_MIN_N - n_c, 1))
    if limit.relative and (sm.baseline <= 0 and sm.candidate <= 0):
        return MetricJudgement(metric, limit, "no data")

    def interval(scale: float) -> Interval:
        point, var = sm.effect(limit.relative, scales(scale))
        h = half_width(var, _tau(limit), alpha)
        return Interval(point, point - h, point + h)

    return _judged(metric, limit, sm, interval)


def _judged(
    metric: str, limit: Limit, sm: StratifiedMean, interval: Any, projection: Any = None
) -> MetricJudgement:
    """The metric's status now, and for an open one the requests that would settle it:
    ``interval(s)`` is the sequence with a sample ``s`` times today's (``projection(s)`` when the
    exact one is too coarse to extrapolate, as a quantile of a few dozen values is)."""
    bound = _bound(limit)
    now = interval(1.0)
    status = _decided(now, bound)
    out = MetricJudgement(
        metric,
        limit,
        status,
        baseline_value=sm.baseline,
        candidate_value=sm.candidate,
        n_baseline=sm.n_baseline,
        n_candidate=sm.n_candidate,
    )
    to_effect = math.expm1 if limit.relative else (lambda x: x)
    out.effect, out.lo, out.hi = (to_effect(x) for x in (now.point, now.lo, now.hi))
    if not limit.relative and (metric in _RATES or metric.startswith("error_rate.")):
        out.lo, out.hi = max(out.lo, -1.0), min(out.hi, 1.0)  # a rate moves by 100pp at most
    if status == "open":
        scale = _scale_needed(projection or interval, bound)
        out.needed = None if scale is None else max(math.ceil(sm.n_candidate * (scale - 1)), 1)
    return out


def _scale_needed(interval: Any, bound: float) -> float | None:
    """The smallest factor by which the sample must grow, the data going on as it is, for the
    sequence to leave ``bound`` behind; None beyond :data:`_MAX_SCALE`."""
    if _decided(interval(_MAX_SCALE), bound) == "open":
        return None
    lo, hi = 1.0, _MAX_SCALE
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if _decided(interval(mid), bound) == "open":
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.001:
            break
    return hi


def _quantile_test(
    metric: str, limit: Limit, base: _Side, cand: _Side, alpha: float, scales: _Scales
) -> MetricJudgement:
    p = int(metric.rpartition(".p")[2]) / 100
    if len(base.values) == 0 and len(cand.values) == 0:
        return MetricJudgement(metric, limit, "no data")
    k = int(max(base.strata.max(initial=-1), cand.strata.max(initial=-1))) + 1
    nb = np.bincount(base.strata, minlength=k).astype(np.float64)
    nc = np.bincount(cand.strata, minlength=k).astype(np.float64)
    common = (nb >= 2) & (nc >= 2)
    keep_b, keep_c = common[base.strata], common[cand.strata]
    n_c = int(keep_c.sum())
    if n_c < _MIN_N or int(keep_b.sum()) < _MIN_N:
        return MetricJudgement(metric, limit, "open", n_candidate=n_c, needed=max(_MIN_N - n_c, 1))
    # the candidate weighted onto the baseline's strata mix; the baseline as it is
    share_b = np.where(common, nb, 0.0) / nb[common].sum()
    share_c = np.where(common, nc, 0.0) / nc[common].sum()
    w_c = (share_b / np.where(share_c > 0, share_c, 1.0))[cand.strata[keep_c]]
    b = WeightedSample.of(base.values[keep_b], np.ones(int(keep_b.sum())))
    c = WeightedSample.of(cand.values[keep_c], w_c)
    eff_b, eff_c = float(keep_b.sum()), WeightedSample.effective_size(w_c)
    qb, qc = b.quantile(p), c.quantile(p)
    if qb <= 0:
        return MetricJudgement(metric, limit, "no data")
    # the mixture's scale in probability units: how far the margin moves the baseline's CDF
    tau = min(max(b.cdf(qb * math.exp(_tau(limit))) - p, 0.002), 0.05)

    def interval(scale: float) -> Interval:
        s_b, s_c = scales(scale)
        b_lo, b_hi = b.bounds(p, eff_b * s_b, tau, alpha / 2)
        c_lo, c_hi = c.bounds(p, eff_c * s_c, tau, alpha / 2)
        lo = math.log(c_lo / b_hi) if c_lo > 0 and math.isfinite(b_hi) else -math.inf
        hi = math.log(c_hi / b_lo) if b_lo > 0 and math.isfinite(c_hi) else math.inf
        return Interval(math.log(qc / qb) if qc > 0 else -math.inf, lo, hi)

    # to project: the quantile's asymptotic variance, p(1 - p) / (n f(q)^2), on the log scale,
    # the density read from the baseline's spacing around q (both sides taken to share its shape)
    spread = (b.quantile(min(p + 0.02, 0.999)) - b.quantile(max(p - 0.02, 0.001))) / (0.04 * qb)

    def projection(scale: float) -> Interval:
        s_b, s_c = scales(scale)
        var = p * (1 - p) * spread**2 * (1 / (eff_b * s_b) + 1 / (eff_c * s_c))
        h = half_width(var, _tau(limit), alpha)
        point = math.log(qc / qb) if qc > 0 else -math.inf
        return Interval(point, point - h, point + h)

    sm = StratifiedMean(qb, qc, 0.0, 0.0, int(keep_b.sum()), n_c)
    return _judged(metric, limit, sm, interval, projection)


def judge(
    spans: pl.LazyFrame | pl.DataFrame | None,
    candidate: str,
    baseline: str | None = None,
    *,
    limits: Mapping[str, Limit] | None = None,
    alpha: float = 0.05,
    strata: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    requests: pl.DataFrame | None = None,
) -> Judgement:
    """Judge the ``candidate`` (a version_set id or ``component=value``) against ``baseline``
    (default: what attribution compares it with) on ``limits`` (default :data:`DEFAULT_LIMITS`);
    see the module docstring. ``requests`` is :func:`request_table` of ``spans`` when the caller
    has it. Bad selectors, limits or levels are ``ValueError``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    if requests is None:
        if spans is None:
            raise ValueError("judge needs spans or a request table")
        requests = request_table(spans.lazy() if isinstance(spans, pl.DataFrame) else spans)
    frame = requests
    if since is not None:
        frame = frame.filter(pl.col("start") >= utc(since))
    if until is not None:
        frame = frame.filter(pl.col("start") < utc(until))
    if frame.is_empty():
        raise ValueError("no requests in the data (or in --since/--until)")
    chosen = dict(DEFAULT_LIMITS if limits is None else limits)
    is_candidate = _selector(frame, candidate, "--candidate")
    cand_all = frame.filter(is_candidate)
    if cand_all.is_empty():
        raise ValueError(f"--candidate {candidate!r}: no request of this data matches it")
    cand_info = _describe(cand_all, candidate)
    if baseline is None:
        base_id = _default_baseline(frame, cand_info["version_sets"])
        base_all = frame.filter(pl.col("version_set_id").cast(pl.String) == base_id)
        base_info = _describe(base_all, base_id)
        base_info["chosen"] = "the version_set the candidate took traffic from (as attribution)"
    else:
        base_all = frame.filter(_selector(frame, baseline, "--baseline") & ~is_candidate)
        if base_all.is_empty():
            raise ValueError(
                f"--baseline {baseline!r}: no request (other than the candidate's) matches it"
            )
        base_info = _describe(base_all, baseline)
    if UNVERSIONED in cand_info["version_sets"][:1]:
        raise ValueError("--candidate selects unversioned requests: select a version_set")
    base, cand, window = _samples(frame, cand_all, base_all)
    scales = _growth(window, base.height, cand.height)
    columns = strata_columns(pl.concat([base, cand], how="vertical_relaxed"), strata)
    codes_b, codes_c = _strata_codes(base, cand, columns)
    per_metric = alpha / max(len(chosen), 1)
    results = []
    for metric, limit in chosen.items():
        b, c = _side(base, metric, codes_b), _side(cand, metric, codes_c)
        test = _quantile_test if ".p" in metric else _mean_test
        results.append(test(metric, limit, b, c, per_metric, scales))
    seconds = (
        datetime.fromisoformat(window["to"]) - datetime.fromisoformat(window["from"])
    ).total_seconds()
    rate = cand.height / seconds if seconds > 0 else 0.0
    for m in results:
        if m.needed is not None and rate > 0:
            m.needed_seconds = m.needed / rate
    statuses = {m.status for m in results}
    decision = "FAIL" if "fail" in statuses else ("INCONCLUSIVE" if "open" in statuses else "PASS")
    if statuses <= {"no data"}:
        decision = "INCONCLUSIVE"
    window.update(
        baseline_requests=base.height,
        candidate_requests=cand.height,
        baseline_served=base_all.height,
        candidate_served=cand_all.height,
        candidate_per_hour=rate * 3600,
        strata=columns,
    )
    return Judgement(
        decision=decision,
        candidate=cand_info,
        baseline=base_info,
        window=window,
        metrics=results,
        settings={
            "alpha": alpha,
            "alpha_per_metric": per_metric,
            "method": "normal-mixture confidence sequences (mSPRT; quantiles by the empirical "
            "CDF, Howard & Ramdas 2022), mix-adjusted within strata, Bonferroni over metrics",
            "limits": {k: str(v) for k, v in chosen.items()},
        },
    )
