"""The canary judge on seeded scenarios: a harmful canary fails naming the injected metric, a
harmless one with enough traffic passes, the same one on its first few dozen requests is
inconclusive with a number of requests to wait for; and the parts: limits, selectors, the
confidence sequence's width."""

from __future__ import annotations

import math

import polars as pl
import pytest

from bench.scenarios import Rollout, Scenario, generate
from blameset.analyze import request_table
from blameset.analyze._judge_stats import WeightedSample, half_width, stratified_mean
from blameset.analyze.judge import DEFAULT_LIMITS, Limit, judge, parse_limit

HARMLESS = Scenario(
    "harmless_canary", rollouts=(Rollout({"config": "t0.7b"}, 0.2, share=0.3),), null=True
)
"""A config canary on 30% of the traffic from a fifth of the timeline on, changing nothing."""


@pytest.fixture(scope="module")
def harmless() -> pl.DataFrame:
    """The harmless canary's request table: 60,000 requests, about 14,000 on the canary."""
    return request_table(generate(HARMLESS, 60_000, seed=0).lazy())


@pytest.mark.parametrize(
    ("scenario", "candidate", "injected"),
    [
        ("model_canary", "model=claude-sonnet-4", "cost_usd.mean"),
        ("prompt_regression", "prompt=outline@v4", "input_tokens.mean"),
        ("code_errors", "code=9c1e0b4", "error_rate"),
    ],
)
def test_a_harmful_change_fails_naming_the_injected_metric(
    scenario: str, candidate: str, injected: str
) -> None:
    """FAIL, and the metric the scenario made worse is among those shown worse than the limit,
    its whole interval above it."""
    result = judge(generate(scenario, 20_000, seed=1), candidate)
    assert result.decision == "FAIL", repr(result)
    assert result.exit_code == 1
    failed = {m.metric: m for m in result.failed}
    assert injected in failed, repr(result)
    assert failed[injected].lo > failed[injected].limit.value
    assert injected in result.summary()


def test_a_harmless_canary_with_enough_traffic_passes(harmless: pl.DataFrame) -> None:
    """PASS (exit 0): every watched metric's interval lies below its limit; the canary was
    compared side by side with the version_set it took traffic from."""
    result = judge(None, "config=t0.7b", requests=harmless)
    assert result.decision == "PASS", repr(result)
    assert result.exit_code == 0
    assert {m.metric for m in result.metrics} == set(DEFAULT_LIMITS)
    assert all(m.hi <= m.limit.value for m in result.metrics)
    assert result.window["mode"] == "concurrent"
    assert result.baseline["version_sets"] != result.candidate["version_sets"]


def test_the_same_canary_on_its_first_requests_is_inconclusive_with_a_number(
    harmless: pl.DataFrame,
) -> None:
    """Cut at the canary's 40th request: INCONCLUSIVE (exit 3), and each open metric says how many
    more canary requests would settle it and how long that takes at today's rate."""
    canary = harmless.filter(pl.col("version.config") == "t0.7b")
    cut = canary["start"][40]
    result = judge(None, "config=t0.7b", requests=harmless.filter(pl.col("start") < cut))
    assert result.decision == "INCONCLUSIVE", repr(result)
    assert result.exit_code == 3
    assert result.window["candidate_served"] == 40
    assert result.open
    for m in result.open:
        assert m.needed is not None and m.needed > 0, m
        assert m.needed_seconds is not None and m.needed_seconds > 0
    assert "more config=t0.7b requests" in result.summary()


def test_a_baseline_can_be_named_and_the_window_says_why_it_is_smaller() -> None:
    """--baseline by version_set id; the canary ran in a window of the data, and the window says
    it was side by side over the time both served."""
    spans = generate("model_canary", 8000, seed=2)
    table = request_table(spans.lazy())
    incumbent = table.filter(pl.col("version.model") == "gpt-4o-2024-08-06")["version_set_id"][0]
    result = judge(None, "model=claude-sonnet-4", str(incumbent), requests=table)
    assert result.baseline["version_sets"] == [str(incumbent)]
    window = result.window
    assert window["mode"] == "concurrent"
    assert window["baseline_requests"] < window["baseline_served"]
    assert "side by side" in window["why"] and "the last time both served" in window["why"]


