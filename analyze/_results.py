"""What attribution returns: the cohorts (version_sets) and episodes it read from the traffic,
the findings, and the :class:`Attribution` that holds them with its JSON (``to_dict``), table
(``to_polars``) and text (``repr``) views."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

__all__ = ["Attribution", "Cohort", "Episode", "Finding", "finite"]


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
    services: tuple[str, ...] = ()
    """The other services its requests crossed, whose components (``worker.code``) it names."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version_set": self.version_set,
            "components": dict(self.components),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "requests": self.requests,
            "routes": list(self.routes),
            "services": list(self.services),
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
    comparison: dict[str, Any] = field(default_factory=dict)
    """How the episode was compared: ``mode`` (concurrent or before_after), ``window``,
    ``adjusted_for`` (covariates balanced), ``coverage`` (share of the candidate's requests
    compared), ``inconclusive`` (no like traffic on both sides to compare) and its ``reason``."""
    mde: dict[str, float] = field(default_factory=dict)
    """Per compared metric, the minimum detectable effect (relative, 80% power at a two-sided 5%
    level): what a metric with no finding rules out."""

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
            "comparison": dict(self.comparison),
            "mde": {k: finite(v) for k, v in self.mde.items()},
        }


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
    mde: float = math.nan
    """The minimum detectable effect of the test behind the finding (relative change)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "components": list(self.components),
            "verdict": self.verdict,
            "effect": finite(self.effect),
            "ci": [finite(self.ci[0]), finite(self.ci[1])],
            "p_value": self.p_value,
            "q_value": self.q_value,
            "naive_effect": finite(self.naive_effect),
            "scope": self.scope,
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "baseline_value": finite(self.baseline_value),
            "candidate_value": finite(self.candidate_value),
            "mde": finite(self.mde),
        }


def finite(x: float) -> float:
    """JSON has no inf/nan: clamp to a large finite value (a rate from 0 is floored already)."""
    if math.isnan(x):
        return 0.0
    return max(min(x, 1e12), -1e12)


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
                f"[{f.ci[0]:.3f}, {f.ci[1]:.3f}] mde {f.mde:.1%} naive x{f.naive_effect:.3f} "
                f"{f.baseline}->{f.candidate} ({what})"
            )
        if len(self.findings) > 20:
            lines.append(f"  ... {len(self.findings) - 20} more")
        return "\n".join(lines)
