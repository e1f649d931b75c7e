"""traced.llm around the real openai and anthropic clients, against local stand-ins: usage, cost
and TTFT come from what the function returns, with no record_usage call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from blameset.instrument import traced
from blameset.instrument.cost import Pricer, Usage
from blameset.instrument.testing import CapturedSpans, capture_spans
from tests.conftest import VS
from tests.integration import standins

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"
MESSAGES = [{"role": "user", "content": "Outline observability for LLM apps"}]


@pytest.fixture(scope="module")
def standin() -> Iterator[standins.StandIn]:
    server = standins.start()
    yield server
    server.close()


@pytest.fixture
def live_spans() -> Iterator[CapturedSpans]:
    """Spans on the real clock (the stand-in's first-chunk times are on the same one)."""
    with capture_spans(version_set=VS) as captured:
        yield captured


def _truth_cost(served: standins.Served, provider: str, model: str) -> float:
    usage = Usage(
        served.input_tokens,
        served.output_tokens,
        served.cache_read_tokens,
        served.cache_write_tokens or None,
    )
    cost = Pricer().price(model, provider, usage)[0]
    assert cost is not None
    full = Pricer().price(model, provider, Usage(served.input_tokens, served.output_tokens))[0]
    assert full is not None and cost < full  # the cached tokens are billed at the cached price
    return cost


def _assert_usage(attrs: Any, served: standins.Served, provider: str, model: str) -> None:
    assert attrs["gen_ai.usage.input_tokens"] == served.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == served.output_tokens
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == served.cache_read_tokens
    if served.cache_write_tokens:
        assert attrs["gen_ai.usage.cache_creation.input_tokens"] == served.cache_write_tokens
    assert attrs["blameset.cost.usd"] == pytest.approx(_truth_cost(served, provider, model))


def _assert_ttft(span: Any, served: standins.Served, received_ns: int) -> None:
    """TTFT ends between the stand-in writing the first chunk and the consumer holding it."""
    assert served.first_chunk_ns is not None
    assert span.attributes["blameset.llm.streamed"] is True
    first_ns = span.start_time + span.attributes["blameset.latency.ttft_ms"] * 1e6
    assert served.first_chunk_ns - 1_000 <= first_ns <= received_ns + 1_000  # float rounding


def test_openai_sync_response_and_stream(standin: standins.StandIn, live_spans: CapturedSpans):
    """Sync OpenAI: a returned completion records usage and no TTFT; a returned Stream records
    usage from its usage chunk and TTFT at the first chunk the consumer gets."""
    client = openai.OpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)

    @traced.llm(model=OPENAI_MODEL, provider="openai")
    def ask() -> Any:
        return client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)

    @traced.llm(model=OPENAI_MODEL, provider="openai", name="stream")
    def stream() -> Any:
        return client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )

    reply = ask()
    assert reply.choices[0].message.content  # the caller gets the client's own object
    served = standin.served[-1]
    attrs = live_spans.attributes(f"chat {OPENAI_MODEL}")
    _assert_usage(attrs, served, "openai", OPENAI_MODEL)
    assert "blameset.latency.ttft_ms" not in attrs
    assert "blameset.llm.streamed" not in attrs  # a whole answer: not streamed, no first token
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)

    chunks = stream()
    received_ns = 0
    text = []
    for chunk in chunks:
        if not received_ns:
            received_ns = time.time_ns()
            assert not live_spans.named("stream")  # the span is open while the stream is read
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    assert "".join(text).split() == standins.WORDS
    served = standin.served[-1]
    span = live_spans.one("stream")
    _assert_usage(span.attributes, served, "openai", OPENAI_MODEL)
    _assert_ttft(span, served, received_ns)
    assert "blameset.stream.closed_early" not in span.attributes


def test_openai_async_stream_closed_early(standin: standins.StandIn, live_spans: CapturedSpans):
    """AsyncOpenAI: an AsyncStream returned and closed after one chunk ends closed early."""
    client = openai.AsyncOpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)

    @traced.llm(model=OPENAI_MODEL, provider="openai")
    async def stream() -> Any:
        return await client.chat.completions.create(
            model=OPENAI_MODEL, messages=MESSAGES, stream=True
        )

    async def main() -> None:
        chunks = await stream()
        async for _ in chunks:
            break
        await chunks.close()

    asyncio.run(main())
    span = live_spans.one(f"chat {OPENAI_MODEL}")
    assert span.attributes["blameset.stream.closed_early"] is True
    assert span.status.is_ok or span.status.status_code.name == "UNSET"
    assert "blameset.latency.ttft_ms" in span.attributes


def test_openai_async_response_in_a_request(standin: standins.StandIn, live_spans: CapturedSpans):
    """AsyncOpenAI: a returned completion's usage rolls up into the request, priced once."""
    client = openai.AsyncOpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)

    @traced.llm(model=OPENAI_MODEL, provider="openai")
    async def ask() -> Any:
        return await client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)

    @traced("handler")
    async def handler() -> str:
        reply = await ask()
        return str(reply.choices[0].message.content)

    asyncio.run(handler())
    served = standin.served[-1]
    _assert_usage(live_spans.attributes("handler"), served, "openai", OPENAI_MODEL)
    assert "blameset.latency.ttft_ms" not in live_spans.attributes("handler")


