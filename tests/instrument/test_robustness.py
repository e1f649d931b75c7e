"""Odd but real uses: spans that must still end right, faults that must stay inside, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import traceback
from collections.abc import Iterator

import pytest

from blameset import instrument
from blameset.instrument import _runtime, dequeued, record_usage, request_context, stamp, traced
from blameset.instrument.testing import CapturedSpans, FakeClock, capture_spans
from tests.conftest import VS


def test_with_blocks_spanning_yields_end_their_own_spans(spans: CapturedSpans, clock: FakeClock):
    """Two generators with `with traced(...)` around their yields, read in turn: right durations."""

    def producer(name: str, step_ms: float):
        with traced.step(name):
            for _ in range(2):
                clock.advance(step_ms)
                yield name

    def consume() -> None:
        a, b = producer("a", 10), producer("b", 500)
        for _ in zip(a, b, strict=False):
            pass
        next(a, None)
        next(b, None)

    # `with` blocks held open across yields interleave their context changes (PEP 568 was never
    # accepted), so the consumer's context is left changed, here as with any contextvar user:
    # run it in a copy to keep this test's leak out of the next one.
    contextvars.copy_context().run(consume)
    durations = {s.name: (s.end_time - s.start_time) / 1e6 for s in spans}
    assert durations == {"a": 1020.0, "b": 1010.0}  # each ends when its own generator does


def test_with_block_finished_in_another_task_still_ends(spans: CapturedSpans, clock: FakeClock):
    """A block entered in one task and exited in another ends its span (no context error leak)."""

    async def main() -> None:
        cm = traced.step("handoff")
        await asyncio.create_task(_enter(cm))
        clock.advance(7)
        await asyncio.create_task(_exit(cm))

    async def _enter(cm) -> None:
        cm.__enter__()

    async def _exit(cm) -> None:
        cm.__exit__(None, None, None)

    asyncio.run(main())
    span = spans.one("handoff")
    assert (span.end_time - span.start_time) / 1e6 == 7.0


def test_a_fault_in_the_outcome_still_ends_and_exports_the_span(spans: CapturedSpans):
    """An exception whose __str__ fails: the caller gets it, and the span is still exported."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

    original = Unprintable()

    @traced("handler")
    def handler() -> None:
        raise original

    with pytest.raises(Unprintable) as info:
        handler()
    assert info.value is original
    span = spans.one("handler")
    assert span.attributes["error.type"] == "Unprintable"
    assert span.status.description == "Unprintable"


def test_bad_token_counts_are_refused_not_fatal(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
):
    """record_usage with counts that are not counts: no cost, a warning, the request span intact."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> float | None:
        return record_usage(input_tokens=10, output_tokens=1, cache_read_tokens=5000)

    @traced("handler")
    def handler() -> float | None:
        return complete()

    with caplog.at_level(logging.WARNING, logger="blameset"):
        assert handler() is None
    assert any("must include cache reads" in r.getMessage() for r in caplog.records)
    assert spans.attributes("handler")["blameset.final_status"] == "success"


def test_one_unpriceable_call_does_not_stop_pricing_the_model():
    """After a call that cannot be priced, the next good call of the same model is priced."""
    from blameset.instrument.cost import Pricer, Usage

    pricer = Pricer()
    assert pricer.price("gpt-4o-2024-08-06", "openai", Usage(10, 1, cache_read_tokens=99)) == (
        None,
        None,
    )
    cost, _ = pricer.price("gpt-4o-2024-08-06", "openai", Usage(1_000_000, 0))
    assert cost == pytest.approx(2.5)


def test_otel_provider_names_unknown_to_genai_prices_still_price():
    """OTel's provider name (x_ai) is not genai-prices' id: the model alone finds the price."""
    from blameset.instrument.cost import Pricer, Usage

    cost, source = Pricer().price("grok-3", "x_ai", Usage(1000, 1000))
    assert cost is not None and cost > 0
    assert source.startswith("genai-prices@")


def test_nested_tools_count_once(spans: CapturedSpans, clock: FakeClock):
    """A tool that calls tools adds its own duration to tool_ms, not its children's too."""

    @traced.tool("fetch_page")
    def fetch() -> None:
        clock.advance(30)

    @traced.tool("search_web")
    def search() -> None:
        clock.advance(10)
        fetch()
        fetch()

    @traced("handler")
    def handler() -> None:
        search()
        clock.advance(5)

    handler()
    a = spans.attributes("handler")
    assert a["blameset.latency.tool_ms"] == 70.0
    assert a["blameset.latency.total_ms"] == 75.0


def test_ttft_is_the_first_call_that_produced_a_token(spans: CapturedSpans, clock: FakeClock):
    """A failed first LLM attempt then a retry: the request reports the retry's TTFT."""

    @traced.llm(model="m")
    def attempt(fail: bool) -> Iterator[str]:
        clock.advance(100 if fail else 40)
        if fail:
            raise TimeoutError("upstream")
        yield "ok"

    @traced("handler")
    def handler() -> str:
        with contextlib.suppress(TimeoutError):
            list(attempt(True))
        return "".join(attempt(False))

    handler()
    assert spans.attributes("handler")["blameset.latency.ttft_ms"] == 40.0


