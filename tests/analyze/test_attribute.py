"""Attribution on seeded scenarios whose causes are known (bench/scenarios.py), the JSON contract,
and the cost decomposition attribution returns."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from functools import cache

import polars as pl
import pytest

from bench.scenarios import Drift, Rollout, Scenario, generate
from blameset.analyze import attribute
from blameset.analyze.attribute import Attribution

REQUESTS = 8000


@cache
def spans(name: str) -> pl.DataFrame:
    return generate(name, REQUESTS, seed=3)


@cache
def run(name: str) -> Attribution:
    return attribute(spans(name))


def test_a_prompt_change_is_named_with_its_size() -> None:
    """A prompt cutover is blamed on the prompt, its interval holding the injected +38% tokens."""
    result = run("prompt_regression")
    tokens = [f for f in result.findings if f.metric == "input_tokens.mean"]
    assert len(tokens) == 1
    finding = tokens[0]
    assert finding.components == ["prompt"]
    assert finding.verdict == "regression"
    assert finding.ci[0] < 1.38 < finding.ci[1]
    assert finding.scope["changes"] == {"prompt": ["outline@v3", "outline@v4"]}
    assert {f.metric for f in result.findings} == {"input_tokens.mean", "cost_usd.mean"}
    (episode,) = result.episodes
    assert (episode.kind, episode.components) == ("cutover", ["prompt"])


def test_a_traffic_mix_shift_is_not_blamed_on_the_deploy_beside_it() -> None:
    """A mix shift beside a deploy yields no finding, though the pooled ratio looks 30% slower."""
    result = run("mix_shift")
    assert result.findings == []
    latency = next(t for t in result.tests if t["metric"] == "latency_ms.mean")
    assert latency["naive_effect"] > 1.3  # pooled, the deploy looks 30%+ slower
    assert abs(math.log(latency["effect"])) < math.log(1.05)  # within routes it is not


def test_two_components_released_together_are_confounded() -> None:
    """Two components changed in one version_set, and never apart, are reported confounded."""
    result = run("co_release")
    assert result.findings
    for finding in result.findings:
        assert finding.verdict == "confounded"
        assert finding.components == ["config", "prompt"]


def test_drift_with_no_version_change_is_external() -> None:
    """Provider drift with no version change is one external finding, dated near its onset."""
    result = run("provider_drift")
    assert [(f.verdict, f.metric, f.components) for f in result.findings] == [
        ("external", "ttft_ms.mean", [])
    ]
    finding = result.findings[0]
    assert finding.baseline == finding.candidate
    assert "2026-11-02T06" < finding.scope["since"] < "2026-11-02T09"  # injected at 65% of 2 days


def test_a_and_a_finds_nothing() -> None:
    """An A/A split of identical version_sets is an ab episode with no finding."""
    result = run("aa")
    assert result.findings == []
    assert [e.kind for e in result.episodes] == ["ab"]


def test_a_canary_is_compared_while_both_ran() -> None:
    """A 10% canary is compared concurrently, and its TTFT change is blamed on the model."""
    result = run("model_canary")
    (episode,) = result.episodes
    assert episode.kind == "canary"
    ttft = next(f for f in result.findings if f.metric == "ttft_ms.mean")
    assert ttft.components == ["model"]
    assert ttft.scope["comparison"] == "concurrent"


def test_a_change_on_one_route_is_scoped_to_it() -> None:
    """An effect on one route is scoped to that route and every tenant on it."""
    result = run("config_one_route")
    tokens = next(f for f in result.findings if f.metric == "output_tokens.mean")
    assert tokens.components == ["config"]
    assert tokens.scope["routes"] == ["/v1/expand"]
    assert tokens.scope["tenants"] == ["acme", "globex", "initech"]  # every tenant on that route


def test_co_released_components_separate_when_another_episode_moved_one_alone() -> None:
    """A co-release separates when another episode moved one component alone, same effect."""
    result = run("overlapping")
    model = [f for f in result.findings if f.metric == "ttft_ms.mean"]
    assert model
    assert all(f.components == ["model"] and f.verdict == "improvement" for f in model)
    assert not [f for f in result.findings if "code" in f.components]


def test_the_timeline_shows_the_canary_share() -> None:
    """The timeline's shares add up to 1 per bucket and route, and show the canary near 10%."""
    timeline = run("model_canary").timeline
    assert set(timeline.columns) >= {"time", "route", "version_set_id", "requests", "share"}
    totals = timeline.group_by("time", "route").agg(pl.col("share").sum())
    assert totals["share"].to_list() == pytest.approx([1.0] * totals.height)
    canary = run("model_canary").episodes[0].candidate
    shares = timeline.filter(pl.col("version_set_id") == canary)["share"]
    assert 0.05 < shares.median() < 0.15  # a 10% canary


