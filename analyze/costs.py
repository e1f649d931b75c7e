"""Cost spikes: the change in total cost between two windows, split exactly into volume, mix,
retries, tokens per call and price (LMDI-I), and the token and price terms tied to the version
components that moved on the routes where they arose.

Per stratum s (a route): ``cost_s = V * share_s * calls_per_request_s * tokens_per_call_s *
usd_per_token_s``, with V the window's request count. The LMDI terms of that product add up to the
stratum's change, and the strata's terms add up to the total change, to rounding. ``retries`` is
the LLM calls per request (retried and repeated calls); ``price`` is the blended cost per token, so
it also moves when the input/output token mix moves.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from .stats import lmdi

__all__ = ["TERMS", "decompose"]

TERMS = ("volume", "mix", "retries", "tokens_per_call", "price")


def _window_stats(
    frame: pl.DataFrame, strata: list[str]
) -> dict[tuple[str, ...], dict[str, float]]:
    agg = frame.group_by(strata).agg(
        n=pl.len(),
        calls=pl.col("llm_calls").fill_null(0).sum(),
        tokens=(pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0)).sum(),
        cost=pl.col("cost_usd").fill_null(0.0).sum(),
    )
    return {
        tuple(str(row[c]) for c in strata): {
            k: float(row[k]) for k in ("n", "calls", "tokens", "cost")
        }
        for row in agg.iter_rows(named=True)
    }


def _factors(
    before: dict[str, float] | None, after: dict[str, float] | None, vb: float, va: float
) -> tuple[list[float], list[float]]:
    """(volume, share, calls/request, tokens/call, usd/token) for both windows, chosen so that
    each product is the window's cost exactly.

    Where a ratio is undefined in either window (no requests, no LLM calls, no tokens: cost
    reported without usage), that factor is 1 on both sides and the next factor absorbs it, so the
    change lands on the nearest term that is defined (usd per call instead of per token, say). A
    stratum with no requests in one window has share 0 there: the whole change is mix."""
    empty = {"n": 0.0, "calls": 0.0, "tokens": 0.0, "cost": 0.0}
    b, a = before or empty, after or empty
    if b["n"] == 0 or a["n"] == 0:

        def ends(stat: dict[str, float], total: float) -> list[float]:
            per_request = stat["cost"] / stat["n"] if stat["n"] else 1.0
            return [total, stat["n"] / total if total else 0.0, 1.0, 1.0, per_request]

        return ends(b, vb), ends(a, va)
    calls = b["calls"] > 0 and a["calls"] > 0
    tokens = calls and b["tokens"] > 0 and a["tokens"] > 0

    def factors(stat: dict[str, float], total: float) -> list[float]:
        per_call = stat["calls"] / stat["n"] if calls else 1.0
        per_token = stat["tokens"] / stat["calls"] if tokens else 1.0
        unit = stat["n"] * per_call * per_token
        return [total, stat["n"] / total, per_call, per_token, stat["cost"] / unit]

    return factors(b, vb), factors(a, va)


def _dominant(frame: pl.DataFrame, versions: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in versions:
        mode = frame[v].drop_nulls().mode()
        out[v.removeprefix("version.")] = mode.sort()[0] if len(mode) else None
    return out


def decompose(
    frame: pl.DataFrame,
    *,
    windows: tuple[tuple[datetime, datetime], tuple[datetime, datetime]] | None = None,
    strata: list[str] | None = None,
    cohorts: Any = None,
) -> dict[str, Any]:
    """Decompose the cost change between ``windows`` (before, after; each ``[from, to)``) over
    the request table of :func:`analyze.attribute.request_table`. Default windows: the first and
    second half of the data's time range."""
    del cohorts  # the components come from the requests' own version columns
    strata = strata or ["route"]
    if frame.is_empty():
        return {"terms": dict.fromkeys(TERMS, 0.0), "change_usd": 0.0, "drivers": {}}
    (b0, b1), (a0, a1) = windows or _halves(frame)
    before = frame.filter((pl.col("start") >= b0) & (pl.col("start") < b1))
    after = frame.filter((pl.col("start") >= a0) & (pl.col("start") < a1))
    sb, sa = _window_stats(before, strata), _window_stats(after, strata)
    vb, va = float(before.height), float(after.height)
    versions = sorted(c for c in frame.columns if c.startswith("version."))
    totals = dict.fromkeys(TERMS, 0.0)
    rows = []
    drivers: dict[str, dict[str, dict[str, Any]]] = {"tokens_per_call": {}, "price": {}}
    for key in sorted(set(sb) | set(sa)):
        row = _stratum_row(dict(zip(strata, key, strict=True)), sb.get(key), sa.get(key), vb, va)
        if row is None:
            continue
        rows.append(row)
        for name in TERMS:
            totals[name] += row[name]
        if versions:
            moved = _moved(before, after, row["stratum"], versions)
            _add_drivers(drivers, row, moved)
    change = sum(float(r["cost_after"]) - float(r["cost_before"]) for r in rows)
    return {
        "before": _window_summary(b0, b1, vb, sb),
        "after": _window_summary(a0, a1, va, sa),
        "change_usd": change,
        "terms": totals,
        "residual_usd": change - sum(totals.values()),
        "strata": rows,
        "drivers": {
            term: sorted(entries.values(), key=lambda e: -abs(e["usd"]))
            for term, entries in drivers.items()
        },
    }