def test_static_class_methods_partials_and_coroutine_returning_callables(
    spans: CapturedSpans, clock: FakeClock
):
    """@traced over @staticmethod/@classmethod, partials, a sync callable returning a coroutine."""
    original = ValueError("late failure")

    class Service:
        @traced("static_async")
        @staticmethod
        async def static_async() -> None:
            clock.advance(50)
            raise original

        @traced("class_method")
        @classmethod
        def class_method(cls) -> str:
            return cls.__name__

    def add(a: int, b: int) -> int:
        return a + b

    async def work() -> int:
        clock.advance(20)
        return 3

    def returns_coroutine() -> object:
        return work()

    with pytest.raises(ValueError) as info:
        asyncio.run(Service.static_async())
    assert info.value is original
    assert Service.class_method() == "Service"
    assert traced(functools.partial(add, 1))(2) == 3
    assert asyncio.run(traced("hands_back")(returns_coroutine)()) == 3
    a = spans.attributes("static_async")
    assert a["error.type"] == "ValueError"
    assert a["blameset.latency.total_ms"] == 50.0
    assert spans.attributes("hands_back")["blameset.latency.total_ms"] == 20.0
    assert any(name.endswith(".add") for name in spans.names())


def test_a_bad_version_override_fails_where_it_is_made():
    """An override that would corrupt the canonical string is refused at request_context()."""
    with pytest.raises(ValueError, match="';'"), request_context(versions={"prompt": "a;b"}):
        pass


def test_a_clock_that_fails_mid_stream_never_reaches_the_consumer():
    """The clock failing at the first item: items still flow, no StopIteration leak."""
    ticks = iter([1_000])

    def clock() -> int:
        return next(ticks)

    captured = CapturedSpans()
    with instrument.configured(version_set=VS, exporter=captured, batch=False, clock=clock):

        @traced.llm(model="m")
        def stream():
            yield 1
            yield 2

        assert list(stream()) == [1, 2]
    assert len(captured) == 1  # the span still ended (with the SDK's own end time)


def test_queue_wait_goes_to_one_request_even_across_tasks(spans: CapturedSpans, clock: FakeClock):
    """Requests fanned out with gather inside one dequeued block: only one takes the wait."""

    @traced("part")
    async def part() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        job = stamp()
        clock.advance(100)
        with dequeued(job):
            await asyncio.gather(part(), part(), part())

    asyncio.run(main())
    waits = [s.attributes.get("blameset.latency.queue_ms") for s in spans.named("part")]
    assert sorted(waits, key=lambda w: w is None) == [100.0, None, None]


def test_roll_ups_are_exact_under_concurrent_threads(spans: CapturedSpans):
    """8 threads x 50 tool calls and LLM calls inside one request: sums are exact."""

    @traced.tool("t")
    def tool() -> None:
        pass

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> None:
        record_usage(input_tokens=3, output_tokens=2)

    def worker() -> None:
        for _ in range(50):
            tool()
            complete()

    @traced("handler")
    def handler() -> None:
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker,))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    handler()
    a = spans.attributes("handler")
    assert a["gen_ai.usage.input_tokens"] == 8 * 50 * 3
    assert a["gen_ai.usage.output_tokens"] == 8 * 50 * 2
    assert a["blameset.cost.usd"] == pytest.approx(8 * 50 * (3 * 2.5 + 2 * 10) / 1e6)
    assert len(spans.named("execute_tool t")) == 400


def test_exceptions_keep_their_traceback_in_async_and_generators(spans: CapturedSpans):
    """Coroutines and generators, too, hand back the same object ending at the raise."""
    err = KeyError("k")

    def boom() -> None:
        raise err

    @traced("coro")
    async def coro() -> None:
        boom()

    @traced("gen")
    def gen():
        yield 1
        boom()

    @traced("agen")
    async def agen():
        yield 1
        boom()

    async def drain() -> None:
        async for _ in agen():
            pass

    for run in (lambda: asyncio.run(coro()), lambda: list(gen()), lambda: asyncio.run(drain())):
        with pytest.raises(KeyError) as info:
            run()
        assert info.value is err
        assert traceback.extract_tb(info.value.__traceback__)[-1].name == "boom"


def test_record_usage_with_telemetry_off_still_prices():
    """With telemetry off there is no span, but a call naming its model still gets its cost."""
    with instrument.configured(version_set=VS, exporter="none"):
        cost = record_usage(
            input_tokens=1000, output_tokens=500, model="gpt-4o-2024-08-06", provider="openai"
        )
    assert cost == pytest.approx(0.0075)


def test_shutdown_survives_an_exporter_that_fails_to_shut_down():
    """shutdown() and force_flush() never raise, whatever the exporter does."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Broken(SpanExporter):
        def export(self, spans):
            return SpanExportResult.FAILURE

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            raise OSError("flush failed")

        def shutdown(self) -> None:
            raise OSError("shutdown failed")

    @traced("op")
    def op() -> int:
        return 1

    with instrument.configured(version_set=VS, exporter=Broken(), batch=False):
        assert op() == 1
        instrument.force_flush()
        instrument.shutdown()


def test_capture_spans_restores_the_previous_configuration():
    """capture_spans() puts back whatever was configured before it."""
    before = _runtime.current_state()  # the one place a test reads the State: nothing leaked
    with capture_spans():
        assert _runtime.current_state() is not before
    assert _runtime.current_state() is before