def test_openai_responses_api(standin: standins.StandIn, live_spans: CapturedSpans):
    """The Responses API: a returned Response and a returned event stream record usage
    (cached input included) and the answering model; only the stream has a TTFT."""
    client = openai.OpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)

    @traced.llm(model=OPENAI_MODEL, provider="openai", name="whole")
    def whole() -> Any:
        return client.responses.create(model=OPENAI_MODEL, input="Outline observability")

    @traced.llm(model=OPENAI_MODEL, provider="openai", name="stream")
    def stream() -> Any:
        return client.responses.create(model=OPENAI_MODEL, input="Outline it", stream=True)

    assert whole().output_text == " ".join(standins.WORDS)
    attrs = live_spans.attributes("whole")
    _assert_usage(attrs, standin.served[-1], "openai", OPENAI_MODEL)
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert "blameset.latency.ttft_ms" not in attrs
    assert "blameset.llm.streamed" not in attrs

    received_ns = 0
    kinds = []
    for event in stream():
        received_ns = received_ns or time.time_ns()
        kinds.append(event.type)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    span = live_spans.one("stream")
    _assert_usage(span.attributes, standin.served[-1], "openai", OPENAI_MODEL)
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    _assert_ttft(span, standin.served[-1], received_ns)


def test_anthropic_message_and_stream(standin: standins.StandIn, live_spans: CapturedSpans):
    """Anthropic: a Message and a raw event stream record input with cache reads and writes,
    output from message_delta, the cost at cache prices, and TTFT for the stream only."""
    client = anthropic.Anthropic(base_url=standin.url, api_key="test", max_retries=0)

    @traced.llm(model=ANTHROPIC_MODEL, provider="anthropic")
    def ask() -> Any:
        return client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES)

    @traced.llm(model=ANTHROPIC_MODEL, provider="anthropic", name="stream")
    def stream() -> Any:
        return client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )

    ask()
    served = standin.served[-1]
    attrs = live_spans.attributes(f"chat {ANTHROPIC_MODEL}")
    _assert_usage(attrs, served, "anthropic", ANTHROPIC_MODEL)
    assert "blameset.latency.ttft_ms" not in attrs
    assert "blameset.llm.streamed" not in attrs  # a whole answer: not streamed, no first token
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("end_turn",)

    received_ns = 0
    for _event in stream():
        received_ns = received_ns or time.time_ns()
    served = standin.served[-1]
    span = live_spans.one("stream")
    _assert_usage(span.attributes, served, "anthropic", ANTHROPIC_MODEL)
    _assert_ttft(span, served, received_ns)


def test_anthropic_async_stream(standin: standins.StandIn, live_spans: CapturedSpans):
    """AsyncAnthropic: an AsyncStream of events records the same usage and a TTFT."""
    client = anthropic.AsyncAnthropic(base_url=standin.url, api_key="test", max_retries=0)

    @traced.llm(model=ANTHROPIC_MODEL, provider="anthropic")
    async def stream() -> Any:
        return await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )

    async def main() -> int:
        received = 0
        async for _event in await stream():
            received = received or time.time_ns()
        return received

    received_ns = asyncio.run(main())
    served = standin.served[-1]
    span = live_spans.one(f"chat {ANTHROPIC_MODEL}")
    _assert_usage(span.attributes, served, "anthropic", ANTHROPIC_MODEL)
    _assert_ttft(span, served, received_ns)


def test_record_usage_takes_the_clients_objects(
    standin: standins.StandIn, live_spans: CapturedSpans
):
    """record_usage(response) reads a completion handed to it by hand, cached tokens included."""
    from blameset.instrument import record_usage

    client = openai.OpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)

    @traced.llm(model=OPENAI_MODEL, provider="openai")
    def ask() -> str:
        reply = client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        record_usage(reply)
        return str(reply.choices[0].message.content)

    ask()
    _assert_usage(
        live_spans.attributes(f"chat {OPENAI_MODEL}"), standin.served[-1], "openai", OPENAI_MODEL
    )


def test_a_rate_limited_call_retries_through_the_real_client(
    standin: standins.StandIn, live_spans: CapturedSpans
):
    """The stand-in's 429 (retry-after-ms) is a QUOTA_EXCEEDED that @retry retries."""
    from blameset.instrument import RetryBudget, retry

    client = openai.OpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)
    waits: list[float] = []
    standin.rate_limit_first = 1

    @traced("handler")
    @retry(budget=RetryBudget(), sleep=waits.append, rng=lambda: 0.0)
    def handler() -> Any:
        return client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)

    handler()
    assert waits == [0.02]
    (event,) = [e for e in live_spans.one("handler").events if e.name == "blameset.retry"]
    assert event.attributes["error.type"] == "QUOTA_EXCEEDED"
