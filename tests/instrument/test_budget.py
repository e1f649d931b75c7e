"""Budgets: reserve then settle, three levels, degrade, window roll-over, across processes."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
import uuid
import weakref
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from typer.testing import CliRunner

from blameset.cli.app import app
from blameset.instrument import record_usage, traced
from blameset.instrument.budget import MICROS, Budget, degrade, usd_to_micros
from blameset.instrument.errors import BudgetExhausted, Internal, InvalidInput
from blameset.instrument.stores import MemoryStore
from blameset.instrument.testing import CapturedSpans
from tests.conftest import NOON
from tests.conftest import HandClock as Clock


@pytest.fixture
def store(ledger_store):
    return ledger_store


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_reserve_settle_and_refuse_before_spending(store):
    """Holds count against the limit; one that would cross it is refused, nothing held."""
    clock, who = Clock(), tenant()
    budget = Budget(store, tenant_per_minute_usd=1.00, tenant_per_day_usd=10, clock=clock)
    with budget.reserve(tenant=who, estimate_usd=0.60) as first:
        with pytest.raises(BudgetExhausted) as info:
            budget.reserve(tenant=who, estimate_usd=0.50)  # 0.60 held + 0.50 > 1.00
        assert info.value.span_attributes["blameset.budget.limit"] == "tenant_per_minute_usd"
        first.settle(actual_usd=0.30)
    with budget.reserve(tenant=who, estimate_usd=0.70) as second:
        second.release()  # nothing spent
    row = budget.status([who])["tenants"][0]
    assert row["settled_usd"] == pytest.approx(0.30)
    assert row["held_usd"] == 0


@pytest.mark.parametrize("boundary", ["minute", "day"])
def test_windows_roll_over_at_utc_boundaries(store, boundary: str):
    """Fixed UTC windows: a full minute (or day) frees up exactly at the next one."""
    clock, who = Clock(), tenant()
    if boundary == "minute":
        clock.t = datetime(2026, 3, 1, 12, 0, 59, tzinfo=UTC).timestamp()
        budget = Budget(store, tenant_per_minute_usd=1.00, tenant_per_day_usd=None, clock=clock)
    else:
        clock.t = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC).timestamp()
        budget = Budget(store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, clock=clock)
    budget.reserve(tenant=who, estimate_usd=1.00).settle(1.00)
    with pytest.raises(BudgetExhausted):
        budget.reserve(tenant=who, estimate_usd=0.01)
    clock.t += 0.999
    with pytest.raises(BudgetExhausted):
        budget.reserve(tenant=who, estimate_usd=0.01)
    clock.t += 0.001  # exactly the next minute / day
    budget.reserve(tenant=who, estimate_usd=1.00).settle(1.00)


def test_minute_spend_still_counts_in_the_day(store):
    """A new minute frees the minute limit, not the day's."""
    clock, who = Clock(), tenant()
    budget = Budget(store, tenant_per_minute_usd=1.00, tenant_per_day_usd=1.50, clock=clock)
    budget.reserve(tenant=who, estimate_usd=1.00).settle()
    clock.t += 60
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(tenant=who, estimate_usd=0.60)
    assert info.value.span_attributes["blameset.budget.limit"] == "tenant_per_day_usd"


def test_a_hold_left_behind_by_a_dead_process_expires(store):
    """A hold never settled or released stops counting after hold_ttl_s."""
    clock, who = Clock(), tenant()
    budget = Budget(
        store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, hold_ttl_s=30, clock=clock
    )
    budget.reserve(tenant=who, estimate_usd=1.00)  # the process "dies" holding it
    with pytest.raises(BudgetExhausted):
        budget.reserve(tenant=who, estimate_usd=0.10)
    clock.t += 31
    budget.reserve(tenant=who, estimate_usd=0.10).settle()


def test_leaving_the_block_by_an_exception_settles_at_the_estimate():
    """Money that cannot be proven unspent counts: an exception settles at the estimate."""
    budget = Budget(MemoryStore(), clock=Clock())
    with pytest.raises(RuntimeError), budget.reserve(tenant="acme", estimate_usd=0.25):
        raise RuntimeError("connection reset after the call")
    assert budget.status(["acme"])["tenants"][0]["settled_usd"] == pytest.approx(0.25)


