"""Component attribution (step 4 of attribution): which tests are findings, and whom each blames.
One changed component is named; several are ``confounded`` unless other episodes changed some of
them alone with the same values and show the same effect; a shift with no episode is
``external``. The scope says which routes and tenants carry the effect."""

from __future__ import annotations

import math
from typing import Any

from ._compare import HypothesisTest, Settings
from ._results import Finding

__all__ = ["finding", "passes"]


def passes(test: HypothesisTest, settings: Settings) -> bool:
    """Significant after correction, clear of 1, and of practical size (a rate's also in
    absolute terms)."""
    r = test.ratio
    if test.q_value > settings.alpha or not math.isfinite(r.point):
        return False
    if r.point <= 0 or abs(math.log(r.point)) < math.log1p(settings.min_effect):
        return False
    if not (r.lo > 1 or r.hi < 1):
        return False
    return test.rate_delta is None or abs(test.rate_delta) >= settings.min_rate_delta


def finding(
    test: HypothesisTest, significant: list[HypothesisTest], strata: list[str], min_effect: float
) -> Finding:
    """The finding of a test that passes: its verdict, components and scope."""
    r = test.ratio
    episode = test.episode
    scope: dict[str, Any] = {
        **_scope(test, strata, min_effect),
        "direction": "up" if r.point > 1 else "down",
        "all_routes": sorted(test.context["routes"]),
        "window": test.context["window"],
        "episode": test.context["episode"],
        "comparison": test.context["comparison"],
        "adjusted_for": list(test.context.get("adjusted_for", [])),
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
        mde=r.mde,
    )


_SCOPE_NAMES = {"route": "routes", "tenant_id": "tenants"}


def _scope(test: HypothesisTest, strata: list[str], min_effect: float) -> dict[str, list[str]]:
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


def _separate(test: HypothesisTest, significant: list[HypothesisTest]) -> list[str]:
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
