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
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from .stats import (
    GroupSums,
    Ratio,
    bh_adjust,
    bootstrap_ratios,
    cmh_p_value,
    group_labels,
    pelt,
)
from .table import requests

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

MEAN_METRICS = (
    "latency_ms",
    "ttft_ms",
    "tpot_ms",
    "tool_ms",
    "queue_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)
"""Per-request metrics compared by their mean (``<metric>.mean`` in findings)."""

QUANTILE_METRICS = {"latency_ms": (0.5, 0.95, 0.99), "ttft_ms": (0.5, 0.95)}
"""Metrics compared at quantiles as well (``latency_ms.p95``)."""

RATE_METRICS = ("error_rate", "degraded_rate", "blocked_rate")

LATENCY_METRICS = frozenset({"latency_ms", "ttft_ms", "tpot_ms", "tool_ms", "queue_ms"})
"""Compared over successful requests only: a degraded, blocked or failed answer is fast (or slow)
for reasons its own rate already reports. Tokens and cost count every request: they are the bill."""

EXTERNAL_METRICS = (*MEAN_METRICS, "error_rate")
"""Metrics watched for shifts no version change explains (provider drift, price changes)."""

UNVERSIONED = "unversioned"

_NS = 1_000_000_000


# ---------------------------------------------------------------------------------------------
# 2. per-request metrics


def request_table(spans: pl.LazyFrame) -> pl.DataFrame:
    """One row per request (root span) with the metrics attribution compares, sorted by start.

    ``tpot_ms`` (time per output token) is the trace's generation time (LLM span time after the
    first token) over its output tokens; requests without output tokens have none."""
    names = spans.collect_schema().names()
    versions = sorted(c for c in names if c.startswith("version."))
    keep = [
        "start",
        "name",
        "route",
        "tenant_id",
        "version_set",
        "version_set_id",
        *versions,
        "latency_ms",
        "ttft_ms",
        "tool_ms",
        "queue_ms",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "llm_calls",
        "final_status",
        "error_code",
        "generation_ms",
        "llm_model",
    ]
    frame = (
        requests(spans)
        .select(keep)
        .with_columns(
            model=pl.col("llm_model"),
            tpot_ms=pl.when(pl.col("output_tokens") > 0).then(
                pl.col("generation_ms") / pl.col("output_tokens")
            ),
            version_set_id=pl.col("version_set_id").fill_null(UNVERSIONED),
            route=pl.col("route").fill_null(pl.col("name")),
            tenant_id=pl.col("tenant_id").fill_null(""),
            input_tokens=pl.col("input_tokens").fill_null(0),
            output_tokens=pl.col("output_tokens").fill_null(0),
            cost_usd=pl.col("cost_usd").fill_null(0.0),
            tool_ms=pl.col("tool_ms").fill_null(0.0),
            queue_ms=pl.col("queue_ms").fill_null(0.0),
        )
        .drop("generation_ms", "llm_model", "name")
        .with_columns(pl.col(_label_columns(versions)).cast(pl.Categorical))
        .sort("start")
    )
    return frame.collect(engine="streaming")


def _label_columns(versions: list[str]) -> list[str]:
    """Low-cardinality text columns, held as categoricals: millions of requests share a few
    routes and version sets, and a categorical stores each once."""
    return [
        "route",
        "tenant_id",
        "version_set",
        "version_set_id",
        "final_status",
        "error_code",
        "model",
        *versions,
    ]


# ---------------------------------------------------------------------------------------------
# 1. cohorts and episodes


@dataclass(frozen=True)
class Cohort:
    """One version_set as the data saw it."""

    id: str
    version_set: str | None
    components: dict[str, str]
    first_seen: datetime
    last_seen: datetime
    requests: int
    routes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version_set": self.version_set,
            "components": dict(self.components),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "requests": self.requests,
            "routes": list(self.routes),
        }


@dataclass
class Episode:
    """A version_set taking traffic from another on some routes."""

    kind: str  # cutover | canary | ab | rollback
    baseline: str
    candidate: str
    at: datetime
    routes: list[str]
    changes: dict[str, tuple[str | None, str | None]]

    @property
    def components(self) -> list[str]:
        return sorted(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "at": self.at.isoformat(),
            "routes": list(self.routes),
            "components": self.components,
            "changes": {k: list(v) for k, v in self.changes.items()},
        }


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / _NS, tz=UTC)


