"""The request table attribution, reports and the HTML page read: one row per request with the
metrics compared, the lists of those metrics, and the time helpers every step of attribution
shares (bounds of a frame, one cohort's requests in a window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import polars as pl

from ._services import SERVICE_METRICS
from .table import requests

__all__ = [
    "EXTERNAL_METRICS",
    "LATENCY_METRICS",
    "MEAN_METRICS",
    "NS",
    "QUANTILE_METRICS",
    "RATE_METRICS",
    "UNVERSIONED",
    "Traffic",
    "bounds",
    "from_ns",
    "request_table",
    "services_in",
    "traffic",
    "utc",
    "window",
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

LATENCY_METRICS = frozenset(
    {"latency_ms", "ttft_ms", "tpot_ms", "tool_ms", "queue_ms", "service_ms"}
)
"""Compared over successful requests only: a degraded, blocked or failed answer is fast (or slow)
for reasons its own rate already reports. Tokens and cost count every request: they are the bill."""

EXTERNAL_METRICS = (*MEAN_METRICS, "error_rate")
"""Metrics watched for shifts no version change explains (provider drift, price changes)."""

UNVERSIONED = "unversioned"

SERVICE_SUFFIXES = tuple(f".{m}" for m in SERVICE_METRICS)
"""How the columns of another service on a request's path end (``worker.tool_ms``)."""

NS = 1_000_000_000
"""Nanoseconds per second: request starts are compared as ns since the epoch."""


@dataclass(frozen=True, slots=True)
class Traffic:
    """The request table and the traces kept apart from it (health checks, docs pages: no
    blameset span, no LLM call, and no version set or a probe route), one row per route."""

    requests: pl.DataFrame
    apart: pl.DataFrame

    def apart_summary(self) -> dict[str, int]:
        """Traces kept apart, by route (most first)."""
        return {str(r): int(n) for r, n in self.apart.iter_rows()}


def request_table(spans: pl.LazyFrame) -> pl.DataFrame:
    """One row per request (docs/rollup.md) with the metrics attribution compares, sorted by
    start; traces that are no traffic are left out (:func:`traffic` counts them).

    ``tpot_ms`` (time per output token) is the generation time of the request's streamed calls
    (LLM span time after the first token) over the output tokens of those calls; requests with
    no streamed call that produced tokens have none."""
    return traffic(spans).requests


def traffic(spans: pl.LazyFrame) -> Traffic:
    """The request table and the traces kept apart from it, from one roll-up."""
    rolled = requests(spans)
    names = rolled.collect_schema().names()
    versions = sorted(c for c in names if c.startswith("version."))
    per_service = [c for c in names if c.endswith(SERVICE_SUFFIXES)]
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
        "generation_tokens",
        "llm_model",
        "apart",
        *per_service,
    ]
    frame = (
        rolled.select(keep)
        .with_columns(
            model=pl.col("llm_model"),
            tpot_ms=pl.when(pl.col("generation_tokens") > 0).then(
                pl.col("generation_ms") / pl.col("generation_tokens")
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
        .drop("generation_ms", "generation_tokens", "llm_model", "name")
        .with_columns(pl.col(_label_columns(versions)).cast(pl.Categorical))
        .sort("start")
    ).collect(engine="streaming")
    apart = frame.get_column("apart")
    counted = frame.filter(~apart).drop("apart")
    kept_apart = (
        frame.filter(apart)
        .group_by(pl.col("route").cast(pl.String))
        .agg(traces=pl.len())
        .sort("traces", "route", descending=[True, False])
    )
    return Traffic(counted, kept_apart)


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


def services_in(frame: pl.DataFrame) -> list[str]:
    """The other services the request table has columns for (``worker`` of ``worker.tool_ms``),
    sorted: services below the requests' own, whose version sets joined theirs."""
    suffix = ".service_ms"
    return sorted(c.removesuffix(suffix) for c in frame.columns if c.endswith(suffix))


def from_ns(ns: int) -> datetime:
    """A time in ns since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(ns / NS, tz=UTC)


def utc(when: datetime) -> datetime:
    """A naive datetime means UTC (span times are UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def bounds(frame: pl.DataFrame) -> tuple[int, int]:
    """First and last request start, in ns since the epoch ((0, 0) when empty)."""
    if frame.is_empty():
        return 0, 0
    t = frame["start"].dt.epoch("ns").to_numpy()
    return int(t.min()), int(t.max())


_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


def window(frame: _Frame, cohort: str, routes: list[str], lo: int, hi: int) -> _Frame:
    """The requests of ``cohort`` on ``routes`` that started in ``[lo, hi)`` (ns)."""
    return frame.filter(in_window(cohort, routes, lo, hi))


def in_window(cohort: str, routes: list[str], lo: int, hi: int) -> pl.Expr:
    """Whether a request is ``cohort``'s, on ``routes``, and started in ``[lo, hi)`` (ns)."""
    t = pl.col("start").dt.epoch("ns")
    return (
        (pl.col("version_set_id") == cohort) & pl.col("route").is_in(routes) & (t >= lo) & (t < hi)
    )
