"""Comparison within strata (step 3 of attribution): one cohort's requests against another's,
metric by metric, each stratum (route, tenant, ...) weighted by the baseline's mix so a traffic-mix
shift is not blamed on a version; a stratified bootstrap for means and quantiles, the
Cochran-Mantel-Haenszel test for rates, and the naive pooled ratio beside the adjusted one.

Covariates that moved between the samples beyond the strata (many tenants, the load level of a
before/after comparison across a cycle) are balanced inside each stratum by weights
(:mod:`analyze._balance`); a weighted comparison takes a rate's p-value from the bootstrap too,
since the CMH test counts requests unweighted."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from ._balance import rake
from ._requests import (
    LATENCY_METRICS,
    MEAN_METRICS,
    QUANTILE_METRICS,
    RATE_METRICS,
    services_in,
)
from ._results import Episode, finite
from .stats import GroupSums, Ratio, bootstrap_ratios, cmh_p_value, group_labels

__all__ = [
    "HypothesisTest",
    "Sample",
    "Settings",
    "balance_weights",
    "column_values",
    "compare",
    "metric_column",
    "metric_names",
    "sample_columns",
    "strata_columns",
]

_Key = tuple[str, ...]
_Columns = dict[_Key, tuple[np.ndarray, np.ndarray, np.ndarray | None]]
"""Per stratum: the metric's values, the rows they came from, and their balance weights (None:
all 1)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The thresholds of one run of attribution."""

    alpha: float
    min_effect: float
    min_rate_delta: float
    min_n: int
    min_stratum: int
    replicates: int
    seed: int


@dataclass
class HypothesisTest:
    """A test before multiple-testing correction."""

    metric: str
    baseline: str
    candidate: str
    ratio: Ratio
    naive: float
    n_baseline: int
    n_candidate: int
    strata: list[_Key]
    rate_delta: float | None
    context: dict[str, Any]
    episode: Episode | None = None
    q_value: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The test as ``Attribution.tests`` lists it."""
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "episode": self.context["episode"],
            "components": self.episode.components if self.episode is not None else [],
            "effect": finite(self.ratio.point),
            "ci": [finite(self.ratio.lo), finite(self.ratio.hi)],
            "p_value": self.ratio.p_value,
            "q_value": self.q_value,
            "naive_effect": finite(self.naive),
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "routes": self.context["routes"],
            "mde": finite(self.ratio.mde),
            "adjusted_for": list(self.context.get("adjusted_for", [])),
        }


@dataclass
class Sample:
    """The requests of one cohort in one comparison window, split by stratum: ``frame`` sorted
    by the strata (stably: each stratum's rows in their order), each part a slice of it.

    Made by :meth:`take`, ``frame`` holds only the labels (strata, covariates, status) and each
    metric's values are read from ``source`` (the request table) when that metric's turn comes,
    by the rows' numbers: a window of a cutover can hold half the data, and holding every metric
    column of both sides at once was the statistics' peak (1.2 GB at 30M spans)."""

    frame: pl.DataFrame
    keys: list[_Key]
    parts: dict[_Key, pl.DataFrame] = field(default_factory=dict)
    source: pl.DataFrame | None = None
    rows: pl.Series | None = None
    """``frame``'s rows' numbers in ``source``."""
    spans: dict[_Key, tuple[int, int]] = field(default_factory=dict)
    """Each stratum's (offset, length) in ``frame``."""

    @property
    def height(self) -> int:
        return self.frame.height

    @classmethod
    def of(cls, frame: pl.DataFrame | pl.LazyFrame, strata: list[str]) -> Sample:
        """The sample of all of ``frame``'s rows and columns."""
        return cls._split(frame.lazy().sort(strata, maintain_order=True, nulls_last=True), strata)

    @classmethod
    def take(
        cls, source: pl.DataFrame, where: pl.Expr, strata: list[str], labels: Sequence[str]
    ) -> Sample:
        """The sample of the rows of ``source`` ``where`` selects, holding the ``labels``
        columns (the strata among them) and reading any other column from ``source``."""
        picked = (
            source.lazy()
            .with_row_index("_row")
            .filter(where)
            .select("_row", *dict.fromkeys([*strata, *labels]))
            .sort(strata, maintain_order=True, nulls_last=True)
        )
        sample = cls._split(picked, strata)
        sample.rows = sample.frame.get_column("_row")
        sample.frame = sample.frame.drop("_row")
        sample.parts = {k: sample.frame.slice(*sample.spans[k]) for k in sample.keys}
        sample.source = source
        return sample

    @classmethod
    def _split(cls, ordered_lazy: pl.LazyFrame, strata: list[str]) -> Sample:
        ordered = ordered_lazy.collect()
        runs = (
            ordered.select(strata)
            .with_row_index("_at")
            .group_by(strata, maintain_order=True)
            .agg(pl.col("_at").first(), pl.len().alias("_n"))
        )
        spans = {
            tuple(str(k) for k in row[:-2]): (int(row[-2]), int(row[-1]))
            for row in runs.iter_rows()
        }
        parts = {k: ordered.slice(*span) for k, span in spans.items()}
        return cls(ordered, sorted(parts), parts, spans=spans)

    def column(self, key: _Key, name: str) -> pl.Series:
        """Column ``name`` of stratum ``key``'s rows."""
        part = self.parts[key]
        if name in part.columns or self.source is None or self.rows is None:
            return part.get_column(name)
        offset, length = self.spans[key]
        return self.source.get_column(name).gather(self.rows.slice(offset, length))