def _cohorts(frame: pl.DataFrame, versions: list[str]) -> dict[str, Cohort]:
    if frame.is_empty():
        return {}
    agg = frame.group_by("version_set_id").agg(
        pl.col("version_set").drop_nulls().first(),
        pl.col("start").min().alias("first"),
        pl.col("start").max().alias("last"),
        pl.len().alias("n"),
        pl.col("route").unique().sort().alias("routes"),
        *[pl.col(v).drop_nulls().mode().first().alias(v) for v in versions],
    )
    out = {}
    for row in agg.sort("first", "version_set_id").iter_rows(named=True):
        components = {v.removeprefix("version."): row[v] for v in versions if row[v] is not None}
        out[row["version_set_id"]] = Cohort(
            id=row["version_set_id"],
            version_set=row["version_set"],
            components=components,
            first_seen=row["first"],
            last_seen=row["last"],
            requests=row["n"],
            routes=tuple(row["routes"]),
        )
    return out


def _changes(a: Cohort, b: Cohort) -> dict[str, tuple[str | None, str | None]]:
    keys = sorted(set(a.components) | set(b.components))
    return {
        k: (a.components.get(k), b.components.get(k))
        for k in keys
        if a.components.get(k) != b.components.get(k)
    }


def _closest(vid: str, before: Counter[str], cohorts: dict[str, Cohort]) -> str:
    """The baseline of a version_set that appears: among those serving just before it (at least
    5% of those requests), the one it differs from in the fewest components, then the busiest.
    A canary's successor (canary + new code) is compared with the canary, not the incumbent."""
    total = sum(before.values())
    live = [v for v, n in before.items() if n >= 0.05 * total and v != UNVERSIONED] or [
        before.most_common(1)[0][0]
    ]
    if vid == UNVERSIONED or vid not in cohorts:
        return max(live, key=lambda v: before[v])
    return min(
        live,
        key=lambda v: (
            len(_changes(cohorts[v], cohorts[vid])) if v in cohorts else 99,
            -before[v],
        ),
    )


def _episodes(
    frame: pl.DataFrame, cohorts: dict[str, Cohort], *, block: int = 400
) -> list[Episode]:
    """Episodes from each route's request sequence: where a version_set first appears (its
    baseline is the dominant one in the requests just before), and where the dominant version_set
    changes back to one that dominated earlier (a rollback)."""
    found: dict[tuple[str, str], Episode] = {}
    weight: dict[tuple[str, str], int] = {}
    t0, t1 = _bounds(frame)
    if t0 == t1:
        return []  # no spread in time: no order to read a rollout from

    def add(kind: str, base: str, cand: str, at_ns: int, route: str, n: int) -> None:
        """One episode per (baseline, candidate) pair over all routes; its kind is the one seen
        on the route with the most traffic (a canary on a busy route may look like an A/B on a
        quiet one)."""
        if base == cand or UNVERSIONED in (base, cand):
            return
        key = (base, cand)
        if key in found:
            episode = found[key]
            episode.routes = sorted({*episode.routes, route})
            episode.at = min(episode.at, _dt(at_ns))
            if n > weight[key]:
                episode.kind, weight[key] = kind, n
        else:
            changes = _changes(cohorts[base], cohorts[cand])
            found[key] = Episode(kind, base, cand, _dt(at_ns), [route], changes)
            weight[key] = n

    for (route,), part in (
        frame.select("route", "start", "version_set_id").partition_by("route", as_dict=True).items()
    ):
        ids = part["version_set_id"].to_list()
        times = part["start"].dt.epoch("ns").to_numpy()
        first: dict[str, int] = {}
        for i, vid in enumerate(ids):
            first.setdefault(vid, i)
        for vid, i in sorted(first.items(), key=lambda kv: kv[1]):
            before = Counter(ids[max(0, i - block) : i])
            if not before:
                continue
            base = _closest(vid, before, cohorts)
            after = ids[i : i + block]
            ours, theirs = after.count(vid), after.count(base)
            share = ours / (ours + theirs)  # does the baseline keep serving beside it?
            kind = "cutover" if share >= 0.8 else ("canary" if share <= 0.35 else "ab")
            add(kind, base, vid, int(times[i]), str(route), len(ids))
        # rollbacks: the dominant version_set per block, run-length encoded
        dominant: list[tuple[str, int]] = []
        for start in range(0, len(ids), block):
            counts = Counter(ids[start : start + block])
            vid, n = counts.most_common(1)[0]
            if n >= 0.6 * sum(counts.values()) and (not dominant or dominant[-1][0] != vid):
                dominant.append((vid, start))
        for j in range(1, len(dominant)):
            vid, start = dominant[j]
            if any(d[0] == vid for d in dominant[: j - 1]):
                add("rollback", dominant[j - 1][0], vid, int(times[start]), str(route), len(ids))
    return sorted(found.values(), key=lambda e: (e.at, e.baseline, e.candidate))


# ---------------------------------------------------------------------------------------------
# 3. comparisons