def _halves(frame: pl.DataFrame) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The first and second half of the data's time range (the second includes the last request)."""
    t0, t1 = frame["start"].min(), frame["start"].max()
    if not isinstance(t0, datetime) or not isinstance(t1, datetime):
        raise TypeError("start must be a datetime column")
    mid = t0 + (t1 - t0) / 2
    return (t0, mid), (mid, t1 + timedelta(microseconds=1))


def _stratum_row(
    stratum: dict[str, str],
    before: dict[str, float] | None,
    after: dict[str, float] | None,
    vb: float,
    va: float,
) -> dict[str, Any] | None:
    """One stratum's costs and LMDI terms; None when it cost nothing in either window."""
    c0 = (before or {}).get("cost", 0.0)
    c1 = (after or {}).get("cost", 0.0)
    if c0 == 0 and c1 == 0:
        return None
    fb, fa = _factors(before, after, vb, va)
    row: dict[str, Any] = {"stratum": stratum, "cost_before": c0, "cost_after": c1}
    row.update(dict(zip(TERMS, lmdi(fb, fa), strict=True)))
    return row


def _moved(
    before: pl.DataFrame, after: pl.DataFrame, stratum: dict[str, str], versions: list[str]
) -> dict[str, list[str | None]]:
    """The components whose dominant value in the stratum moved between the windows."""
    mask = pl.all_horizontal([pl.col(c) == v for c, v in stratum.items()])
    dom_b = _dominant(before.filter(mask), versions)
    dom_a = _dominant(after.filter(mask), versions)
    return {k: [dom_b[k], dom_a[k]] for k in dom_b if dom_b[k] != dom_a[k]}


def _add_drivers(
    drivers: dict[str, dict[str, dict[str, Any]]],
    row: dict[str, Any],
    moved: dict[str, list[str | None]],
) -> None:
    """Credit the stratum's token and price terms to the components that moved there."""
    label = ",".join(sorted(moved)) if moved else "(no version change)"
    for term in ("tokens_per_call", "price"):
        entry = drivers[term].setdefault(
            label,
            {"components": sorted(moved), "changes": moved, "usd": 0.0, "strata": []},
        )
        entry["usd"] += row[term]
        entry["strata"].append(row["stratum"])


def _window_summary(
    start: datetime, end: datetime, n: float, stats: dict[tuple[str, ...], dict[str, float]]
) -> dict[str, Any]:
    """A window's bounds, requests and cost. The cost is summed exactly (``fsum``): the strata
    come in group-by order, which varies between runs, and a plain sum's last digit with it."""
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "requests": int(n),
        "cost_usd": math.fsum(s["cost"] for s in stats.values()),
    }
