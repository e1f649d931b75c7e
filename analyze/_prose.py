"""Findings and version_sets in words, for the pages people read: a version_set named by what
it changed (``prompt outline@v3 -> v4``, ``model claude-sonnet-4 canary``) rather than by its
id, the headline finding, and one sentence per finding."""

from __future__ import annotations

from ._money import usd
from ._results import Attribution, Finding

__all__ = ["describe_finding", "headline", "version_names"]

_KIND = {"canary": " canary", "ab": " A/B", "rollback": " rollback", "cutover": ""}


def _change(name: str, old: str | None, new: str | None, kind: str) -> str:
    if kind in ("canary", "ab"):
        return f"{name} {new or '-'}"
    if old and new and "@" in old and old.split("@")[0] == new.split("@")[0]:
        new = "v" + new.split("@", 1)[1].removeprefix("v")  # outline@v3 -> v4
    return f"{name} {old or '-'} -> {new or '-'}"


def version_names(attribution: Attribution | None) -> dict[str, str]:
    """Each version_set's readable name: what its episode changed from the version_set it took
    traffic from, and how (a canary, an A/B split, a rollback); the first one ``initial``. Names
    are unique (a short id is added to a repeated one)."""
    if attribution is None:
        return {}
    names: dict[str, str] = {}
    for episode in attribution.episodes:
        if episode.candidate in names:
            continue
        moved = "; ".join(_change(k, *v, episode.kind) for k, v in episode.changes.items())
        names[episode.candidate] = (moved or "no component change") + _KIND.get(episode.kind, "")
    ordered = sorted(attribution.cohorts.values(), key=lambda c: c.first_seen)
    for i, cohort in enumerate(ordered):
        names.setdefault(cohort.id, "initial" if i == 0 else f"version_set {cohort.id[:6]}")
    seen: dict[str, int] = {}
    for name in names.values():
        seen[name] = seen.get(name, 0) + 1
    return {k: (f"{v} ({k[:6]})" if seen[v] > 1 else v) for k, v in names.items()}


def headline(attribution: Attribution) -> Finding | None:
    """The finding to read first: the largest cost regression, else the first finding."""
    cost = [
        f
        for f in attribution.findings
        if f.metric == "cost_usd.mean" and f.verdict in ("regression", "confounded")
    ]
    if cost:
        return max(cost, key=lambda f: f.effect)
    return attribution.findings[0] if attribution.findings else None


def describe_finding(finding: Finding) -> str:
    """One sentence: ``prompt outline@v3 -> outline@v4 raised cost_usd.mean by 38% [+35%, +41%]
    ($0.0056 -> $0.0077 per request) on /v1/outline (regression)``."""
    changes: dict[str, list[str | None]] = finding.scope.get("changes", {})
    moved = "; ".join(
        f"{name} {old or '-'} -> {new or '-'}"
        for name, (old, new) in changes.items()
        if not finding.components or name in finding.components
    )
    pct, lo, hi = ((x - 1.0) * 100 for x in (finding.effect, *finding.ci))
    size = f"by {abs(pct):.0f}% [{lo:+.0f}%, {hi:+.0f}%]"
    if finding.metric.startswith("cost_usd"):
        size += f" ({usd(finding.baseline_value)} -> {usd(finding.candidate_value)} per request)"
    verb = "raised" if finding.effect > 1 else "lowered"
    routes = ", ".join(finding.scope.get("routes", []))
    where = f" on {routes}" if routes else ""
    if finding.verdict == "external":
        since = str(finding.scope.get("since", "?"))[:16].replace("T", " ")
        tenants = finding.scope.get("tenants", [])
        who = f" for {', '.join(tenants)}" if 0 < len(tenants) <= 3 else ""
        return (
            f"{finding.metric} shifted {size}{where}{who} from {since} UTC with no version "
            "change behind it (external)"
        )
    if finding.verdict == "confounded":
        return f"{moved} moved together and {verb} {finding.metric} {size}{where} (confounded)"
    return (
        f"{moved or 'the version change'} {verb} {finding.metric} {size}{where} ({finding.verdict})"
    )