@dataclass
class Finding:
    """One significant, practically sized difference (the JSON contract's finding)."""

    metric: str
    baseline: str
    candidate: str
    components: list[str]
    verdict: str
    effect: float
    ci: tuple[float, float]
    p_value: float
    q_value: float
    naive_effect: float
    scope: dict[str, Any]
    n_baseline: int
    n_candidate: int
    baseline_value: float
    candidate_value: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "components": list(self.components),
            "verdict": self.verdict,
            "effect": _finite(self.effect),
            "ci": [_finite(self.ci[0]), _finite(self.ci[1])],
            "p_value": self.p_value,
            "q_value": self.q_value,
            "naive_effect": _finite(self.naive_effect),
            "scope": self.scope,
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "baseline_value": _finite(self.baseline_value),
            "candidate_value": _finite(self.candidate_value),
        }


def _finite(x: float) -> float:
    """JSON has no inf/nan: clamp to a large finite value (a rate from 0 is floored already)."""
    if math.isnan(x):
        return 0.0
    return max(min(x, 1e12), -1e12)


@dataclass
class _Test:
    """A test before multiple-testing correction."""

    metric: str
    baseline: str
    candidate: str
    ratio: Ratio
    naive: float
    n_baseline: int
    n_candidate: int
    strata: list[tuple[str, ...]]
    rate_delta: float | None
    context: dict[str, Any]
    episode: Episode | None = None
    q_value: float = 1.0


@dataclass
class _Sample:
    """The requests of one cohort in one comparison window, split by stratum."""

    frame: pl.DataFrame
    keys: list[tuple[str, ...]]
    parts: dict[tuple[str, ...], pl.DataFrame] = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pl.DataFrame, strata: list[str]) -> _Sample:
        parts = {
            tuple(str(k) for k in key): part
            for key, part in frame.partition_by(strata, as_dict=True).items()
        }
        return cls(frame, sorted(parts), parts)


def _bins(values: np.ndarray) -> np.ndarray:
    positive = values[values > 0]
    lo = float(positive.min()) if len(positive) else 1e-3
    hi = float(values.max()) if len(values) else 1.0
    hi = max(hi, lo * 1.01)
    return np.concatenate([[0.0], np.geomspace(lo * 0.999, hi * 1.001, 3000)])


def _column(frame: pl.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask): the metric's non-null values and which rows they came from."""
    if metric == "error_rate":
        expr = pl.col("final_status") == "failure"
    elif metric.startswith("error_rate."):
        expr = pl.col("error_code") == metric.removeprefix("error_rate.")
    elif metric == "degraded_rate":
        expr = pl.col("final_status") == "degraded"
    elif metric == "blocked_rate":
        expr = pl.col("final_status") == "blocked"
    else:
        column = frame[metric].cast(pl.Float64)
        keep = column.is_not_null()
        if metric in LATENCY_METRICS:
            keep = keep & (frame["final_status"] == "success").fill_null(False)
        return column.filter(keep).to_numpy(), keep.to_numpy()
    values = frame.select(expr.fill_null(False).cast(pl.Float64)).to_series().to_numpy()
    return values, np.ones(len(values), dtype=bool)


@dataclass
class _Settings:
    alpha: float
    min_effect: float
    min_rate_delta: float
    min_n: int
    min_stratum: int
    replicates: int
    seed: int


def _families(metrics: Iterable[str]) -> dict[str, list[str]]:
    """Metrics grouped by the column they read: ``latency_ms`` -> mean, p50, p95, p99."""
    out: dict[str, list[str]] = {}
    for metric in metrics:
        stat = metric.partition(".")[0]
        column = metric if stat == "error_rate" else stat
        out.setdefault(column, []).append(metric)
    return out


_Columns = dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]]