# --- the state machine ---------------------------------------------------------------------------


class BudgetMachine(RuleBasedStateMachine):
    """Any interleaving of reserve / settle / release / clock moves keeps settled spend in each
    window within limit + the excesses (actual - estimate) settled in it + whatever was settled
    after its hold had expired (the limit checks in between no longer counted it)."""

    @initialize()
    def setup(self) -> None:
        self.clock = Clock()
        self.budget = Budget(
            MemoryStore(),
            tenant_per_minute_usd=1.00,
            tenant_per_day_usd=3.00,
            hold_ttl_s=90,
            clock=self.clock,
        )
        self.holds: list = []
        self.settled: dict[str, int] = {}
        self.excess: dict[str, int] = {}

    @rule(cents=st.integers(1, 60))
    def reserve(self, cents: int) -> None:
        try:
            hold = self.budget.reserve(tenant="acme", estimate_usd=cents / 100)
        except BudgetExhausted:
            return
        self.holds.append((hold, self.clock.t))

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 100), factor=st.sampled_from([0, 0.5, 1, 1, 1.2, 2]))
    def settle(self, pick: int, factor: float) -> None:
        hold, made_at = self.holds.pop(pick % len(self.holds))
        actual = usd_to_micros(hold.estimate_usd * factor)
        hold.settle(actual_usd=actual / MICROS)
        late = self.clock.t >= made_at + 90  # expired: no longer counted when others reserved
        for key in hold._keys:
            if key.startswith("t:"):
                self.settled[key] = self.settled.get(key, 0) + actual
                over = actual if late else max(0, actual - hold._estimate)
                self.excess[key] = self.excess.get(key, 0) + over

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 100))
    def release(self, pick: int) -> None:
        self.holds.pop(pick % len(self.holds))[0].release()

    @rule(seconds=st.sampled_from([1, 10, 30, 59, 60, 120, 3600, 86_400]))
    def tick(self, seconds: int) -> None:
        self.clock.t += seconds

    @invariant()
    def within_limits(self) -> None:
        for key, settled in self.settled.items():
            limit = usd_to_micros(1.00) if ":m:" in key else usd_to_micros(3.00)
            assert settled <= limit + self.excess.get(key, 0), (key, settled, self.excess)


