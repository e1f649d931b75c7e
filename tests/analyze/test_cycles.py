"""Attribution across a daily load cycle and a many-tenant mix shift (bench/scenarios.py): a
harmless cutover at the peak is no finding, a real one at the same moment is found, a config
rolled out to small tenants first is the improvement it is, and a comparison with no like hours
is inconclusive; every compared metric carries its minimum detectable effect."""

from __future__ import annotations

import json
from functools import cache

import pytest

from bench.scenarios import Rollout, Scenario, generate
from blameset.analyze import attribute
from blameset.analyze.attribute import Attribution

REQUESTS = 8000


@cache
def run(name: str, requests: int = REQUESTS) -> Attribution:
    return attribute(generate(name, requests, seed=3))


def named(result: Attribution) -> list[str]:
    return [f"{f.verdict} {f.metric}" for f in result.findings if f.components]


@pytest.mark.parametrize("name", ["daily_peak_null", "daily_trough_null", "weekly_null"])
def test_a_harmless_cutover_in_a_load_cycle_is_no_finding(name: str) -> None:
    """Latency +60% at the peak: compared at like hour and load, the deploy is blamed for none."""
    result = run(name)
    assert result.settings["load_cycle"]
    assert result.findings == []
    (episode,) = result.episodes
    assert episode.comparison["adjusted_for"] == ["clock"]


def test_a_real_regression_at_the_peak_is_still_found() -> None:
    """+25% time per output token at the start of the peak: named, its interval near 1.25."""
    result = run("daily_peak_regression")
    (tpot,) = [f for f in result.findings if f.metric == "tpot_ms.mean"]
    assert tpot.verdict == "regression" and tpot.components == ["code"]
    assert 1.18 < tpot.effect < 1.32
    assert 0 < tpot.mde < 0.1


def test_a_config_rolled_out_to_small_tenants_first_is_an_improvement() -> None:
    """-10% output tokens in each of 60 tenants, small long-output ones first: the improvement,
    no regression, though the pooled ratio says worse."""
    result = run("tenant_simpson", 20_000)  # -10% needs more than 8000 requests to be clear
    assert not [f for f in result.findings if f.verdict == "regression"]
    (tokens,) = [f for f in result.findings if f.metric == "output_tokens.mean"]
    assert tokens.verdict == "improvement" and tokens.components == ["config"]
    assert tokens.naive_effect > 1
    assert "tenant_id" in tokens.scope["adjusted_for"]


@pytest.mark.parametrize("name", ["tenant_rollout_null", "new_tenants_null"])
def test_a_harmless_change_with_a_tenant_mix_shift_is_no_finding(name: str) -> None:
    """Small tenants first, or new long-output tenants arriving with it: nothing named."""
    assert named(run(name)) == []


def test_a_cutover_with_no_like_hours_before_it_is_inconclusive() -> None:
    """One day of data, a cutover at noon: the night before meets no afternoon after, so the
    episode says inconclusive instead of comparing the night with the peak."""
    scenario = Scenario(
        "noon",
        rollouts=(Rollout({"code": "noon"}, 0.5),),
        days=1.0,
        daily=5.5,
        load_latency=0.6,
        null=True,
    )
    result = attribute(generate(scenario, REQUESTS, seed=3))
    assert named(result) == []
    (episode,) = result.episodes
    assert episode.comparison["inconclusive"]
    assert "hour and load" in episode.comparison["reason"]


def test_every_compared_metric_has_its_mde_in_the_json() -> None:
    """Findings and episodes carry the MDE: what a metric with no finding rules out."""
    document = json.loads(json.dumps(run("daily_peak_regression").to_dict()))
    assert all(f["mde"] > 0 for f in document["findings"])
    (episode,) = document["episodes"]
    assert episode["mde"]["output_tokens.mean"] > 0
    assert episode["comparison"]["mode"] == "before_after"
