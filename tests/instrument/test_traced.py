"""The decorators: span shape, nesting, roll-ups, generators, context, and exceptions untouched."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import traceback

import pytest

from blameset import instrument
from blameset.instrument import record_usage, request_context, set_final_status, traced
from blameset.instrument.testing import CapturedSpans, FakeClock
from tests.conftest import VS


def test_sync_request_span_carries_the_contract(spans: CapturedSpans, clock: FakeClock):
    """A request span has the version set, kind, route, final status and total latency."""

    @traced("generate_outline", route="/v1/outline")
    def handler(x: int) -> int:
        clock.advance(12.5)
        return x * 2

    assert handler(21) == 42
    a = spans.attributes("generate_outline")
    assert a["blameset.span.kind"] == "request"
    assert a["blameset.version_set"] == VS.canonical
    assert a["blameset.version_set.id"] == VS.id
    assert "blameset.version.prompt" not in a  # components of the configured set: on the resource
    resource = spans.one("generate_outline").resource.attributes
    assert resource["blameset.version.prompt"] == "outline@v4"
    assert resource["blameset.version_set.id"] == VS.id
    assert a["http.route"] == "/v1/outline"
    assert a["blameset.final_status"] == "success"
    assert a["blameset.latency.total_ms"] == 12.5
    assert a["blameset.latency.tool_ms"] == 0.0
    span = spans.one("generate_outline")
    assert span.end_time - span.start_time == 12_500_000
    assert span.kind.name == "SERVER"


def test_decorator_keeps_the_function_identity():
    """functools.wraps: name, docstring and the async/generator nature are preserved."""
    import inspect

    @traced("x")
    async def coro() -> None:
        """Doc."""

    @traced("y")
    def gen():
        yield 1

    @traced("z")
    async def agen():
        yield 1

    assert coro.__name__ == "coro" and coro.__doc__ == "Doc."
    assert inspect.iscoroutinefunction(coro)
    assert inspect.isgeneratorfunction(gen)
    assert inspect.isasyncgenfunction(agen)


def test_bare_decorator_names_the_span_after_the_function(spans: CapturedSpans):
    """@traced without arguments uses the function's qualified name."""

    @traced
    def plain() -> str:
        return "ok"

    assert plain() == "ok"
    assert spans.names() == ["test_bare_decorator_names_the_span_after_the_function.<locals>.plain"]


def test_nested_request_llm_tool_share_one_trace(spans: CapturedSpans, clock: FakeClock):
    """Request, LLM and tool spans form one trace with correct parents; tool time rolls up."""

    @traced.tool("search_web")
    def search(q: str) -> str:
        clock.advance(40)
        return q

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete(prompt: str) -> str:
        clock.advance(300)
        record_usage(input_tokens=1000, output_tokens=500)
        return "answer"

    @traced("outline")
    def handler() -> str:
        clock.advance(5)
        search("q1")
        search("q2")
        return complete("p")

    handler()
    req, llm = spans.one("outline"), spans.one("chat gpt-4o-2024-08-06")
    tools = spans.named("execute_tool search_web")
    assert len(tools) == 2
    trace_ids = {s.context.trace_id for s in spans}
    assert len(trace_ids) == 1
    assert req.parent is None
    assert llm.parent.span_id == req.context.span_id
    assert all(t.parent.span_id == req.context.span_id for t in tools)
    assert tools[0].attributes["gen_ai.tool.name"] == "search_web"
    assert tools[0].attributes["gen_ai.operation.name"] == "execute_tool"
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["gen_ai.provider.name"] == "openai"
    assert llm.kind.name == "CLIENT"
    a = req.attributes
    assert a["blameset.latency.tool_ms"] == 80.0
    assert a["blameset.latency.total_ms"] == 385.0
    assert "blameset.latency.ttft_ms" not in a  # non-streaming: no first token, no TTFT
    assert a["gen_ai.usage.input_tokens"] == 1000
    assert a["gen_ai.usage.output_tokens"] == 500
    assert a["blameset.cost.usd"] == pytest.approx(0.0075)


def test_traced_inside_a_request_is_a_step(spans: CapturedSpans):
    """A traced function called inside a request is a step, not a second request."""

    @traced("helper")
    def helper() -> None:
        pass

    @traced("handler")
    def handler() -> None:
        helper()

    handler()
    assert spans.attributes("handler")["blameset.span.kind"] == "request"
    assert spans.attributes("helper")["blameset.span.kind"] == "step"
    assert "blameset.final_status" not in spans.attributes("helper")


