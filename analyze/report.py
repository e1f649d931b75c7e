"""Cost and latency by version_set, model, route, tenant or time bucket: the table a team looks at
before asking "why". One row per group of requests (root spans, see :func:`analyze.requests`):
counts, latency quantiles (total, TTFT, time per output token), tool and queue time, tokens and cost
per request, total cost, error rate overall and by code, and final-status shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import polars.selectors as cs

from ._money import usd
from ._requests import traffic

if TYPE_CHECKING:
    from .engine import Inputs

__all__ = ["GROUPINGS", "Report", "report"]

GROUPINGS = {
    "version_set": ["version_set_id", "version_set"],
    "model": ["model"],
    "route": ["route"],
    "tenant": ["tenant_id"],
    "time": ["time"],
}
"""``--by`` names; any version component (``prompt``, ``model``...) works too."""

_QUANTILES = {"latency_ms": (50, 95, 99), "ttft_ms": (50, 95), "tpot_ms": (50,), "queue_ms": (95,)}


@dataclass
class Report:
    """A grouped cost and latency table; ``frame`` holds it, ``to_dict()`` is the JSON output."""

    frame: pl.DataFrame
    by: list[str]
    totals: dict[str, Any]

    def to_polars(self) -> pl.DataFrame:
        return self.frame

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for row in self.frame.iter_rows(named=True):
            codes = {
                k.removeprefix("error_rate."): v
                for k, v in row.items()
                if k.startswith("error_rate.") and v
            }
            plain = {
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in row.items()
                if not k.startswith("error_rate.")
            }
            rows.append({**plain, "error_rate_by_code": codes})
        return {"by": self.by, "rows": rows, "totals": self.totals}

    def __repr__(self) -> str:
        columns = [
            *self.by,
            "requests",
            "latency_ms.p50",
            "latency_ms.p95",
            "ttft_ms.p50",
            "cost_usd.mean",
            "cost_usd.total",
            "error_rate",
        ]
        shown = self.frame.select(
            [c for c in columns if c in self.frame.columns and c != "version_set"]
        ).with_columns(cs.float().round(4))
        money = [c for c in ("cost_usd.mean", "cost_usd.total") if c in shown.columns]
        shown = shown.with_columns(  # a small table: formatting it row by row costs nothing
            pl.Series(c, [usd(v) for v in self.frame[c].to_list()]) for c in money
        )
        with pl.Config(tbl_rows=30, tbl_cols=12, fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
            apart = self.totals.get("apart") or {}
            note = f" ({apart['traces']} traces apart: no traffic)" if apart.get("traces") else ""
            return (
                f"Report by {', '.join(self.by)}: {self.totals['requests']} requests, "
                f"{usd(self.totals['cost_usd'])}{note}\n{shown}"
            )


def _group_columns(by: Sequence[str], frame: pl.DataFrame) -> list[str]:
    out: list[str] = []
    for name in by:
        if name in GROUPINGS:
            out += GROUPINGS[name]
        elif f"version.{name}" in frame.columns:
            out.append(f"version.{name}")
        elif name in frame.columns:
            out.append(name)
        else:
            known = sorted(
                set(GROUPINGS)
                | {c.removeprefix("version.") for c in frame.columns if c.startswith("version.")}
            )
            raise ValueError(f"cannot group by {name!r}; known: {', '.join(known)}")
    return out


def report(
    spans: pl.LazyFrame | pl.DataFrame | Inputs,
    by: Sequence[str] = ("version_set",),
    *,
    bucket: str = "1h",
    since: datetime | None = None,
    until: datetime | None = None,
    requests: pl.DataFrame | None = None,
    apart: dict[str, int] | None = None,
) -> Report:
    """Cost and latency of the requests in ``spans`` grouped ``by`` (see :data:`GROUPINGS`);
    ``bucket`` is the time bucket for ``time`` (a polars duration: ``15m``, ``1h``, ``1d``).
    ``spans`` as :func:`analyze.attribute` takes them: polars (rolled up in memory), or a
    dataset, Parquet file, DuckDB relation or Spark DataFrame (rolled up out of core).

    Traces that are no traffic (health checks, docs pages; docs/rollup.md) are not requests:
    ``totals["apart"]`` counts them by route (``apart`` when the caller rolled up already)."""
    if requests is None:
        if isinstance(spans, pl.LazyFrame | pl.DataFrame):
            rolled = traffic(spans.lazy())
        else:
            from .engine import traffic as engine_traffic

            rolled = engine_traffic(spans)
        frame, apart = rolled.requests, rolled.apart_summary()
    else:
        frame = requests
    if since is not None:
        frame = frame.filter(pl.col("start") >= since)
    if until is not None:
        frame = frame.filter(pl.col("start") < until)
    try:
        frame = frame.with_columns(time=pl.col("start").dt.truncate(bucket))
    except pl.exceptions.PolarsError:
        raise ValueError(f"--bucket {bucket!r} is not a duration like 15m, 1h or 1d") from None
    keys = _group_columns(by, frame)
    codes = sorted(
        c for c in frame["error_code"].drop_nulls().unique().to_list() if isinstance(c, str)
    )
    status = pl.col("final_status")
    aggs: list[pl.Expr] = [pl.len().alias("requests")]
    for metric, quantiles in _QUANTILES.items():
        aggs += [pl.col(metric).quantile(q / 100).alias(f"{metric}.p{q}") for q in quantiles]
    aggs += [
        pl.col("tool_ms").mean().alias("tool_ms.mean"),
        pl.col("queue_ms").mean().alias("queue_ms.mean"),
        pl.col("input_tokens").mean().alias("input_tokens.mean"),
        pl.col("output_tokens").mean().alias("output_tokens.mean"),
        pl.col("cost_usd").mean().alias("cost_usd.mean"),
        pl.col("cost_usd").sum().alias("cost_usd.total"),
        (status == "failure").mean().alias("error_rate"),
        *[
            (pl.col("error_code") == c).fill_null(False).mean().alias(f"error_rate.{c}")
            for c in codes
        ],
        *[
            (status == s).mean().alias(f"{s}_share")
            for s in ("success", "failure", "degraded", "blocked")
        ],
    ]
    table = frame.group_by(keys).agg(aggs).sort(keys, nulls_last=True)
    totals = {
        "requests": frame.height,
        "cost_usd": float(frame["cost_usd"].sum() or 0.0),
        "input_tokens": int(frame["input_tokens"].sum() or 0),
        "output_tokens": int(frame["output_tokens"].sum() or 0),
        "error_rate": float((frame["final_status"] == "failure").cast(pl.Float64).sum())
        / max(frame.height, 1),
        "apart": None  # not known: the caller rolled up and did not say
        if apart is None
        else {"traces": sum(apart.values()), "routes": dict(apart)},
    }
    return Report(table, keys, totals)