def _compare(
    base: _Sample,
    cand: _Sample,
    metrics: Iterable[str],
    settings: _Settings,
    rng: np.random.Generator,
    context: dict[str, Any],
) -> list[_Test]:
    """Every metric's test of candidate against baseline, within the strata both have. One random
    grouping and one set of bootstrap draws per (cohort, stratum) serve every metric, so the
    metrics are resampled jointly and the draws are paid for once."""
    groups: dict[tuple[int, tuple[str, ...]], tuple[np.ndarray, int, np.ndarray]] = {}

    def prepared(side: int, key: tuple[str, ...], n: int) -> tuple[np.ndarray, int, np.ndarray]:
        if (side, key) not in groups:
            labels, k = group_labels(n, rng)
            draws = rng.poisson(1.0, size=(settings.replicates, k)).astype(np.float64)
            groups[(side, key)] = (labels, k, draws)
        return groups[(side, key)]

    tests = []
    for column, names in _families(metrics).items():
        base_cols: _Columns = {k: _column(p, column) for k, p in base.parts.items()}
        cand_cols: _Columns = {k: _column(p, column) for k, p in cand.parts.items()}
        common = [
            k
            for k in base.keys
            if k in cand_cols
            and len(base_cols[k][0]) >= settings.min_stratum
            and len(cand_cols[k][0]) >= settings.min_stratum
        ]
        n_b = sum(len(base_cols[k][0]) for k in common)
        n_c = sum(len(cand_cols[k][0]) for k in common)
        if n_b < settings.min_n or n_c < settings.min_n:
            continue
        weights = np.array([len(base_cols[k][0]) for k in common], dtype=np.float64) / n_b
        all_b = np.concatenate([base_cols[k][0] for k in common])
        all_c = np.concatenate([cand_cols[k][0] for k in common])
        rate = column.endswith("_rate") or column.startswith("error_rate.")
        if rate and all_b.sum() == 0 and all_c.sum() == 0:
            continue
        if not rate and all_b.mean() <= 0 and all_c.mean() <= 0:
            continue  # a metric this data does not have (no tools, no queue)
        floor = 0.5 / min(n_b, n_c) if rate else 0.0
        # a quantile needs ~10 observations beyond it on each side to be worth testing
        quantiles = [
            q
            for m in names
            if ".p" in m and min(n_b, n_c) * (1 - (q := int(m.rpartition(".p")[2]) / 100)) >= 10
        ]
        names = [m for m in names if ".p" not in m or int(m.rpartition(".p")[2]) / 100 in quantiles]
        bins = _bins(np.concatenate([all_b, all_c])) if quantiles else None

        def cells(
            side: int,
            cols: _Columns,
            parts: dict[tuple[str, ...], pl.DataFrame],
            common: list[tuple[str, ...]] = common,
            bins: np.ndarray | None = bins,
        ) -> tuple[list[GroupSums], list[np.ndarray]]:
            out, draws = [], []
            for k in common:
                values, mask = cols[k]
                labels, n_groups, w = prepared(side, k, parts[k].height)
                out.append(GroupSums.of(values, labels=labels[mask], k=n_groups, bins=bins))
                draws.append(w)
            return out, draws

        base_cells, base_draws = cells(0, base_cols, base.parts)
        cand_cells, cand_draws = cells(1, cand_cols, cand.parts)
        results: list[tuple[str, Ratio, float | None]] = []
        mean_names = [m for m in names if ".p" not in m]
        if mean_names:
            (ratio,) = bootstrap_ratios(
                base_cells, cand_cells, weights, (base_draws, cand_draws), floor=floor
            )
            results.append((mean_names[0], ratio, None))
        if quantiles:
            ratios = bootstrap_ratios(
                base_cells,
                cand_cells,
                weights,
                (base_draws, cand_draws),
                quantiles=quantiles,
                bins=bins,
            )
            for q, ratio in zip(quantiles, ratios, strict=True):
                results.append((f"{column}.p{round(q * 100)}", ratio, q))
        for metric, ratio, quantile in results:
            rate_delta = None
            if rate:
                p = cmh_p_value(
                    [float(cand_cols[k][0].sum()) for k in common],
                    [float(len(cand_cols[k][0])) for k in common],
                    [float(base_cols[k][0].sum()) for k in common],
                    [float(len(base_cols[k][0])) for k in common],
                )
                ratio = replace(ratio, p_value=p)
                rate_delta = ratio.candidate - ratio.baseline
            tests.append(
                _Test(
                    metric=metric,
                    baseline=context["baseline"],
                    candidate=context["candidate"],
                    ratio=ratio,
                    naive=_naive(all_b, all_c, quantile, floor),
                    n_baseline=n_b,
                    n_candidate=n_c,
                    strata=common,
                    rate_delta=rate_delta,
                    context=context,
                )
            )
    return tests


def _naive(base: np.ndarray, cand: np.ndarray, quantile: float | None, floor: float) -> float:
    if quantile is None:
        b, c = max(float(base.mean()), floor), max(float(cand.mean()), floor)
    else:
        b, c = float(np.quantile(base, quantile)), float(np.quantile(cand, quantile))
    return c / b if b > 0 else math.inf


def _metric_names(frame: pl.DataFrame, min_code_count: int) -> list[str]:
    names = [f"{m}.mean" for m in MEAN_METRICS]
    names += [f"{m}.p{int(q * 100)}" for m, qs in QUANTILE_METRICS.items() for q in qs]
    names += list(RATE_METRICS)
    codes = (
        frame.filter(pl.col("final_status") != "success")
        .group_by("error_code")
        .len()
        .filter(pl.col("error_code").is_not_null() & (pl.col("len") >= min_code_count))
    )
    if codes.height >= 2:  # with one code its rate is the error rate again: a duplicate test
        names += [f"error_rate.{c}" for c in sorted(str(c) for c in codes["error_code"].to_list())]
    return names


# ---------------------------------------------------------------------------------------------
# 5. external shifts


