"""Usage read from provider objects, one call counted once, and the GenAI client metrics."""

from __future__ import annotations

from typing import Any

import pytest

from blameset.instrument import _providers, record_usage, traced
from blameset.instrument.testing import CapturedSpans, FakeClock, capture_spans
from tests.conftest import VS

openai = pytest.importorskip("openai")

COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 600},
        "completion_tokens_details": {"reasoning_tokens": 10},
    },
}


def _completion() -> Any:
    return openai.types.chat.ChatCompletion.model_validate(COMPLETION)


@pytest.mark.parametrize("value", ["text", b"x", 3, None, {"usage": 1}, [1], (1,), iter([1])])
def test_plain_return_values_are_not_provider_objects(value: Any):
    """Strings, dicts, lists, iterators: classified 'none' (the cheap path of every LLM call)."""
    assert _providers.classify(value) == "none"


def test_a_returned_completion_is_read(spans: CapturedSpans):
    """Tokens, cached and reasoning tokens, response model and finish reason, from the return."""

    @traced.llm(model="gpt-4o-mini", provider="openai")
    def ask() -> Any:
        return _completion()

    ask()
    a = spans.attributes("chat gpt-4o-mini")
    assert a["gen_ai.usage.input_tokens"] == 1000
    assert a["gen_ai.usage.output_tokens"] == 50
    assert a["gen_ai.usage.cache_read.input_tokens"] == 600
    assert a["gen_ai.usage.reasoning.output_tokens"] == 10
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["blameset.cost.usd"] > 0
    assert "blameset.latency.ttft_ms" not in a


def test_record_usage_reads_a_usage_object_of_the_same_shape(spans: CapturedSpans):
    """record_usage(obj) is duck-typed: any object shaped like the client's usage reads alike."""

    class Details:
        cached_tokens = 30

    class MyUsage:
        prompt_tokens = 100
        completion_tokens = 7
        prompt_tokens_details = Details()

    @traced.llm(model="gpt-4o-mini", provider="openai")
    def ask() -> None:
        record_usage(MyUsage())

    ask()
    a = spans.attributes("chat gpt-4o-mini")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_read.input_tokens"]) == (100, 30)


def test_nested_llm_spans_count_once_in_the_request(spans: CapturedSpans, clock: FakeClock):
    """A traced.llm inside another, both seeing the same completion: the request counts it once."""

    @traced.llm(model="gpt-4o-mini", provider="openai", name="inner")
    def inner() -> Any:
        return _completion()

    @traced.llm(model="gpt-4o-mini", provider="openai", name="outer")
    def outer() -> Any:
        return inner()

    @traced("handler")
    def handler() -> None:
        outer()

    handler()
    assert spans.attributes("handler")["gen_ai.usage.input_tokens"] == 1000
    assert spans.attributes("handler")["blameset.cost.usd"] == pytest.approx(
        spans.attributes("outer")["blameset.cost.usd"]
    )


def test_an_outer_llm_span_without_usage_lets_the_inner_one_count(spans: CapturedSpans):
    """Of nested LLM spans, the outermost that has usage counts: here the inner one."""

    @traced.llm(model="gpt-4o-mini", provider="openai", name="inner")
    def inner() -> Any:
        return _completion()

    @traced.llm(model="gpt-4o-mini", provider="openai", name="outer")
    def outer() -> str:
        return str(inner().choices[0].message.content)

    @traced("handler")
    def handler() -> None:
        outer()

    handler()
    assert spans.attributes("handler")["gen_ai.usage.input_tokens"] == 1000


def test_a_foreign_genai_span_counts_once_and_at_the_cached_price():
    """An instrumentation's GenAI span inside a request rolls up priced with its cache reads;
    inside a traced.llm that read the same call itself it adds nothing."""
    from opentelemetry import trace

    with capture_spans(version_set=VS) as spans:
        from blameset.instrument import _runtime

        tracer = trace.get_tracer("someone.else")  # the global provider, as libraries take it
        usage = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.response.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.cache_read.input_tokens": 600,
        }

        @traced.llm(model="gpt-4o-mini", provider="openai")
        def ask() -> Any:
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes=usage):
                pass
            return _completion()

        @traced("alone")
        def alone() -> None:
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes=usage):
                pass

        @traced("both")
        def both() -> None:
            ask()

        alone()
        both()
        assert trace.get_current_span() is trace.INVALID_SPAN
    full = _runtime.STATE.pricer.price("gpt-4o-mini", "openai", _usage(1000, 50))[0]
    cached = _runtime.STATE.pricer.price("gpt-4o-mini", "openai", _usage(1000, 50, 600))[0]
    assert cached is not None and full is not None and cached < full
    assert spans.attributes("alone")["blameset.cost.usd"] == pytest.approx(cached)
    assert spans.attributes("alone")["gen_ai.usage.input_tokens"] == 1000
    assert spans.attributes("both")["gen_ai.usage.input_tokens"] == 1000
    foreign = [
        s for s in spans.named("chat gpt-4o-mini") if "blameset.span.kind" not in s.attributes
    ]
    assert all(s.attributes["blameset.version_set"] == VS.canonical for s in foreign)


def _usage(inp: int, out: int, cached: int | None = None) -> Any:
    from blameset.instrument.cost import Usage

    return Usage(inp, out, cached)


def test_genai_client_metrics_are_recorded_when_a_meter_provider_is_set(spans: CapturedSpans):
    """Token usage by type, operation duration, and time to first chunk for a streamed call."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    previous = metrics._internal._METER_PROVIDER  # the API allows setting it once per process
    metrics._internal._METER_PROVIDER = provider
    try:

        @traced.llm(model="gpt-4o-mini", provider="openai")
        def ask() -> Any:
            return _completion()

        @traced.llm(model="gpt-4o-mini", provider="openai", name="stream")
        def stream() -> Any:
            yield "a"
            record_usage(input_tokens=10, output_tokens=1)

        ask()
        list(stream())
        data = reader.get_metrics_data()
    finally:
        metrics._internal._METER_PROVIDER = previous
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    tokens = {
        (p.attributes["gen_ai.token.type"], p.attributes.get("gen_ai.response.model")): p.sum
        for p in points["gen_ai.client.token.usage"]
    }
    assert tokens[("input", "gpt-4o-mini-2024-07-18")] == 1000
    assert tokens[("output", "gpt-4o-mini-2024-07-18")] == 50
    assert tokens[("input", None)] == 10
    assert sum(p.count for p in points["gen_ai.client.operation.duration"]) == 2
    assert sum(p.count for p in points["gen_ai.client.operation.time_to_first_chunk"]) == 1