def test_llm_usage_inside_a_step_still_rolls_up_to_the_request(spans: CapturedSpans):
    """Tokens and cost travel through steps to the nearest request span."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> None:
        record_usage(input_tokens=10, output_tokens=20)

    @traced.step("retrieve_and_answer")
    def step() -> None:
        complete()
        complete()

    @traced("handler")
    def handler() -> None:
        step()

    handler()
    a = spans.attributes("handler")
    assert a["gen_ai.usage.input_tokens"] == 20
    assert a["gen_ai.usage.output_tokens"] == 40


# --- exceptions ------------------------------------------------------------------------------


class QuotaError(Exception):
    error_code = "QUOTA_EXCEEDED"
    retryable = True


class Blocked(Exception):
    error_code = "BUDGET_EXHAUSTED"
    final_status = "blocked"


def test_exception_propagates_unchanged(spans: CapturedSpans):
    """The caller gets the very exception object, its traceback still ending where it was raised."""
    original = RuntimeError("boom")

    def inner() -> None:
        raise original

    @traced("handler")
    def handler() -> None:
        inner()

    with pytest.raises(RuntimeError) as info:
        handler()
    assert info.value is original
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "inner"
    assert frames[-1].line == "raise original"
    a = spans.attributes("handler")
    assert a["blameset.final_status"] == "failure"
    assert a["error.type"] == "RuntimeError"
    span = spans.one("handler")
    assert span.status.status_code.name == "ERROR"
    assert span.events[0].name == "exception"


def test_exception_codes_and_statuses(spans: CapturedSpans):
    """error.type is the taxonomy code when the exception carries one; blocked stays blocked."""

    @traced("quota")
    def quota() -> None:
        raise QuotaError("slow down")

    @traced("blocked")
    def blocked() -> None:
        raise Blocked("budget")

    with pytest.raises(QuotaError):
        quota()
    with pytest.raises(Blocked):
        blocked()
    assert spans.attributes("quota")["error.type"] == "QUOTA_EXCEEDED"
    assert spans.attributes("quota")["blameset.error.retryable"] is True
    assert spans.attributes("quota")["blameset.final_status"] == "failure"
    assert spans.attributes("blocked")["error.type"] == "BUDGET_EXHAUSTED"
    assert spans.attributes("blocked")["blameset.final_status"] == "blocked"


def test_async_exception_propagates_unchanged(spans: CapturedSpans):
    """Same for coroutines: the same object reaches the awaiting caller."""
    original = ValueError("bad input")

    @traced("handler")
    async def handler() -> None:
        raise original

    with pytest.raises(ValueError) as info:
        asyncio.run(handler())
    assert info.value is original
    assert spans.attributes("handler")["error.type"] == "ValueError"


def test_degraded_final_status(spans: CapturedSpans):
    """A fallback that answers marks the request degraded, with the boundary it took."""

    @traced("handler")
    def handler() -> str:
        set_final_status("degraded", boundary="degraded")
        return "static answer"

    assert handler() == "static answer"
    a = spans.attributes("handler")
    assert a["blameset.final_status"] == "degraded"
    assert a["blameset.boundary"] == "degraded"
    with pytest.raises(ValueError, match="final status"):
        set_final_status("meh")


# --- generators ------------------------------------------------------------------------------


def test_generator_span_ends_when_exhausted_and_ttft_ignores_a_slow_consumer(
    spans: CapturedSpans, clock: FakeClock
):
    """TTFT is time to the first item the consumer receives; the span ends at exhaustion."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def stream():
        clock.advance(30)
        yield "a"
        clock.advance(5)
        yield "b"
        record_usage(input_tokens=100, output_tokens=2)

    @traced("handler")
    def handler() -> list[str]:
        out = []
        for item in stream():
            clock.advance(100)  # a consumer that reads slowly
            out.append(item)
        return out

    gen = stream()
    assert spans.names() == []  # creating the generator starts nothing
    del gen
    assert handler() == ["a", "b"]
    llm = spans.one("chat gpt-4o-2024-08-06")
    assert llm.attributes["blameset.latency.ttft_ms"] == 30.0
    assert llm.attributes["gen_ai.response.time_to_first_chunk"] == 0.030
    assert (llm.end_time - llm.start_time) / 1e6 == 235.0
    assert "blameset.stream.closed_early" not in llm.attributes
    req = spans.attributes("handler")
    assert req["blameset.latency.ttft_ms"] == 30.0
    assert req["gen_ai.usage.output_tokens"] == 2


def test_generator_closed_early_by_break(spans: CapturedSpans, clock: FakeClock):
    """break (then garbage collection) closes the stream: the span ends, marked closed early."""
    finalized = []

    @traced.llm(model="m")
    def stream():
        try:
            for i in range(10):
                clock.advance(1)
                yield i
        finally:
            finalized.append(True)

    for item in stream():
        if item == 2:
            break
    assert finalized == [True]
    a = spans.attributes("chat m")
    assert a["blameset.stream.closed_early"] is True
    assert a["blameset.latency.ttft_ms"] == 1.0


