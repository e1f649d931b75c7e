"""Pricing at call time: genai-prices, the user's override table, reported costs, unknown models."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blameset.instrument import ModelPrice, record_usage, traced
from blameset.instrument.cost import Pricer, Usage
from blameset.instrument.testing import CapturedSpans, FakeClock, capture_spans
from tests.conftest import VS


def test_genai_prices_prices_a_known_model(spans: CapturedSpans):
    """gpt-4o at $2.50 / $10 per million tokens: 1000 in + 500 out = $0.0075."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> float | None:
        return record_usage(input_tokens=1000, output_tokens=500)

    assert complete() == pytest.approx(0.0075)
    a = spans.attributes("chat gpt-4o-2024-08-06")
    assert a["blameset.cost.usd"] == pytest.approx(0.0075)
    assert a["blameset.cost.source"].startswith("genai-prices@")
    assert a["gen_ai.usage.input_tokens"] == 1000
    assert a["gen_ai.usage.output_tokens"] == 500


def test_cached_input_tokens_are_cheaper(spans: CapturedSpans):
    """Cache reads are priced at the cache rate ($1.25/M for gpt-4o), not the input rate."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> float | None:
        return record_usage(input_tokens=1_000_000, output_tokens=0, cache_read_tokens=1_000_000)

    assert complete() == pytest.approx(1.25)
    assert (
        spans.attributes("chat gpt-4o-2024-08-06")["gen_ai.usage.cache_read.input_tokens"]
        == 1_000_000
    )


def test_response_model_is_recorded_and_priced(spans: CapturedSpans):
    """record_usage(model=...) records gen_ai.response.model and prices that model."""

    @traced.llm(model="gpt-4o", provider="openai")
    def complete() -> float | None:
        return record_usage(input_tokens=1_000_000, output_tokens=0, model="gpt-4o-mini-2024-07-18")

    assert complete() == pytest.approx(0.15)
    assert spans.attributes("chat gpt-4o")["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"


def test_override_table_wins_for_private_models(clock: FakeClock):
    """A user's price table prices models genai-prices does not know, source 'override'."""
    prices = {
        "acme-llm-7b": ModelPrice(input_mtok=0.5, output_mtok=1.5, cache_read_mtok=0.1),
        "gpt-4o-2024-08-06": {"input_mtok": 1.0, "output_mtok": 1.0},
    }
    with capture_spans(version_set=VS, clock=clock, prices=prices) as spans:

        @traced.llm(model="acme-llm-7b", provider="self-hosted")
        def private() -> float | None:
            return record_usage(
                input_tokens=2_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000
            )

        @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
        def negotiated() -> float | None:
            return record_usage(input_tokens=1_000_000, output_tokens=1_000_000)

        assert private() == pytest.approx(0.5 + 0.1 + 1.5)
        assert negotiated() == pytest.approx(2.0)
    assert spans.attributes("chat acme-llm-7b")["blameset.cost.source"] == "override"


def test_reported_cost_is_kept_as_reported(spans: CapturedSpans):
    """A cost the provider reported is recorded as is, source 'reported'."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> float | None:
        return record_usage(input_tokens=1, output_tokens=1, cost_usd=0.42)

    assert complete() == 0.42
    assert spans.attributes("chat gpt-4o-2024-08-06")["blameset.cost.source"] == "reported"


def test_unknown_model_gets_no_cost_and_one_warning(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
):
    """No price: tokens recorded, no cost, a single warning however many calls."""

    @traced.llm(model="no-such-model-xyz", provider="openai")
    def complete() -> float | None:
        return record_usage(input_tokens=10, output_tokens=10)

    @traced("handler")
    def handler() -> None:
        complete()
        complete()

    with caplog.at_level(logging.WARNING, logger="blameset"):
        handler()
        handler()
    warnings = [r for r in caplog.records if "no-such-model-xyz" in r.getMessage()]
    assert len(warnings) == 1
    for span in spans.named("chat no-such-model-xyz"):
        assert "blameset.cost.usd" not in span.attributes
        assert span.attributes["gen_ai.usage.input_tokens"] == 10
    assert "blameset.cost.usd" not in spans.named("handler")[0].attributes
    assert spans.named("handler")[0].attributes["gen_ai.usage.input_tokens"] == 20


def test_record_usage_outside_any_span_is_harmless():
    """Outside a span (or with telemetry off) record_usage does nothing and raises nothing."""
    assert record_usage(input_tokens=1, output_tokens=1) is None
    assert record_usage(input_tokens=1, output_tokens=1, cost_usd=0.5) == 0.5


MODELS = [
    ("gpt-4o-2024-08-06", "openai"),  # linear: served from rates read off genai-prices
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet-4-5", "anthropic"),  # tiered above 200k input tokens: exact path
    ("gemini-2.5-pro", "google"),
    ("deepseek-chat", "deepseek"),  # has had an off-peak (time of day) price
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.integers(0, 2_000_000),
    st.integers(0, 200_000),
    st.integers(0, 100),
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
)
def test_price_matches_genai_prices_exactly(
    model_provider, input_tokens, output_tokens, cached_pct, at
):
    """Whatever shortcut pricing takes, the cost equals genai-prices' own calc_price."""
    model, provider = model_provider
    cache_read = input_tokens * cached_pct // 100
    usage = Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read
    )
    cost, source = PRICER.price(model, provider, usage, at)
    kwargs = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_read:
        kwargs["cache_read_tokens"] = cache_read
    want = float(
        genai_prices.calc_price(
            genai_prices.Usage(**kwargs), model, provider_id=provider, genai_request_timestamp=at
        ).total_price
    )
    assert cost == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert source == f"genai-prices@{genai_prices.__version__}"


PRICER = Pricer()


def test_sampled_out_calls_are_still_priced(clock: FakeClock):
    """Sampling drops spans, not money: a sampled-out LLM call is still priced."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    with capture_spans(version_set=VS, clock=clock, sampler=ALWAYS_OFF) as spans:

        @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
        def complete() -> float | None:
            return record_usage(input_tokens=1000, output_tokens=500)

        @traced("handler")
        def handler() -> float | None:
            return complete()

        assert handler() == pytest.approx(0.0075)
    assert len(spans) == 0