def test_a_cutover_is_compared_before_and_after() -> None:
    """A candidate that took all the traffic is compared with the baseline's last requests
    before it, and says so."""
    result = judge(generate("prompt_regression", 4000, seed=3), "prompt=outline@v4")
    assert result.window["mode"] == "before_after"
    assert "before/after" in result.window["why"]


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [
        ("latency_ms.p95:+10%", "latency_ms.p95", Limit(0.10, True)),
        ("error_rate:+0.5pp", "error_rate", Limit(0.005, False)),
        ("cost_usd:5%", "cost_usd.mean", Limit(0.05, True)),
        ("ttft_ms.p99:+0%", "ttft_ms.p99", Limit(0.0, True)),
        ("output_tokens.mean:+20", "output_tokens.mean", Limit(20.0, False)),
    ],
)
def test_limits_parse(text: str, metric: str, limit: Limit) -> None:
    """NAME:LIMIT in percent, percentage points or the metric's units; a bare column is its
    mean."""
    assert parse_limit(text) == (metric, limit)


@pytest.mark.parametrize("text", ["latency_ms.p95", "latency_ms.p95:fast", "cost:-5%", "x.sd:1"])
def test_a_bad_limit_is_a_value_error(text: str) -> None:
    """A limit the judge cannot use is refused, not guessed."""
    with pytest.raises(ValueError, match="--metric"):
        parse_limit(text)


def test_a_selector_that_matches_nothing_is_a_value_error(harmless: pl.DataFrame) -> None:
    """An unknown component or id is named with what is known."""
    with pytest.raises(ValueError, match="no component 'temperature'"):
        judge(None, "temperature=0.2", requests=harmless)
    with pytest.raises(ValueError, match="neither a version_set id"):
        judge(None, "deadbeef", requests=harmless)


def test_the_sequence_is_wider_than_a_fixed_sample_interval_and_shrinks() -> None:
    """Valid at every look costs width: the half-width is more than 1.96 standard errors, and it
    shrinks as the variance does (as requests arrive)."""
    widths = [half_width(1.0 / n, tau=0.05, alpha=0.05) for n in (100, 1_000, 10_000, 100_000)]
    for n, w in zip((100, 1_000, 10_000, 100_000), widths, strict=True):
        assert w > 1.96 / math.sqrt(n)
    assert widths == sorted(widths, reverse=True)
    assert half_width(0.0, tau=0.05, alpha=0.05) == 0.0


def test_the_stratified_mean_weights_the_candidate_by_the_baseline_mix() -> None:
    """The candidate over-serves the cheap stratum; weighted by the baseline's mix both means
    agree where each stratum's values do."""
    import numpy as np

    b_values = np.array([1.0] * 50 + [10.0] * 50)
    b_strata = np.array([0] * 50 + [1] * 50)
    c_values = np.array([1.0] * 90 + [10.0] * 10)
    c_strata = np.array([0] * 90 + [1] * 10)
    sm = stratified_mean(b_values, b_strata, c_values, c_strata, rate=False)
    assert sm is not None
    assert sm.baseline == pytest.approx(5.5) and sm.candidate == pytest.approx(5.5)


def test_a_weighted_quantile_reads_the_cumulative_weights() -> None:
    """The p-quantile is the first value whose cumulative weight share reaches p."""
    import numpy as np

    sample = WeightedSample.of(np.array([3.0, 1.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0, 1.0]))
    assert sample.quantile(0.5) == 2.0
    assert sample.quantile(0.51) == 3.0
    assert sample.quantile(1.0) == math.inf