TestBudgetMachine = BudgetMachine.TestCase
TestBudgetMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --- across processes ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_sixteen_workers_settle_exactly_one_hundred_cents(backend, tmp_path: Path, request):
    """4 processes x 4 threads reserving $0.01 against $1.00/day: exactly 100 settle."""
    spec = (
        f"sqlite:{tmp_path / 'budget.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("redis_url"))
    )
    now = NOON + (hash(backend) % 1000) * 86_400 + (uuid.uuid4().int % 10_000) * 86_400
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    worker = Path(__file__).with_name("budget_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), spec, "4", "12", str(now)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    settled = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        settled += int(out)
    assert settled == 100
    budget = Budget(spec, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, clock=lambda: now)
    day = next(r for r in budget.status(["acme"])["tenants"] if r["window"] == "day")
    assert day["settled_usd"] == pytest.approx(1.00)


# --- per request, degrade, breaker -------------------------------------------------------------


def test_the_eleventh_tool_call_interrupts_the_request(spans: CapturedSpans):
    """Per request: ten tool calls run; the eleventh raises BUDGET_EXHAUSTED before it runs."""
    budget = Budget(MemoryStore())
    ran = []

    @traced.tool("search")
    def search(i: int) -> None:
        ran.append(i)

    @traced("agent_loop")
    def agent() -> None:
        with budget.request():
            for i in range(20):
                search(i)

    with pytest.raises(BudgetExhausted) as info:
        agent()
    assert ran == list(range(10))
    assert info.value.span_attributes["blameset.budget.limit"] == "request_max_tool_calls"
    a = spans.attributes("agent_loop")
    assert a["blameset.final_status"] == "blocked"
    assert a["error.type"] == "BUDGET_EXHAUSTED"
    assert a["blameset.budget.level"] == "request"


def test_a_token_overrun_interrupts_the_request():
    """Per request: usage past 100k tokens raises at the record that crosses the line."""
    budget = Budget(MemoryStore())

    @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
    def complete(tokens: int) -> None:
        record_usage(input_tokens=tokens, output_tokens=0)

    with budget.request() as guard:
        complete(60_000)
        with pytest.raises(BudgetExhausted, match="100000"):
            complete(50_000)
    assert guard.tokens == 110_000


def test_degrade_runs_the_fallback_and_says_so(spans: CapturedSpans):
    """A refused call runs its fallback; the request is degraded, naming the limit that tripped."""
    budget = Budget(MemoryStore(), tenant_per_minute_usd=0.01, clock=Clock())

    def cached_answer(topic: str) -> str:
        return f"cached outline for {topic}"

    @traced("generate_outline")
    @degrade(cached_answer)
    def generate(topic: str) -> str:
        with budget.reserve(tenant="acme", estimate_usd=0.05):
            return "fresh outline"

    assert generate("otel") == "cached outline for otel"
    a = spans.attributes("generate_outline")
    assert a["blameset.final_status"] == "degraded"
    assert a["blameset.boundary"] == "degraded"
    assert a["blameset.budget.level"] == "tenant"
    assert a["blameset.budget.limit"] == "tenant_per_minute_usd"


def _spend(budget: Budget, clock: Clock, at: float, usd: float) -> None:
    saved, clock.t = clock.t, at
    budget.reserve(tenant="bulk", estimate_usd=usd, core=True).settle()
    clock.t = saved


def test_the_global_breaker_opens_on_a_spike_and_closes_after(spans: CapturedSpans):
    """+500% over the trailing baseline opens the breaker: only core routes run; half-open after
    the cooldown lets probes through; back under the line it closes."""
    clock = Clock()
    budget = Budget(
        MemoryStore(),
        tenant_per_minute_usd=None,
        tenant_per_day_usd=None,
        spike_ratio=5,
        baseline_hours=24,
        breaker_cooldown_s=300,
        breaker_check_s=0,
        probe_every=4,
        core_routes=["/v1/export"],
        clock=clock,
    )
    for h in range(2, 26):  # $2/h baseline over the 24 hours before the last one
        _spend(budget, clock, NOON - h * 3600 + 10, 2.0)
    assert budget.breaker_state() == "closed"
    _spend(budget, clock, NOON - 600, 11.0)  # $11 in the last hour > 5 x $2
    assert budget.breaker_state() == "open"
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(tenant="acme", estimate_usd=0.01, route="/v1/outline")
    assert info.value.span_attributes["blameset.budget.level"] == "global"
    budget.reserve(tenant="acme", estimate_usd=0.01, route="/v1/export").settle()  # core runs
    clock.t += 301
    assert budget.breaker_state() == "half_open"
    outcomes = []
    for _ in range(8):
        try:
            budget.reserve(tenant="acme", estimate_usd=0.0, route="/v1/outline").release()
            outcomes.append("probe")
        except BudgetExhausted:
            outcomes.append("refused")
    assert outcomes.count("probe") == 2  # one in four
    clock.t += 3600  # the spike leaves the last-hour window
    assert budget.breaker_state() == "closed"
    budget.reserve(tenant="acme", estimate_usd=0.01, route="/v1/outline").settle()


def test_estimate_prices_input_plus_the_most_output():
    """The estimate uses the same price table as record_usage: gpt-4o 1000 in + 500 out max."""
    assert Budget(MemoryStore()).estimate("gpt-4o-2024-08-06", 1000, 500, "openai") == (
        pytest.approx(0.0075)
    )
    assert Budget(MemoryStore()).estimate("no-such-model-zz", 1000, 500) == 0.0


def test_budget_status_command(tmp_path: Path):
    """blameset budget status shows spend per tenant and window, and the breaker state."""
    spec = f"sqlite:{tmp_path / 'b.db'}"
    Budget(spec, clock=Clock()).reserve(tenant="acme", estimate_usd=0.40).settle(0.25)
    result = CliRunner().invoke(
        app, ["budget", "status", "--store", spec, "--tenant", "acme", "--at", str(NOON), "--json"]
    )
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    minute = next(r for r in status["tenants"] if r["window"] == "minute")
    assert minute["settled_usd"] == pytest.approx(0.25)
    assert status["breaker"]["state"] == "closed"
    table = CliRunner().invoke(
        app, ["budget", "status", "--store", spec, "--tenant", "acme", "--at", str(NOON)]
    )
    assert table.exit_code == 0
    assert "acme" in table.output and "closed" in table.output


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


# --- the lease heartbeat ----------------------------------------------------------------------


def test_a_renewed_hold_outlives_its_ttl_in_every_store(store):
    """renew extends a live hold: past its first TTL it still counts, and settles on time."""
    clock, who = Clock(), tenant()
    budget = Budget(
        store,
        tenant_per_minute_usd=None,
        tenant_per_day_usd=1.00,
        hold_ttl_s=30,
        renew_holds=False,  # renewed by hand here, at hand-moved times
        clock=clock,
    )
    hold = budget.reserve(tenant=who, estimate_usd=1.00)
    for _ in range(3):
        clock.t += 20
        assert hold.renew()
    # 60 s after the reservation, twice its TTL: still held.
    with pytest.raises(BudgetExhausted):
        budget.reserve(tenant=who, estimate_usd=0.10)
    hold.settle(1.00)
    assert not hold.late and budget.late_settles == 0
    assert not hold.renew()  # a settled hold is not renewed back to life


def test_an_expired_hold_is_not_renewed_and_its_late_settle_is_counted_logged_and_marked(
    store, spans: CapturedSpans, caplog
):
    """A hold past its TTL cannot be renewed (others may hold its room); its settle still counts
    and is a late settle: counted, logged, an event on the span, and the overspent window named
    on the request span."""
    clock, who = Clock(), tenant()
    budget = Budget(
        store,
        tenant_per_minute_usd=None,
        tenant_per_day_usd=1.00,
        hold_ttl_s=30,
        renew_holds=False,
        clock=clock,
    )

    @traced("export")
    def export() -> None:
        first = budget.reserve(tenant=who, estimate_usd=0.80)
        clock.t += 31
        assert not first.renew() and first.lost
        budget.reserve(tenant=who, estimate_usd=0.80).settle()  # the room it left
        first.settle(0.80)
        assert first.late

    with caplog.at_level(logging.WARNING, logger="blameset"):
        export()
    assert budget.late_settles == 1 and budget.overspends == 1
    assert "after it had expired" in caplog.text
    assert "overspent: $1.600000 settled against a $1.000000 limit" in caplog.text
    span = spans.named("export")[0]
    assert span.attributes["blameset.budget.late_settle"] is True
    assert span.attributes["blameset.budget.overspent"] is True
    events = {e.name: e.attributes for e in span.events}
    assert events["blameset.budget.overspent"]["blameset.budget.over_usd"] == pytest.approx(0.6)


def test_an_on_time_settle_is_not_late_in_every_store(store):
    """A settle within the hold's TTL is not counted as late, nor is its window overspent."""
    clock, who = Clock(), tenant()
    budget = Budget(store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, clock=clock)
    hold = budget.reserve(tenant=who, estimate_usd=0.50)
    clock.t += 599
    hold.settle(0.50)
    assert (hold.late, budget.late_settles, budget.overspends) == (False, 0, 0)


class RenewCountingStore(MemoryStore):
    """A memory store that says when the heartbeat has renewed a hold N times."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.renewals = 0
        self.wanted = wanted
        self.renewed = threading.Event()

    def budget_renew(self, *a, **k):
        held = super().budget_renew(*a, **k)
        self.renewals += 1
        if self.renewals >= self.wanted:
            self.renewed.set()
        return held


def test_the_heartbeat_renews_an_open_hold_until_it_is_settled():
    """On the real clock with a 0.2 s TTL, the background heartbeat keeps an open hold alive
    through four renewals (past its first TTL), and stops renewing once it is settled."""
    store = RenewCountingStore(wanted=4)
    budget = Budget(store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, hold_ttl_s=0.2)
    who = tenant()
    reserved_at = time.time()
    with budget.reserve(tenant=who, estimate_usd=1.00) as hold:
        assert store.renewed.wait(timeout=30)
        assert time.time() > reserved_at + 0.2  # the first TTL is over
        with pytest.raises(BudgetExhausted):
            budget.reserve(tenant=who, estimate_usd=0.10)
    assert not hold.late and budget.late_settles == 0
    assert not _renewing(hold)


def _renewing(hold) -> bool:
    """Whether the heartbeat still has the hold on its list."""
    from blameset.instrument.budget import _HEARTBEAT

    return id(hold) in _HEARTBEAT._holds


def test_a_hold_dropped_unsettled_is_not_kept_alive_by_the_heartbeat():
    """The heartbeat holds holds weakly: one its code dropped is collected (and expires in the
    store), not renewed for ever."""
    budget = Budget(MemoryStore(), clock=Clock())
    hold = budget.reserve(tenant="acme", estimate_usd=0.10)
    ref = weakref.ref(hold)
    del hold
    gc.collect()
    assert ref() is None


def test_a_budget_refuses_a_hold_ttl_it_cannot_renew():
    """hold_ttl_s must be a positive finite number of seconds."""
    for ttl in (0, -1, math.nan, math.inf):
        with pytest.raises(InvalidInput, match="hold_ttl_s"):
            Budget(MemoryStore(), hold_ttl_s=ttl)


def _lease_run(spec: str, renew: bool, ttl: float = 0.6) -> list[dict]:
    """4 worker processes x 4 threads reserving $0.10 against $1.00/day, each admitted hold
    working 1.5 x ttl; the reports of the processes."""
    who = tenant()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    worker = Path(__file__).with_name("budget_worker.py")
    args = ["lease", spec, "4", "8", who, str(ttl), "1" if renew else "0"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    return reports


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_work_longer_than_the_hold_ttl_settles_at_most_the_limit(backend, tmp_path, request):
    """4 processes x 4 threads whose work lasts 1.5x the hold's TTL: the heartbeat keeps every
    hold alive, so the settled total is exactly the $1.00 limit and no settle is late."""
    spec = (
        f"sqlite:{tmp_path / 'budget.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("redis_url"))
    )
    reports = _lease_run(spec, renew=True)
    settled_cents = 10 * sum(r["admitted"] for r in reports)
    assert settled_cents <= 100, reports
    assert settled_cents == 100, reports  # the workload does reach the limit
    assert sum(r["late"] for r in reports) == 0, reports


def test_without_the_heartbeat_the_same_work_settles_late(tmp_path):
    """The control: with renew_holds=False every hold of that workload expires before its work
    ends, and each settle is counted late (what the heartbeat prevents)."""
    reports = _lease_run(f"sqlite:{tmp_path / 'budget.db'}", renew=False)
    assert sum(r["admitted"] for r in reports) >= 10
    assert [r["late"] for r in reports] == [r["admitted"] for r in reports]


def _renews_in_a_forked_child() -> None:
    store = RenewCountingStore(wanted=2)
    budget = Budget(store, tenant_per_minute_usd=None, hold_ttl_s=0.2)
    with budget.reserve(tenant="acme", estimate_usd=0.10):
        os._exit(0 if store.renewed.wait(timeout=30) else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_renews_its_own_holds():
    """The heartbeat thread does not survive fork; the child starts its own for its holds."""
    import multiprocessing

    parent = Budget(MemoryStore(), hold_ttl_s=600)
    with parent.reserve(tenant="acme", estimate_usd=0.10):  # the parent's thread is running
        child = multiprocessing.get_context("fork").Process(target=_renews_in_a_forked_child)
        child.start()
        child.join(timeout=60)
    assert child.exitcode == 0