def test_generator_send_throw_and_return_value_pass_through(spans: CapturedSpans):
    """send() reaches the inner generator, throw() is delivered inside it, return value kept."""

    @traced("echo")
    def echo():
        received = []
        while True:
            try:
                value = yield len(received)
            except KeyError:
                received.append("thrown")
                continue
            if value is None:
                return received
            received.append(value)

    gen = echo()
    assert next(gen) == 0
    assert gen.send("a") == 1
    assert gen.throw(KeyError("k")) == 2
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == ["a", "thrown"]
    assert spans.attributes("echo")["blameset.final_status"] == "success"


def test_generator_error_midway_is_recorded_and_reraised(spans: CapturedSpans):
    """An exception inside the stream ends the span as a failure and reaches the consumer."""
    original = ConnectionError("upstream reset")

    @traced("handler")
    def stream():
        yield 1
        raise original

    with pytest.raises(ConnectionError) as info:
        list(stream())
    assert info.value is original
    assert spans.attributes("handler")["error.type"] == "ConnectionError"


def test_consumer_code_between_items_runs_outside_the_span(spans: CapturedSpans):
    """Between items the consumer runs in its own context, not as the stream's child."""

    @traced.llm(model="m")
    def stream():
        yield 1
        yield 2

    @traced.tool("consumer_tool")
    def tool() -> None:
        pass

    @traced("handler")
    def handler() -> None:
        for _ in stream():
            tool()

    handler()
    req = spans.one("handler")
    for t in spans.named("execute_tool consumer_tool"):
        assert t.parent.span_id == req.context.span_id


def test_async_generator_aclose_ends_the_span(spans: CapturedSpans, clock: FakeClock):
    """aclose() after the first item ends the span (closed early); TTFT is the first item's."""

    @traced.llm(model="m")
    async def stream():
        clock.advance(25)
        yield "a"
        clock.advance(25)
        yield "b"

    async def main() -> str:
        gen = stream()
        first = await gen.__anext__()
        clock.advance(500)
        await gen.aclose()
        return first

    assert asyncio.run(main()) == "a"
    a = spans.attributes("chat m")
    assert a["blameset.latency.ttft_ms"] == 25.0
    assert a["blameset.stream.closed_early"] is True
    span = spans.one("chat m")
    assert (span.end_time - span.start_time) / 1e6 == 525.0


