"""Finished spans are freed by reference counting: no recorder is left for the cyclic GC."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from blameset import instrument
from blameset.instrument import traced
from blameset.instrument.testing import CapturedSpans
from blameset.instrument.tracing import _Recorder, record_first_token


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_request_llm_tool_and_stream_leave_no_cycle(
    spans: CapturedSpans, no_collector: None
) -> None:
    """A request with a streamed LLM call (TTFT rolled up), a priced one and a tool leaves no
    recorder that only the cyclic GC could free."""

    @traced.llm(model="gpt-4o", provider="openai")
    def chat() -> int:
        record_first_token()
        instrument.record_usage(input_tokens=10, output_tokens=5)
        return 1

    @traced.tool("search")
    def tool() -> int:
        return 1

    @traced("req")
    def req() -> int:
        return chat() + tool()

    with instrument.request_context(tenant="acme"):
        for _ in range(5):
            req()
    assert len(spans.named("req")) == 5  # recorded: the path with roll-ups ran
    gc.collect()
    assert [o for o in gc.garbage if isinstance(o, _Recorder)] == []