@dataclass(frozen=True)
class _ChangePoint:
    cohort: str
    metric: str
    at_ns: int
    before: tuple[int, int]
    after: tuple[int, int]


def _change_points(
    frame: pl.DataFrame,
    strata: list[str],
    settings: _Settings,
    *,
    buckets: int = 120,
) -> list[_ChangePoint]:
    """Candidate shifts in each cohort's own series of each watched metric, the stratum means
    taken out (a mix shift moves no residual), proposed by PELT on time-bucket means."""
    found: list[_ChangePoint] = []
    if frame.height < 2 * settings.min_n:
        return found
    t0, t1 = _bounds(frame)
    width = max((t1 - t0) // buckets + 1, 1)
    for (cohort,), part in frame.partition_by("version_set_id", as_dict=True).items():
        if part.height < 4 * settings.min_n:
            continue
        for metric in EXTERNAL_METRICS:
            rows = (
                part.filter(pl.col("final_status") == "success")
                if metric in LATENCY_METRICS
                else part
            )
            # means on the log scale (multiplicative effects); a rate as the failure share
            y = (
                (pl.col("final_status") == "failure").fill_null(False).cast(pl.Float64)
                if metric == "error_rate"
                else pl.col(metric).cast(pl.Float64).log()
            )
            values = rows.select(
                pl.col("start").dt.epoch("ns").alias("t"), y.alias("y"), *strata
            ).filter(pl.col("y").is_finite())
            if values.height < 4 * settings.min_n:
                continue
            values = values.with_columns(
                r=pl.col("y") - pl.col("y").mean().over(strata), b=(pl.col("t") - t0) // width
            )
            sigma2 = float(np.var(values["r"].to_numpy()))
            if sigma2 <= 0:
                continue
            series = (
                values.group_by("b")
                .agg(pl.col("r").mean(), pl.len().alias("n"), pl.col("t").min().alias("t"))
                .sort("b")
                .filter(pl.col("n") >= 3)
            )
            if series.height < 6:
                continue
            means = series["r"].to_numpy()
            weights = series["n"].to_numpy().astype(np.float64) / sigma2
            penalty = 4.0 * math.log(series.height) + 10.0
            points = pelt(means, weights, penalty, min_size=3)
            edges = [0, *points, series.height]
            starts = series["t"].to_numpy()
            for j, cut in enumerate(points):
                seg_b = means[edges[j] : cut]
                seg_a = means[cut : edges[j + 2]]
                wb, wa = weights[edges[j] : cut], weights[cut : edges[j + 2]]
                shift = float(np.average(seg_a, weights=wa) - np.average(seg_b, weights=wb))
                small = (
                    settings.min_rate_delta * 0.5
                    if metric == "error_rate"
                    else math.log1p(settings.min_effect) * 0.5
                )
                if abs(shift) < small:
                    continue
                lo_t = int(starts[edges[j]])
                cut_t = int(starts[cut])
                hi_t = int(starts[edges[j + 2] - 1]) + width
                found.append(_ChangePoint(str(cohort), metric, cut_t, (lo_t, cut_t), (cut_t, hi_t)))
    return found


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Attribution:
    """What :func:`attribute` found: findings, the cohorts and episodes behind them, the cost
    decomposition, and every test it ran (``tests``, for the curious and for benchmarks)."""

    findings: list[Finding]
    cohorts: dict[str, Cohort]
    episodes: list[Episode]
    timeline: pl.DataFrame
    """Traffic share of each version_set per route and time bucket (about 48 buckets)."""
    cost_decomposition: dict[str, Any]
    tests: list[dict[str, Any]]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of DESIGN.md (``findings``, ``cost_decomposition``) plus the cohorts
        and episodes the findings rest on."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "cost_decomposition": self.cost_decomposition,
            "cohorts": [c.to_dict() for c in self.cohorts.values()],
            "episodes": [e.to_dict() for e in self.episodes],
            "timeline": [
                {**row, "time": row["time"].isoformat()}
                for row in self.timeline.iter_rows(named=True)
            ],
            "settings": self.settings,
        }

    def to_polars(self) -> pl.DataFrame:
        """The findings as a table (one row per finding)."""
        rows = [f.to_dict() for f in self.findings]
        if not rows:
            return pl.DataFrame(schema={"metric": pl.String, "verdict": pl.String})
        return pl.DataFrame(
            [
                {
                    **{k: v for k, v in r.items() if k not in ("ci", "scope", "components")},
                    "components": ",".join(r["components"]),
                    "ci_lo": r["ci"][0],
                    "ci_hi": r["ci"][1],
                    "routes": ",".join(r["scope"].get("routes", [])),
                }
                for r in rows
            ]
        )

    def __repr__(self) -> str:
        lines = [
            f"Attribution: {len(self.findings)} findings, {len(self.cohorts)} version_sets, "
            f"{len(self.episodes)} episodes, {len(self.tests)} tests"
        ]
        for f in self.findings[:20]:
            what = ",".join(f.components) or "-"
            lines.append(
                f"  {f.verdict:<11} {f.metric:<22} x{f.effect:.3f} "
                f"[{f.ci[0]:.3f}, {f.ci[1]:.3f}] naive x{f.naive_effect:.3f} "
                f"{f.baseline}->{f.candidate} ({what})"
            )
        if len(self.findings) > 20:
            lines.append(f"  ... {len(self.findings) - 20} more")
        return "\n".join(lines)