def sample_columns(
    available: Iterable[str], strata: Sequence[str], covariates: Sequence[str]
) -> list[str]:
    """The request-table columns a sample holds (of those ``available``): the strata, the
    covariates to balance and the status columns the rates and the success filter read. A
    metric's values are read from the table when it is compared (:meth:`Sample.column`)."""
    wanted = [*strata, *covariates, "final_status", "error_code"]
    have = set(available)
    return [c for c in dict.fromkeys(wanted) if c in have]


def _bins(values: np.ndarray) -> np.ndarray:
    positive = values[values > 0]
    lo = float(positive.min()) if len(positive) else 1e-3
    hi = float(values.max()) if len(values) else 1.0
    hi = max(hi, lo * 1.01)
    return np.concatenate([[0.0], np.geomspace(lo * 0.999, hi * 1.001, 3000)])


_RATE_FLAGS = {
    "error_rate": ("final_status", "failure"),
    "degraded_rate": ("final_status", "degraded"),
    "blocked_rate": ("final_status", "blocked"),
}


def column_values(
    frame: pl.DataFrame, metric: str, column: pl.Series | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask): the metric's non-null values among ``frame``'s rows and which rows they
    came from (a rate: 1.0 or 0.0 for every row; a latency: successful requests only).
    ``column``: the metric's column for those rows, when ``frame`` does not hold it."""
    if metric in _RATE_FLAGS or metric.startswith("error_rate."):
        name, level = _RATE_FLAGS.get(metric, ("error_code", metric.removeprefix("error_rate.")))
        flag = (pl.col(name) == level).fill_null(False).cast(pl.Float64)
        values = frame.select(flag).to_series().to_numpy()  # an all-null column has no type
        return values, np.ones(len(values), dtype=bool)
    series = (column if column is not None else frame.get_column(metric)).cast(pl.Float64)
    keep = series.is_not_null()
    if metric.rpartition(".")[2] in LATENCY_METRICS:  # worker.tool_ms too
        ok = frame.select((pl.col("final_status") == "success").fill_null(False)).to_series()
        keep = keep & ok
    return series.filter(keep).to_numpy(), keep.to_numpy()