def test_a_rollback_is_an_episode_of_its_own() -> None:
    """A prompt rolled back is a rollback episode, its finding the cutover's effect reversed."""
    result = run("rollback")
    assert [(e.kind, e.components) for e in result.episodes] == [
        ("cutover", ["prompt"]),
        ("rollback", ["prompt"]),
    ]
    tokens = [f for f in result.findings if f.metric == "input_tokens.mean"]
    assert sorted((f.scope["episode"], f.verdict) for f in tokens) == [
        ("cutover", "regression"),
        ("rollback", "improvement"),
    ]


def test_json_output_follows_the_contract() -> None:
    """to_dict() survives JSON and every finding has the contract's keys and types."""
    document = json.loads(json.dumps(run("prompt_regression").to_dict()))
    assert set(document) >= {"findings", "cost_decomposition"}
    types = {
        "metric": str,
        "baseline": str,
        "candidate": str,
        "components": list,
        "verdict": str,
        "effect": float,
        "ci": list,
        "p_value": float,
        "naive_effect": float,
        "scope": dict,
        "n_baseline": int,
        "n_candidate": int,
    }
    for finding in document["findings"]:
        for key, kind in types.items():
            assert isinstance(finding[key], kind), key
        assert finding["verdict"] in {"regression", "improvement", "confounded", "external"}
        assert len(finding["ci"]) == 2
        assert all(isinstance(x, float) for x in finding["ci"])
        assert all(isinstance(c, str) for c in finding["components"])
        assert 0 <= finding["p_value"] <= 1
        assert len(finding["baseline"]) == 12
    assert isinstance(document["cost_decomposition"], dict)


def test_cost_terms_add_up_to_the_change_and_name_the_prompt() -> None:
    """The cost terms add up to the change, and the prompt drives the tokens-per-call term."""
    cost = run("prompt_regression").cost_decomposition
    assert sum(cost["terms"].values()) == pytest.approx(cost["change_usd"], abs=1e-9)
    assert cost["change_usd"] == pytest.approx(
        cost["after"]["cost_usd"] - cost["before"]["cost_usd"]
    )
    top = cost["drivers"]["tokens_per_call"][0]
    assert top["components"] == ["prompt"]
    assert top["usd"] > 0
    assert cost["terms"]["tokens_per_call"] == max(cost["terms"].values())


def test_requests_without_versions_still_get_external_checks_but_no_episode() -> None:
    """Requests without version_sets get no episode but still get external shift checks."""
    frame = spans("provider_drift").with_columns(
        version_set=pl.lit(None, pl.String), version_set_id=pl.lit(None, pl.String)
    )
    result = attribute(frame)
    assert result.episodes == []
    assert [f.verdict for f in result.findings] == ["external"]


def test_repr_and_polars_views_read_well() -> None:
    """repr() names the findings and to_polars() has one row per finding with its interval."""
    result = run("prompt_regression")
    text = repr(result)
    assert "regression" in text
    assert "input_tokens.mean" in text
    table = result.to_polars()
    assert table.height == len(result.findings)
    assert {"metric", "effect", "ci_lo", "ci_hi", "components"} <= set(table.columns)


def test_a_canary_that_ended_is_not_credited_with_later_drift() -> None:
    """A canary that ended is not compared across later drift: the drift is external."""
    scenario = Scenario(
        "canary_then_drift",
        rollouts=(Rollout({"config": "t0.8"}, 0.2, share=0.2, end=0.5),),
        drifts=(Drift("ttft_ms", 1.5, 0.75),),
    )
    result = attribute(generate(scenario, REQUESTS, seed=0))
    assert [f.components for f in result.findings if f.verdict != "external"] == []
    assert ("external", "ttft_ms.mean") in {(f.verdict, f.metric) for f in result.findings}


def test_a_provider_error_spike_after_a_deploy_is_external() -> None:
    """An error spike some time after a deploy is external, not blamed on the deploy."""
    scenario = Scenario(
        "deploy_then_errors",
        rollouts=(Rollout({"code": "9c1e0b4"}, 0.3),),
        drifts=(Drift("error_rate", 4.0, 0.65),),
    )
    result = attribute(generate(scenario, REQUESTS, seed=1))
    assert [f.components for f in result.findings if f.verdict != "external"] == []
    assert ("external", "error_rate") in {(f.verdict, f.metric) for f in result.findings}


def test_naive_datetimes_mean_utc() -> None:
    """A naive since= datetime selects the same requests as the same time in UTC."""
    naive = attribute(spans("prompt_regression"), since=datetime(2026, 11, 2, 12))
    aware = attribute(spans("prompt_regression"), since=datetime(2026, 11, 2, 12, tzinfo=UTC))
    assert naive.settings["requests"] == aware.settings["requests"] > 0
