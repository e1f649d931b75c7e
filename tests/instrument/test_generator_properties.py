"""Property: a traced generator behaves exactly like the bare one under any consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from blameset.instrument import traced
from blameset.instrument.testing import capture_spans


class Boom(Exception):
    pass


def make_gen(script: list[str]) -> Callable[[], Any]:
    """A generator that yields, catches some thrown errors, raises or returns per script."""

    def gen():
        received = []
        for step in script:
            if step == "raise":
                raise Boom("inner")
            if step == "return":
                return received
            try:
                value = yield len(received)
                received.append(value)
            except KeyError:
                received.append("caught")
        return received

    return gen


def make_agen(script: list[str]) -> Callable[[], Any]:
    async def agen():
        received = []
        for step in script:
            if step == "raise":
                raise Boom("inner")
            if step == "return":
                return
            try:
                value = yield len(received)
                received.append(value)
            except KeyError:
                received.append("caught")

    return agen


scripts = st.lists(st.sampled_from(["yield", "yield", "yield", "raise", "return"]), max_size=6)
ops = st.lists(st.sampled_from(["next", "send", "throw_key", "throw_value", "close"]), max_size=8)


def drive(gen: Any, operations: list[str]) -> list[Any]:
    log: list[Any] = []
    for op in operations:
        try:
            if op == "next":
                log.append(("item", next(gen)))
            elif op == "send":
                log.append(("item", gen.send("v")))
            elif op == "throw_key":
                log.append(("item", gen.throw(KeyError("k"))))
            elif op == "throw_value":
                log.append(("item", gen.throw(ValueError("v"))))
            else:
                gen.close()
                log.append(("closed",))
        except StopIteration as stop:
            log.append(("stop", stop.value))
        except Exception as exc:
            log.append(("error", type(exc).__name__, str(exc)))
    return log


async def adrive(gen: Any, operations: list[str]) -> list[Any]:
    log: list[Any] = []
    for op in operations:
        try:
            if op == "next":
                log.append(("item", await gen.__anext__()))
            elif op == "send":
                log.append(("item", await gen.asend("v")))
            elif op == "throw_key":
                log.append(("item", await gen.athrow(KeyError("k"))))
            elif op == "throw_value":
                log.append(("item", await gen.athrow(ValueError("v"))))
            else:
                await gen.aclose()
                log.append(("closed",))
        except StopAsyncIteration:
            log.append(("stop",))
        except Exception as exc:
            log.append(("error", type(exc).__name__, str(exc)))
    return log


def body_runs(operations: list[str]) -> bool:
    """Whether these operations start a fresh generator: only next() does; send(non-None) is
    refused and leaves it unstarted; throw() and close() finish it unstarted."""
    for op in operations:
        if op == "next":
            return True
        if op != "send":
            return False
    return False


@settings(max_examples=150, deadline=None)
@given(scripts, ops)
def test_traced_generator_is_indistinguishable(script: list[str], operations: list[str]):
    """Same items, return values and exceptions for any mix of next/send/throw/close."""
    bare = make_gen(script)
    with capture_spans() as spans:
        wrapped = traced("g")(make_gen(script))
        expected = drive(bare(), [*operations, "close"])
        got = drive(wrapped(), [*operations, "close"])
    assert got == expected
    assert len(spans) == (1 if body_runs(operations) else 0)
    assert all(span.end_time is not None for span in spans)


@settings(max_examples=100, deadline=None)
@given(scripts, ops)
def test_traced_async_generator_is_indistinguishable(script: list[str], operations: list[str]):
    """The same for async generators (asend/athrow/aclose delegated by hand)."""
    bare = make_agen(script)
    with capture_spans() as spans:
        wrapped = traced("g")(make_agen(script))
        expected = asyncio.run(adrive(bare(), [*operations, "close"]))
        got = asyncio.run(adrive(wrapped(), [*operations, "close"]))
    assert got == expected
    assert len(spans) == (1 if body_runs(operations) else 0)
    assert all(span.end_time is not None for span in spans)