_STRATA_NAMES = {"tenant": "tenant_id", "model": "model", "route": "route"}


def _strata(frame: pl.DataFrame, strata: Sequence[str] | None) -> list[str]:
    if strata:
        chosen = []
        for name in strata:
            column = _STRATA_NAMES.get(name, name)
            if column not in frame.columns and f"version.{name}" in frame.columns:
                column = f"version.{name}"
            if column not in frame.columns:
                known = [
                    "route",
                    "tenant",
                    "model",
                    *sorted(
                        c.removeprefix("version.")
                        for c in frame.columns
                        if c.startswith("version.")
                    ),
                ]
                names = ", ".join(dict.fromkeys(known))
                raise ValueError(f"cannot stratify by {name!r}; known: {names}")
            chosen.append(column)
        return chosen
    chosen = ["route"]
    tenants = frame["tenant_id"].n_unique()
    if 1 < tenants <= 12:
        chosen.append("tenant_id")
    return chosen


def _timeline(frame: pl.DataFrame, buckets: int = 48) -> pl.DataFrame:
    """Each version_set's share of its route's requests per time bucket."""
    if frame.is_empty():
        return pl.DataFrame(
            schema={
                "time": pl.Datetime("ns", "UTC"),
                "route": pl.String,
                "version_set_id": pl.String,
            }
        )
    t0, t1 = _bounds(frame)
    width = max((t1 - t0) // buckets // _NS, 1)
    return (
        frame.group_by(
            pl.col("start").dt.truncate(f"{width}s").alias("time"),
            pl.col("route").cast(pl.String),
            pl.col("version_set_id").cast(pl.String),
        )
        .agg(requests=pl.len())
        .with_columns(share=pl.col("requests") / pl.col("requests").sum().over("time", "route"))
        .sort("time", "route", "version_set_id")
    )


def _utc(when: datetime) -> datetime:
    """A naive datetime means UTC (span times are UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _bounds(frame: pl.DataFrame) -> tuple[int, int]:
    """First and last request start, in ns since the epoch ((0, 0) when empty)."""
    if frame.is_empty():
        return 0, 0
    t = frame["start"].dt.epoch("ns").to_numpy()
    return int(t.min()), int(t.max())


def _window(frame: pl.DataFrame, cohort: str, routes: list[str], lo: int, hi: int) -> pl.DataFrame:
    t = pl.col("start").dt.epoch("ns")
    return frame.filter(
        (pl.col("version_set_id") == cohort) & pl.col("route").is_in(routes) & (t >= lo) & (t < hi)
    )


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
    cost_windows: tuple[tuple[datetime, datetime], tuple[datetime, datetime]] | None = None,
    requests: pl.DataFrame | None = None,
) -> Attribution:
    """Attribute regressions and improvements in ``spans`` (the span table, e.g.
    :func:`analyze.load`) to version_set changes and their components; see the module docstring.

    ``strata`` defaults to the route, plus the tenant when there are at most 12 tenants.
    ``requests`` is :func:`request_table` of ``spans`` when the caller has it already (the
    roll-up is most of the run's time on a large dataset)."""
    from .costs import decompose

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    if min_effect < 0:
        raise ValueError(f"min_effect must be 0 or more, not {min_effect}")
    lazy = spans.lazy() if isinstance(spans, pl.DataFrame) else spans
    frame = requests if requests is not None else request_table(lazy)
    if since is not None:
        frame = frame.filter(pl.col("start") >= _utc(since))
    if until is not None:
        frame = frame.filter(pl.col("start") < _utc(until))
    if cost_windows is not None:
        (b0, b1), (a0, a1) = cost_windows
        cost_windows = ((_utc(b0), _utc(b1)), (_utc(a0), _utc(a1)))
    settings = _Settings(alpha, min_effect, min_rate_delta, min_n, 5, replicates, seed)
    rng = np.random.default_rng(seed)
    versions = sorted(c for c in frame.columns if c.startswith("version."))
    cohorts = _cohorts(frame, versions)
    episodes = _episodes(frame, cohorts)
    chosen = _strata(frame, strata)
    metrics = _metric_names(frame, max(10, min_n // 3))
    changes = _change_points(frame, chosen, settings)

    tests: list[_Test] = []
    first_seen_on_route = {
        (r["route"], r["version_set_id"]): int(r["first"])
        for r in frame.group_by("route", "version_set_id")
        .agg(pl.col("start").min().dt.epoch("ns").alias("first"))
        .iter_rows(named=True)
    }
    t_begin, t_last = _bounds(frame)
    t_end = t_last + 1
    for episode in episodes:
        at = int(episode.at.timestamp() * _NS)
        if episode.kind != "rollback":  # a rollback's candidate was first seen long before
            at = min(first_seen_on_route.get((r, episode.candidate), at) for r in episode.routes)
        tests += _episode_tests(
            frame, episode, at, (t_begin, t_end), changes, chosen, metrics, settings, rng
        )
    tests += _external_tests(frame, changes, first_seen_on_route, chosen, settings, rng)

    q = bh_adjust([t.ratio.p_value for t in tests])
    for test, qv in zip(tests, q, strict=True):
        test.q_value = qv
    significant = [t for t in tests if _passes(t, settings)]
    findings = [_finding(t, significant, chosen, min_effect) for t in significant]
    findings.sort(key=lambda f: (f.verdict == "external", f.q_value, -abs(math.log(f.effect or 1))))
    cost = decompose(frame, windows=cost_windows, strata=["route"], cohorts=cohorts)
    return Attribution(
        findings=findings,
        cohorts=cohorts,
        episodes=episodes,
        timeline=_timeline(frame),
        cost_decomposition=cost,
        tests=[_test_dict(t) for t in tests],
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


def _episode_tests(
    frame: pl.DataFrame,
    episode: Episode,
    at: int,
    bounds: tuple[int, int],
    changes: list[_ChangePoint],
    strata: list[str],
    metrics: list[str],
    settings: _Settings,
    rng: np.random.Generator,
) -> list[_Test]:
    """Concurrent comparison when both cohorts ran side by side long enough; else before/after
    the episode, inside the segment no detected change point crosses."""
    routes = episode.routes
    concurrent = episode.kind in ("canary", "ab")
    if concurrent:
        base_after = _window(frame, episode.baseline, routes, at, bounds[1])
        cand_after = _window(frame, episode.candidate, routes, at, bounds[1])
        # only the time both served: a canary that ended must not meet later drift alone
        end = min(_bounds(base_after)[1], _bounds(cand_after)[1]) + 1
        base = base_after.filter(pl.col("start").dt.epoch("ns") < end)
        cand = cand_after.filter(pl.col("start").dt.epoch("ns") < end)
        concurrent = min(base.height, cand.height) >= settings.min_n
        window = (at, end)
        mode = "concurrent"
    if not concurrent:
        # before/after: at most a quarter of the data on each side, and never across a change
        # point detected in either cohort's own series (drift the episode did not cause)
        span = max((bounds[1] - bounds[0]) // 4, 1)
        lo, hi = max(bounds[0], at - span), min(bounds[1], at + span)
        for cp in changes:
            if cp.cohort in (episode.baseline, episode.candidate):
                if cp.at_ns <= at:
                    lo = max(lo, cp.at_ns)
                else:
                    hi = min(hi, cp.at_ns)
        base = _window(frame, episode.baseline, routes, lo, at)
        cand = _window(frame, episode.candidate, routes, at, hi)
        window = (lo, hi)
        mode = "before_after"
    context = {
        "baseline": episode.baseline,
        "candidate": episode.candidate,
        "episode": episode.kind,
        "comparison": mode,
        "window": [_dt(window[0]).isoformat(), _dt(window[1]).isoformat()],
        "routes": routes,
    }
    tests = _compare(
        _Sample.of(base, strata), _Sample.of(cand, strata), metrics, settings, rng, context
    )
    for t in tests:
        t.episode = episode
    return tests


def _external_tests(
    frame: pl.DataFrame,
    changes: list[_ChangePoint],
    first_seen_on_route: dict[tuple[str, str], int],
    strata: list[str],
    settings: _Settings,
    rng: np.random.Generator,
) -> list[_Test]:
    """Before/after tests of each candidate shift within one cohort's own series. Another
    version_set appearing beside it cannot move this cohort's requests, so only a shift at the
    cohort's own start on a route (where its traffic begins, an edge of the series) is passed
    over."""
    tests = []
    for cp in changes:
        part = frame.filter(pl.col("version_set_id") == cp.cohort)
        routes = sorted(str(r) for r in part["route"].unique().to_list())
        tolerance = max((cp.after[1] - cp.before[0]) // 20, 1)
        if any(
            abs(t - cp.at_ns) <= tolerance
            for (route, vid), t in first_seen_on_route.items()
            if route in routes and vid == cp.cohort
        ):
            continue  # the cohort reaching another route: a mix edge, not a shift
        before = _window(frame, cp.cohort, routes, *cp.before)
        after = _window(frame, cp.cohort, routes, *cp.after)
        context = {
            "baseline": cp.cohort,
            "candidate": cp.cohort,
            "episode": "external",
            "comparison": "before_after",
            "window": [_dt(cp.before[0]).isoformat(), _dt(cp.after[1]).isoformat()],
            "since": _dt(cp.at_ns).isoformat(),
            "routes": routes,
        }
        tests += _compare(
            _Sample.of(before, strata),
            _Sample.of(after, strata),
            [cp.metric if cp.metric.endswith("_rate") else f"{cp.metric}.mean"],
            settings,
            rng,
            context,
        )
    return tests


def _passes(test: _Test, settings: _Settings) -> bool:
    r = test.ratio
    if test.q_value > settings.alpha or not math.isfinite(r.point):
        return False
    if r.point <= 0 or abs(math.log(r.point)) < math.log1p(settings.min_effect):
        return False
    if not (r.lo > 1 or r.hi < 1):
        return False
    return test.rate_delta is None or abs(test.rate_delta) >= settings.min_rate_delta


def _finding(
    test: _Test, significant: list[_Test], strata: list[str], min_effect: float
) -> Finding:
    r = test.ratio
    episode = test.episode
    scope: dict[str, Any] = {
        **_scope(test, strata, min_effect),
        "direction": "up" if r.point > 1 else "down",
        "all_routes": sorted(test.context["routes"]),
        "window": test.context["window"],
        "episode": test.context["episode"],
        "comparison": test.context["comparison"],
    }
    if episode is None:
        verdict, components = "external", []
        scope["since"] = test.context["since"]
    else:
        components = episode.components
        scope["changes"] = {k: list(v) for k, v in episode.changes.items()}
        verdict = "regression" if r.point > 1 else "improvement"
        if len(components) > 1:
            separated = _separate(test, significant)
            if separated:
                components = separated
                scope["separated_by_other_episodes"] = True
            else:
                verdict = "confounded"
    return Finding(
        metric=test.metric,
        baseline=test.baseline,
        candidate=test.candidate,
        components=components,
        verdict=verdict,
        effect=r.point,
        ci=(r.lo, r.hi),
        p_value=r.p_value,
        q_value=test.q_value,
        naive_effect=test.naive,
        scope=scope,
        n_baseline=test.n_baseline,
        n_candidate=test.n_candidate,
        baseline_value=r.baseline,
        candidate_value=r.candidate,
    )


_SCOPE_NAMES = {"route": "routes", "tenant_id": "tenants"}


def _scope(test: _Test, strata: list[str], min_effect: float) -> dict[str, list[str]]:
    """The segments (routes, tenants, ...) whose strata carry the effect: same direction,
    interval (Bonferroni over the strata) clear of 1, at least ``min_effect`` in size. When no
    single stratum is clear on its own, all of them are listed."""
    r = test.ratio
    up = r.point > 1
    carried = [
        key
        for key, point, lo, hi in zip(
            test.strata, r.stratum_points, r.stratum_lo, r.stratum_hi, strict=True
        )
        if ((up and lo > 1 and point > 1) or (not up and hi < 1 and 0 < point < 1))
        and abs(math.log(point)) >= math.log1p(min_effect)
    ] or test.strata
    return {
        _SCOPE_NAMES.get(column, f"{column}s"): sorted({key[i] for key in carried})
        for i, column in enumerate(strata)
    }


def _separate(test: _Test, significant: list[_Test]) -> list[str]:
    """Components of a co-released pair that other episodes changed alone (same values) with a
    significant effect on the same metric in the same direction."""
    episode = test.episode
    assert episode is not None
    explained = []
    for component, change in episode.changes.items():
        for other in significant:
            e = other.episode
            if (
                e is not None
                and e is not episode
                and other.metric == test.metric
                and e.changes == {component: change}
                and set(e.routes) & set(episode.routes)
                and other.ratio.lo <= test.ratio.point <= other.ratio.hi  # explains all of it
            ):
                explained.append(component)
                break
    return explained if 0 < len(explained) < len(episode.changes) else []


def _test_dict(test: _Test) -> dict[str, Any]:
    return {
        "metric": test.metric,
        "baseline": test.baseline,
        "candidate": test.candidate,
        "episode": test.context["episode"],
        "components": test.episode.components if test.episode is not None else [],
        "effect": _finite(test.ratio.point),
        "ci": [_finite(test.ratio.lo), _finite(test.ratio.hi)],
        "p_value": test.ratio.p_value,
        "q_value": test.q_value,
        "naive_effect": _finite(test.naive),
        "n_baseline": test.n_baseline,
        "n_candidate": test.n_candidate,
        "routes": test.context["routes"],
    }
