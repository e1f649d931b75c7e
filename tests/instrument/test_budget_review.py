"""Budgets under the conditions a review found them wanting."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset.cli.app import app
from blameset.instrument import record_usage, traced
from blameset.instrument.budget import Budget, degrade
from blameset.instrument.errors import BudgetExhausted, Internal, InvalidInput
from blameset.instrument.stores import MemoryStore
from blameset.instrument.testing import CapturedSpans
from tests.conftest import NOON
from tests.conftest import HandClock as Clock


@pytest.fixture
def store(ledger_store):
    return ledger_store


def test_a_late_settle_still_counts_in_every_store(store):
    """A hold settled after it expired (and after its minute window's record went) still
    counts: the money was spent. Same in memory, SQLite and Redis."""
    clock, who = Clock(), f"t-{uuid.uuid4().hex[:8]}"
    budget = Budget(
        store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, hold_ttl_s=600, clock=clock
    )
    first = budget.reserve(tenant=who, estimate_usd=1.00)
    clock.t += 660  # the hold expired; another reservation sees room again
    second = budget.reserve(tenant=who, estimate_usd=1.00)
    first.settle(1.00)
    second.settle(1.00)
    day = next(r for r in budget.status([who])["tenants"] if r["window"] == "day")
    assert day["settled_usd"] == pytest.approx(2.00)


@pytest.mark.parametrize("amount", [-5.0, math.nan, math.inf])
def test_amounts_that_no_budget_can_hold_are_refused(amount: float):
    """Negative, NaN and infinite estimates or actuals are INVALID_INPUT, never let through."""
    budget = Budget(MemoryStore(), clock=Clock())
    with pytest.raises(InvalidInput):
        budget.reserve(tenant="acme", estimate_usd=amount)
    hold = budget.reserve(tenant="acme", estimate_usd=0.10)
    with pytest.raises(InvalidInput):
        hold.settle(actual_usd=amount)


class DownStore(MemoryStore):
    down = False

    def budget_reserve(self, *a, **k):
        if self.down:
            raise ConnectionError("store down")
        return super().budget_reserve(*a, **k)

    def budget_settle(self, *a, **k):
        if self.down:
            raise ConnectionError("store down")
        return super().budget_settle(*a, **k)


def test_a_store_outage_fails_closed_before_and_never_raises_after(caplog):
    """Store down before the call: INTERNAL, nothing spent. Down after: the reply survives."""
    store = DownStore()
    budget = Budget(store, clock=Clock())
    with caplog.at_level(logging.ERROR, logger="blameset"):
        with budget.reserve(tenant="acme", estimate_usd=0.10) as hold:
            store.down = True
            hold.settle(0.05)  # logged, not raised
        reply = "the paid answer"
    assert reply == "the paid answer"
    assert "missing from the budget store" in caplog.text
    with pytest.raises(Internal, match="budget store unavailable"):
        budget.reserve(tenant="acme", estimate_usd=0.10)


def test_generator_tools_count_against_the_request():
    """Streaming tools (generators, async generators) count like any tool call."""
    budget = Budget(MemoryStore(), request_max_tool_calls=3)

    @traced.tool("stream_search")
    def stream():
        yield 1

    @traced.tool("astream")
    async def astream():
        yield 1

    async def drain() -> None:
        async for _ in astream():
            pass

    with budget.request() as guard:
        list(stream())
        asyncio.run(drain())
        list(stream())
        with pytest.raises(BudgetExhausted):
            list(stream())
    assert guard.tool_calls == 4


def test_a_nested_request_block_shares_the_outer_count():
    """An inner budget.request() does not hand out a fresh allowance."""
    budget = Budget(MemoryStore(), request_max_tool_calls=4)

    @traced.tool("t")
    def tool() -> None:
        pass

    with budget.request() as outer:
        for _ in range(3):
            tool()
        with budget.request() as inner:
            assert inner is outer
            tool()
            with pytest.raises(BudgetExhausted):
                tool()


def test_a_young_service_at_steady_spend_does_not_trip_the_breaker():
    """Three hours of flat $30/h: no spike (the baseline is those hours, not 24)."""
    clock = Clock()
    budget = Budget(
        MemoryStore(),
        tenant_per_minute_usd=None,
        tenant_per_day_usd=None,
        breaker_check_s=0,
        min_history_hours=2,
        clock=clock,
    )
    for h in range(3, 0, -1):
        clock.t = NOON - h * 3600 + 30
        budget.reserve(tenant="bulk", estimate_usd=30.0, core=True).settle()
    clock.t = NOON
    budget.reserve(tenant="bulk", estimate_usd=30.0, core=True).settle()
    assert budget.breaker_state() == "closed"


class CountingStore(MemoryStore):
    reads = 0

    def budget_spent(self, *a, **k):
        self.reads += 1
        return super().budget_spent(*a, **k)


def test_an_open_breaker_does_not_read_the_store_on_every_request():
    """While open and cooling down, refusals cost no store reads."""
    clock = Clock()
    store = CountingStore()
    budget = Budget(
        store,
        tenant_per_minute_usd=None,
        tenant_per_day_usd=None,
        breaker_check_s=0,
        breaker_cooldown_s=300,
        clock=clock,
    )
    for h in range(2, 26):
        clock.t = NOON - h * 3600 + 10
        budget.reserve(tenant="bulk", estimate_usd=2.0, core=True).settle()
    clock.t = NOON - 600
    budget.reserve(tenant="bulk", estimate_usd=20.0, core=True).settle()
    clock.t = NOON
    assert budget.breaker_state() == "open"
    reads = store.reads
    for _ in range(50):
        with pytest.raises(BudgetExhausted):
            budget.reserve(tenant="acme", estimate_usd=0.01)
    assert store.reads == reads


def test_a_token_overrun_still_records_the_call_that_crossed_the_line(spans: CapturedSpans):
    """The LLM span that crossed the limit keeps its tokens and cost, and rolls up."""
    budget = Budget(MemoryStore())

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete() -> None:
        record_usage(input_tokens=60_000, output_tokens=0)

    @traced("handler")
    def handler() -> None:
        with budget.request():
            complete()
            complete()

    with pytest.raises(BudgetExhausted):
        handler()
    second = spans.named("chat gpt-4o-2024-08-06")[1].attributes
    assert second["gen_ai.usage.input_tokens"] == 60_000
    assert "blameset.cost.usd" in second
    assert spans.attributes("handler")["gen_ai.usage.input_tokens"] == 120_000


def test_degrade_marks_the_request_span_even_from_a_step(spans: CapturedSpans):
    """The level and limit that tripped land on the request, not on the step that was refused."""
    budget = Budget(MemoryStore(), tenant_per_minute_usd=0.01, clock=Clock())

    @traced.step("generate")
    @degrade(lambda: "static answer")
    def generate() -> str:
        with budget.reserve(tenant="acme", estimate_usd=1.0):
            return "fresh"

    @traced("handler")
    def handler() -> str:
        return generate()

    assert handler() == "static answer"
    a = spans.attributes("handler")
    assert a["blameset.final_status"] == "degraded"
    assert a["blameset.budget.level"] == "tenant"
    assert a["blameset.budget.limit"] == "tenant_per_minute_usd"


def test_a_tenant_named_like_a_window_gets_the_right_limit_named():
    """The limit that tripped is found by window, not by a substring of its key."""
    budget = Budget(
        MemoryStore(), tenant_per_minute_usd=None, tenant_per_day_usd=0.5, clock=Clock()
    )
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(tenant="odd:m:tenant", estimate_usd=1.0)
    assert info.value.span_attributes["blameset.budget.limit"] == "tenant_per_day_usd"


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("memory", "lives inside one process"),
        ("sqlite:/nonexistent/dir/x.db", "no SQLite store"),
        ("redis://127.0.0.1:9/0", "cannot read store"),
    ],
)
def test_budget_status_refuses_stores_it_cannot_read(store: str, message: str):
    """Exit 2 with a reason, no traceback, no stray files."""
    result = CliRunner().invoke(app, ["budget", "status", "--store", store, "--tenant", "acme"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not Path("/nonexistent/dir").exists()