def test_async_generator_streams_inside_a_request(spans: CapturedSpans, clock: FakeClock):
    """An async streaming LLM call inside an async request: TTFT, usage and parents roll up."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    async def stream():
        clock.advance(80)
        yield "x"
        record_usage(input_tokens=2000, output_tokens=1)

    @traced("handler")
    async def handler() -> list[str]:
        return [x async for x in stream()]

    assert asyncio.run(handler()) == ["x"]
    assert (
        spans.one("chat gpt-4o-2024-08-06").parent.span_id == spans.one("handler").context.span_id
    )
    assert spans.attributes("handler")["blameset.latency.ttft_ms"] == 80.0
    assert spans.attributes("handler")["gen_ai.usage.input_tokens"] == 2000


def test_async_generator_athrow_reaches_the_inner_generator(spans: CapturedSpans):
    """athrow() is delivered inside the wrapped async generator."""

    @traced("agen")
    async def agen():
        try:
            yield 1
        except KeyError:
            yield "caught"

    async def main() -> object:
        gen = agen()
        await gen.__anext__()
        value = await gen.athrow(KeyError("k"))
        await gen.aclose()
        return value

    assert asyncio.run(main()) == "caught"


# --- context managers --------------------------------------------------------------------------


def test_context_manager_forms(spans: CapturedSpans, clock: FakeClock):
    """traced(...) works as `with` and `async with`, yielding the span, exceptions recorded."""
    with traced("block") as span:
        span.set_attribute("custom", 1)
        clock.advance(3)
    with pytest.raises(KeyError), traced("failing"):
        raise KeyError("x")

    async def main() -> None:
        async with traced.tool("async_tool"):
            clock.advance(2)

    asyncio.run(main())
    assert spans.attributes("block")["custom"] == 1
    assert spans.attributes("block")["blameset.latency.total_ms"] == 3.0
    assert spans.attributes("failing")["error.type"] == "KeyError"
    assert spans.names() == ["block", "failing", "execute_tool async_tool"]


def test_shared_context_manager_object_nests(spans: CapturedSpans):
    """One traced(...) object reused in nested with-blocks ends the right span each time."""
    op = traced.step("op")
    with traced("outer"), op:
        with op:
            pass
        instrument.current_span().set_attribute("which", "outer-op")
    ops = spans.named("op")
    assert len(ops) == 2
    assert ops[0].parent.span_id == ops[1].context.span_id
    assert ops[1].attributes["which"] == "outer-op"


# --- context propagation -----------------------------------------------------------------------


def test_context_across_asyncio_gather(spans: CapturedSpans, clock: FakeClock):
    """Tasks made by gather inherit tenant, trace and request; their usage rolls up."""

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    async def complete(i: int) -> int:
        await asyncio.sleep(0)
        record_usage(input_tokens=100 * i, output_tokens=i)
        return i

    @traced("fan_out")
    async def handler() -> list[int]:
        return list(await asyncio.gather(complete(1), complete(2), complete(3)))

    async def main() -> list[int]:
        with request_context(tenant="acme", user="u1", actor="svc", action_id="act-9"):
            return await handler()

    assert asyncio.run(main()) == [1, 2, 3]
    req = spans.one("fan_out")
    llms = spans.named("chat gpt-4o-2024-08-06")
    assert len(llms) == 3
    for s in llms:
        assert s.parent.span_id == req.context.span_id
        assert s.context.trace_id == req.context.trace_id
        assert s.attributes["blameset.tenant.id"] == "acme"
        assert s.attributes["blameset.action_id"] == "act-9"
    assert req.attributes["user.id"] == "u1"
    assert req.attributes["blameset.actor"] == "svc"
    assert req.attributes["gen_ai.usage.input_tokens"] == 600
    assert req.attributes["gen_ai.usage.output_tokens"] == 6


def test_context_into_threads(spans: CapturedSpans, clock: FakeClock):
    """Threads started with copy_context() or bind_context() keep trace, tenant and roll-up."""

    @traced.tool("lookup")
    def lookup() -> None:
        clock.advance(10)

    @traced("handler")
    def handler() -> None:
        ctx = contextvars.copy_context()
        t1 = threading.Thread(target=ctx.run, args=(lookup,))
        t2 = threading.Thread(target=instrument.bind_context(lookup))
        t1.start()
        t1.join()
        t2.start()
        t2.join()

    with request_context(tenant="acme"):
        handler()
    req = spans.one("handler")
    tools = spans.named("execute_tool lookup")
    assert [t.parent.span_id for t in tools] == [req.context.span_id] * 2
    assert all(t.attributes["blameset.tenant.id"] == "acme" for t in tools)
    assert req.attributes["blameset.latency.tool_ms"] == 20.0


def test_context_into_asyncio_to_thread(spans: CapturedSpans):
    """asyncio.to_thread copies the context on its own."""

    @traced.tool("blocking_io")
    def blocking() -> str:
        return "done"

    @traced("handler")
    async def handler() -> str:
        return await asyncio.to_thread(blocking)

    assert asyncio.run(handler()) == "done"
    assert (
        spans.one("execute_tool blocking_io").parent.span_id == spans.one("handler").context.span_id
    )


def test_per_request_version_override(spans: CapturedSpans):
    """A request may run another prompt version: its spans report the overridden set."""

    @traced("handler")
    def handler() -> None:
        pass

    handler()
    with request_context(versions={"prompt": "outline@v5"}):
        handler()
    with request_context(versions=instrument.VersionSet(code="other")):
        handler()
    first, second, third = (s.attributes for s in spans.named("handler"))
    assert first["blameset.version_set.id"] == VS.id
    assert not [k for k in first if k.startswith("blameset.version.")]
    v5 = VS.replace(prompt="outline@v5")
    assert second["blameset.version_set"] == v5.canonical
    assert second["blameset.version_set.id"] == v5.id
    # Only the overridden component is on the span; merged over the resource, each is right.
    assert [k for k in second if k.startswith("blameset.version.")] == ["blameset.version.prompt"]
    assert second["blameset.version.prompt"] == "outline@v5"
    assert third["blameset.version_set"] == "code=other"
    assert third["blameset.version.code"] == "other"
    assert third["blameset.version.prompt"] == ""  # removed by the override


def test_request_context_nests_and_restores():
    """Inner request_context() keeps outer fields it does not set, and restores on exit."""
    with request_context(tenant="a", versions={"prompt": "p2"}):
        with request_context(actor="bob", versions={"model": "m2"}) as ctx:
            assert ctx.tenant == "a"
            assert ctx.actor == "bob"
            assert dict(ctx.versions) == {"prompt": "p2", "model": "m2"}
        assert instrument.current_context().actor is None
    assert instrument.current_context().tenant is None