def _column(sample: Sample, key: _Key, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`column_values` of one stratum of the sample."""
    part = sample.parts[key]
    if metric in _RATE_FLAGS or metric.startswith("error_rate.") or metric in part.columns:
        return column_values(part, metric)
    return column_values(part, metric, sample.column(key, metric))


def _families(metrics: Iterable[str]) -> dict[str, list[str]]:
    """Metrics grouped by the column they read: ``latency_ms`` -> mean, p50, p95, p99;
    ``worker.tool_ms.mean`` reads ``worker.tool_ms``; a rate reads its own name."""
    out: dict[str, list[str]] = {}
    for metric in metrics:
        out.setdefault(metric_column(metric), []).append(metric)
    return out


_STATISTIC = re.compile(r"\.(mean|p[0-9]+)$")


def metric_column(metric: str) -> str:
    """The request-table column a metric name reads (its statistic taken off)."""
    return _STATISTIC.sub("", metric)


class _Groups:
    """One random grouping and one set of Poisson(1) bootstrap draws per (side, stratum), made
    when first asked for and shared by every metric: the metrics are resampled jointly and the
    draws are paid for once."""

    def __init__(self, rng: np.random.Generator, replicates: int) -> None:
        self.rng = rng
        self.replicates = replicates
        self.made: dict[tuple[int, _Key], tuple[np.ndarray, int, np.ndarray]] = {}

    def get(self, side: int, key: _Key, n: int) -> tuple[np.ndarray, int, np.ndarray]:
        if (side, key) not in self.made:
            labels, k = group_labels(n, self.rng)
            draws = self.rng.poisson(1.0, size=(self.replicates, k)).astype(np.float64)
            self.made[(side, key)] = (labels, k, draws)
        return self.made[(side, key)]

    def cells(
        self, side: int, cols: _Columns, sample: Sample, common: list[_Key], bins: np.ndarray | None
    ) -> tuple[list[GroupSums], list[np.ndarray]]:
        """Each common stratum's values reduced to its groups, and the groups' draws."""
        out, draws = [], []
        for k in common:
            values, mask, weights = cols[k]
            labels, n_groups, w = self.get(side, k, sample.parts[k].height)
            out.append(
                GroupSums.of(values, labels=labels[mask], k=n_groups, bins=bins, weights=weights)
            )
            draws.append(w)
        return out, draws


@dataclass
class _Family:
    """One column's values on both sides, over the strata both have with enough rows, and the
    metrics of it (mean, quantiles) worth testing."""

    column: str
    names: list[str]
    common: list[_Key]
    base: _Columns
    cand: _Columns
    n_b: int
    n_c: int
    weights: np.ndarray
    all_b: np.ndarray
    all_c: np.ndarray
    rate: bool
    floor: float
    quantiles: list[float]
    bins: np.ndarray | None


_Weights = dict[_Key, np.ndarray]


def _columns(sample: Sample, column: str, weights: _Weights | None) -> _Columns:
    """The column's values in each stratum of the sample, with their rows' balance weights."""
    out: _Columns = {}
    for k in sample.parts:
        values, mask = _column(sample, k, column)
        w = None if weights is None or k not in weights else weights[k][mask]
        out[k] = (values, mask, w)
    return out


def _used(cols: _Columns, k: _Key) -> int:
    """Rows of the stratum that count (a balance weight of 0 drops a row)."""
    values, _, w = cols[k]
    return len(values) if w is None else int(np.count_nonzero(w))


def _family(
    column: str,
    names: list[str],
    base: Sample,
    cand: Sample,
    settings: Settings,
    balance: tuple[_Weights, _Weights] | None = None,
) -> _Family | None:
    """The column's comparison, or None when there is too little to compare or nothing there."""
    base_cols = _columns(base, column, None if balance is None else balance[0])
    cand_cols = _columns(cand, column, None if balance is None else balance[1])
    common = [
        k
        for k in base.keys
        if k in cand_cols
        and _used(base_cols, k) >= settings.min_stratum
        and _used(cand_cols, k) >= settings.min_stratum
    ]
    n_b = sum(_used(base_cols, k) for k in common)
    n_c = sum(_used(cand_cols, k) for k in common)
    if n_b < settings.min_n or n_c < settings.min_n:
        return None
    mass = [
        float(len(v)) if w is None else float(w.sum()) for v, _, w in (base_cols[k] for k in common)
    ]
    weights = np.array(mass, dtype=np.float64) / sum(mass)
    all_b = np.concatenate([base_cols[k][0] for k in common])
    all_c = np.concatenate([cand_cols[k][0] for k in common])
    rate = column.endswith("_rate") or column.startswith("error_rate.")
    if rate and all_b.sum() == 0 and all_c.sum() == 0:
        return None
    if not rate and all_b.mean() <= 0 and all_c.mean() <= 0:
        return None  # a metric this data does not have (no tools, no queue)
    floor = 0.5 / min(n_b, n_c) if rate else 0.0
    # a quantile needs ~10 observations beyond it on each side to be worth testing
    quantiles = [
        q
        for m in names
        if ".p" in m and min(n_b, n_c) * (1 - (q := int(m.rpartition(".p")[2]) / 100)) >= 10
    ]
    names = [m for m in names if ".p" not in m or int(m.rpartition(".p")[2]) / 100 in quantiles]
    bins = _bins(np.concatenate([all_b, all_c])) if quantiles else None
    return _Family(
        column=column,
        names=names,
        common=common,
        base=base_cols,
        cand=cand_cols,
        n_b=n_b,
        n_c=n_c,
        weights=weights,
        all_b=all_b,
        all_c=all_c,
        rate=rate,
        floor=floor,
        quantiles=quantiles,
        bins=bins,
    )


def balance_weights(
    base: Sample, cand: Sample, covariates: Sequence[str]
) -> tuple[_Weights, _Weights, float]:
    """Raked weights per stratum both samples have (:func:`analyze._balance.rake`), and the
    coverage: the share of the candidate's requests that keep a weight (the rest sit in strata or
    levels the baseline lacks)."""
    w_b: _Weights = {}
    w_c: _Weights = {}
    kept = 0
    for k in base.keys:
        if k not in cand.parts:
            continue
        if covariates:
            b, c = rake(
                [base.parts[k][x] for x in covariates], [cand.parts[k][x] for x in covariates]
            )
        else:
            b, c = np.ones(base.parts[k].height), np.ones(cand.parts[k].height)
        w_b[k], w_c[k] = b, c
        kept += int(np.count_nonzero(c))
    return w_b, w_c, kept / max(cand.height, 1)


def compare(
    base: Sample,
    cand: Sample,
    metrics: Iterable[str],
    settings: Settings,
    rng: np.random.Generator,
    context: dict[str, Any],
    balance: Sequence[str] = (),
) -> list[HypothesisTest]:
    """Every metric's test of candidate against baseline, within the strata both have, the
    ``balance`` covariates weighted onto the baseline's mix inside each. One random grouping and
    one set of bootstrap draws per (cohort, stratum) serve every metric, so the metrics are
    resampled jointly and the draws are paid for once. ``context`` gains ``adjusted_for`` and
    ``coverage`` (the share of the candidate's requests compared)."""
    groups = _Groups(rng, settings.replicates)
    w_b, w_c, coverage = balance_weights(base, cand, balance)
    context["adjusted_for"] = list(balance)
    context["coverage"] = coverage
    weights = (w_b, w_c) if balance else None
    tests = []
    for column, names in _families(metrics).items():
        family = _family(column, names, base, cand, settings, weights)
        if family is None:
            continue
        base_cells = groups.cells(0, family.base, base, family.common, family.bins)
        cand_cells = groups.cells(1, family.cand, cand, family.common, family.bins)
        for metric, ratio, quantile in _ratios(family, base_cells, cand_cells):
            tests.append(_test(family, metric, ratio, quantile, context))
    return tests


_Cells = tuple[list[GroupSums], list[np.ndarray]]


def _ratios(family: _Family, base: _Cells, cand: _Cells) -> list[tuple[str, Ratio, float | None]]:
    """The bootstrap ratio of the mean and of each quantile: (metric, ratio, quantile)."""
    (base_cells, base_draws), (cand_cells, cand_draws) = base, cand
    draws = (base_draws, cand_draws)
    results: list[tuple[str, Ratio, float | None]] = []
    mean_names = [m for m in family.names if ".p" not in m]
    if mean_names:
        (ratio,) = bootstrap_ratios(
            base_cells, cand_cells, family.weights, draws, floor=family.floor
        )
        results.append((mean_names[0], ratio, None))
    if family.quantiles:
        ratios = bootstrap_ratios(
            base_cells,
            cand_cells,
            family.weights,
            draws,
            quantiles=family.quantiles,
            bins=family.bins,
        )
        for q, ratio in zip(family.quantiles, ratios, strict=True):
            results.append((f"{family.column}.p{round(q * 100)}", ratio, q))
    return results


def _test(
    family: _Family,
    metric: str,
    ratio: Ratio,
    quantile: float | None,
    context: dict[str, Any],
) -> HypothesisTest:
    """One metric's test; a rate takes its p-value from the CMH test over the strata."""
    rate_delta = None
    if family.rate and not context.get("adjusted_for"):
        common, base, cand = family.common, family.base, family.cand
        p = cmh_p_value(
            [float(cand[k][0].sum()) for k in common],
            [float(len(cand[k][0])) for k in common],
            [float(base[k][0].sum()) for k in common],
            [float(len(base[k][0])) for k in common],
        )
        ratio = replace(ratio, p_value=p)
    if family.rate:
        rate_delta = ratio.candidate - ratio.baseline
    return HypothesisTest(
        metric=metric,
        baseline=context["baseline"],
        candidate=context["candidate"],
        ratio=ratio,
        naive=_naive(family.all_b, family.all_c, quantile, family.floor),
        n_baseline=family.n_b,
        n_candidate=family.n_c,
        strata=family.common,
        rate_delta=rate_delta,
        context=context,
    )


def _naive(base: np.ndarray, cand: np.ndarray, quantile: float | None, floor: float) -> float:
    """The pooled, unweighted ratio: what comparing by version alone would report."""
    if quantile is None:
        b, c = max(float(base.mean()), floor), max(float(cand.mean()), floor)
    else:
        b, c = float(np.quantile(base, quantile)), float(np.quantile(cand, quantile))
    return c / b if b > 0 else math.inf


def metric_names(frame: pl.DataFrame, min_code_count: int) -> list[str]:
    """Every metric a run tests: means, quantiles, rates, and the rate of each error code seen
    at least ``min_code_count`` times (when there are two codes or more)."""
    names = [f"{m}.mean" for m in MEAN_METRICS]
    names += [f"{m}.p{int(q * 100)}" for m, qs in QUANTILE_METRICS.items() for q in qs]
    names += list(RATE_METRICS)
    for service in services_in(frame):  # what each other service on the path did
        names += [f"{service}.service_ms.mean", f"{service}.tool_ms.mean"]
        names.append(f"{service}.error_rate")
    codes = (
        frame.filter(pl.col("final_status") != "success")
        .group_by("error_code")
        .len()
        .filter(pl.col("error_code").is_not_null() & (pl.col("len") >= min_code_count))
    )
    if codes.height >= 2:  # with one code its rate is the error rate again: a duplicate test
        names += [f"error_rate.{c}" for c in sorted(str(c) for c in codes["error_code"].to_list())]
    return names


_STRATA_NAMES = {"tenant": "tenant_id", "model": "model", "route": "route"}


def strata_columns(frame: pl.DataFrame, strata: Sequence[str] | None) -> list[str]:
    """The columns to stratify by: those named (``tenant``, ``model``, a version component, a
    column), or by default the route, plus the tenant when there are 2 to 12 tenants."""
    if strata:
        return [_stratum_column(frame, name) for name in strata]
    chosen = ["route"]
    tenants = frame["tenant_id"].n_unique()
    if 1 < tenants <= 12:
        chosen.append("tenant_id")
    return chosen


def _stratum_column(frame: pl.DataFrame, name: str) -> str:
    column = _STRATA_NAMES.get(name, name)
    if column not in frame.columns and f"version.{name}" in frame.columns:
        column = f"version.{name}"
    if column not in frame.columns:
        known = [
            "route",
            "tenant",
            "model",
            *sorted(c.removeprefix("version.") for c in frame.columns if c.startswith("version.")),
        ]
        names = ", ".join(dict.fromkeys(known))
        raise ValueError(f"cannot stratify by {name!r}; known: {names}")
    return column
