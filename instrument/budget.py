"""Cost gating: spend is capped before it happens, on three levels (the book's breakers).

    budget = Budget(store="redis://127.0.0.1:6379/0")       # or memory, sqlite:PATH
    with budget.reserve(tenant="acme", estimate_usd=budget.estimate("gpt-4o", 1200, 800)) as hold:
        reply = call_model(...)
        hold.settle(actual_usd=record_usage(input_tokens=..., output_tokens=...))

- **Per request**: at most ``request_max_tool_calls`` tool calls (10) and ``request_max_tokens``
  tokens (100k) inside ``with budget.request():``; the next tool call or the usage record that
  crosses the line raises ``BudgetExhausted`` (level ``request``).
- **Per tenant**: ``tenant_per_minute_usd`` ($1) and ``tenant_per_day_usd`` ($10) in *fixed* UTC
  windows (the minute and the day a reservation is made in). Fixed windows are atomic and cheap;
  the price is that a burst across a boundary can spend up to twice the per-minute limit within
  60 seconds (never twice the daily one within a day).
- **Global**: when settled spend over the last 60 minutes exceeds ``spike_ratio`` (5x, +500%)
  times the average hourly spend of the ``baseline_hours`` (24) before (hours with spend only;
  at least ``min_history_hours``, 6, of them, and a baseline of at least
  ``min_baseline_usd_per_hour``, $1), the breaker opens: only core routes run. After
  ``breaker_cooldown_s`` it is half-open: one in ``probe_every`` other requests goes through;
  once spend is back under the line it closes, else it opens again for another cooldown.

**Reserve, then settle.** A reservation holds its estimate in every window it touches
(atomically in the store); ``settle`` replaces it with the actual. A reservation that would cross a
limit raises before any money is spent. Leaving the block by an exception, or without settling,
settles at the estimate: a budget should count money it cannot prove unspent (call
``hold.release()`` when you know nothing was spent).

**Leases.** A hold counts for ``hold_ttl_s`` after it was last renewed, and while it is open a
process-wide heartbeat renews it every ``hold_ttl_s / 3``: work may last longer than the TTL,
while a hold whose process died expires ``hold_ttl_s`` after its last renewal. A settle after the
hold expired (the process stalled, the store was unreachable) still counts and is a *late
settle*: counted (``Budget.late_settles``), logged and marked on the span, as is a window it
leaves over its limit (docs/backend/guard-rails/budget-holds.md).

**Bound.** Settled spend in a window exceeds its limit by at most the sum of the excesses
(actual - estimate) of the holds admitted in it, plus the amounts of its late settles: each hold
was admitted against spend that counted other holds only at their estimates, and only while they
lived. With no late settle and every actual within its estimate, it never exceeds it.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

from . import _runtime, contract
from ._guard import request_guard
from .cost import Usage
from .errors import BudgetExhausted, Internal, InvalidInput
from .stores import Ledger, Window, open_store
from .tracing import add_span_event, set_final_status, set_request_attributes

__all__ = ["LATE_SETTLE", "OVERSPENT", "Budget", "Hold", "RequestGuard", "degrade", "usd_to_micros"]

logger = logging.getLogger("blameset")

MICROS = 1_000_000
F = TypeVar("F", bound=Callable[..., Any])
BreakerState = Literal["closed", "open", "half_open"]


# Hold ids: unique across hosts and processes (a random prefix per process), cheap per hold.
_HOLD_PREFIX = uuid.uuid4().hex[:12]
_hold_seq = itertools.count()


def usd_to_micros(usd: float) -> int:
    return round(usd * MICROS)


def _amount(usd: float, what: str) -> int:
    """Micro-USD of a money amount, refusing what no budget can hold (negative, NaN, inf)."""
    if not isinstance(usd, int | float) or not math.isfinite(usd) or usd < 0:
        raise InvalidInput(f"{what} must be a finite amount of at least $0, not {usd!r}")
    return round(usd * MICROS)


def _refuse(level: str, limit: str, detail: str, **attrs: Any) -> BudgetExhausted:
    err = BudgetExhausted(detail)
    err.span_attributes = {  # type: ignore[attr-defined]
        contract.BUDGET_LEVEL: level,
        contract.BUDGET_LIMIT: limit,
        **attrs,
    }
    return err


# --- per request ----------------------------------------------------------------------------


class RequestGuard:
    """Counts one request's tool calls and tokens against its limits."""

    def __init__(self, max_tool_calls: int, max_tokens: int) -> None:
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        self.tool_calls = 0
        self.tokens = 0
        self._lock = threading.Lock()

    def tool_call(self, name: str) -> None:
        with self._lock:
            self.tool_calls += 1
            calls = self.tool_calls
        if calls > self.max_tool_calls:
            raise _refuse(
                "request",
                "request_max_tool_calls",
                f"tool call {calls} ({name}) is past this request's limit of {self.max_tool_calls}",
            )

    def add_tokens(self, n: int) -> None:
        with self._lock:
            self.tokens += n
            tokens = self.tokens
        if tokens > self.max_tokens:
            raise _refuse(
                "request",
                "request_max_tokens",
                f"{tokens} tokens is past this request's limit of {self.max_tokens}",
            )


def current_guard() -> RequestGuard | None:
    guard: RequestGuard | None = request_guard.get()
    return guard


# --- reservations -----------------------------------------------------------------------------


LATE_SETTLE: Final = contract.BUDGET_LATE_SETTLE
OVERSPENT: Final = contract.BUDGET_OVERSPENT


class Hold:
    """One reservation: settle it with the actual cost, or release it if nothing was spent.

    While it is neither, the process's heartbeat renews it every ``hold_ttl_s / 3`` (see
    :class:`_Heartbeat`), so work longer than ``hold_ttl_s`` keeps its money held. ``lost`` is
    True once a renewal found it expired."""

    def __init__(self, budget: Budget, windows: list[Window], hold_id: str, estimate: int) -> None:
        self._budget = budget
        self._windows = windows
        self._keys = [w.key for w in windows]
        self.id = hold_id
        self.estimate_usd = estimate / MICROS
        self._estimate = estimate
        self.actual_usd: float | None = None
        self.lost = False
        self.late = False
        self._done = False
        self._lock = threading.Lock()
        self._renew_at = 0.0  # monotonic; the heartbeat's schedule
        self._renew_failed = False

    @property
    def done(self) -> bool:
        return self._done

    def _finish(self) -> bool:
        """Mark the hold settled or released; False when it already was."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        _HEARTBEAT.discard(self)
        return True

    def renew(self) -> bool:
        """Extend the hold by ``hold_ttl_s`` from now, as the heartbeat does; False (and
        :attr:`lost` set) when it had already expired, or was settled or released. Raises what
        the store raises."""
        if self._done or self.lost:
            return False
        budget = self._budget
        if budget._ledger.budget_renew(self._keys, self.id, budget.hold_ttl_s, budget.clock()):
            return True
        if not self._done:
            self.lost = True
        return False

    def settle(self, actual_usd: float | None = None) -> None:
        """Record what was actually spent (the estimate when None). Never raises over a spend
        that happened: a store that cannot take it is logged (the hold expires). A settle after
        the hold expired still counts, and is a late settle (logged, counted, on the span)."""
        actual = self._estimate if actual_usd is None else _amount(actual_usd, "actual_usd")
        if not self._finish():
            return
        self.actual_usd = actual / MICROS
        budget = self._budget
        try:
            live = budget._ledger.budget_settle(self._keys, self.id, actual, now=budget.clock())
        except Exception:
            logger.exception(
                "blameset: settling $%.6f for hold %s failed; that spend is missing from the "
                "budget store",
                self.actual_usd,
                self.id,
            )
            return
        _event("blameset.budget.settle", {"blameset.budget.actual_usd": self.actual_usd})
        self.late = live is False or self.lost  # a store that does not say is taken as on time
        if self.late:
            budget._late_settle(self)
        if self.late or actual > self._estimate:
            budget._check_overspent(self)

    def release(self) -> None:
        """Nothing was spent: free the reservation (never raises; a failure is logged and the
        hold expires after ``hold_ttl_s``)."""
        if not self._finish():
            return
        try:
            self._budget._ledger.budget_release(self._keys, self.id)
        except Exception:
            logger.exception("blameset: releasing hold %s failed; it expires on its own", self.id)
            return
        _event("blameset.budget.release", {})

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.settle()  # conservative: what cannot be proven unspent counts at the estimate


class _Heartbeat:
    """The lease heartbeat: one daemon thread per process renews every open hold of every
    Budget each ``hold_ttl_s / 3``, so a hold outlives its TTL exactly as long as its work.

    Holds are kept by weak reference: a hold its code dropped unsettled is not renewed, and
    expires as a dead process's would. The thread wakes only when a renewal is due (an idle
    service costs nothing); a renewal that fails (store down) is logged and tried again at the
    next beat. In a forked child the parent's holds are the parent's: the child starts empty."""

    def __init__(self) -> None:
        self._holds: dict[int, weakref.ref[Hold]] = {}
        self._wake_at = math.inf  # monotonic time the thread sleeps until
        self._adds = 0
        self._last_interval_s = math.inf
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._in_child)

    def _in_child(self) -> None:
        self._holds = {}
        self._wake_at = math.inf
        self._adds = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread = None

    def add(self, hold: Hold, interval_s: float) -> None:
        hold._renew_at = time.monotonic() + interval_s
        with self._lock:  # the condition's lock (entered directly: cheaper)
            self._holds[id(hold)] = weakref.ref(hold)
            self._adds += 1
            self._last_interval_s = interval_s
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="blameset-budget-heartbeat", daemon=True
                )
                self._thread.start()
            elif hold._renew_at < self._wake_at:
                self._cond.notify()  # sooner than the thread planned to wake

    def discard(self, hold: Hold) -> None:
        self._holds.pop(id(hold), None)  # one dict operation: atomic, no lock needed

    def _run(self) -> None:
        while True:
            for hold in self._due():
                self._beat(hold)

    def _due(self) -> list[Hold]:
        """Wait until some hold's renewal is due; those holds (strong references)."""
        seen_adds = -1
        with self._cond:
            while True:
                now = time.monotonic()
                due, soonest = self._scan(now)
                if due:
                    return due
                if soonest == math.inf and self._adds != seen_adds:
                    # Holds came and went since the last look: more will, each waking this
                    # thread if it slept without end. Look again one interval on instead.
                    soonest = now + self._last_interval_s
                seen_adds = self._adds
                self._wake_at = soonest
                self._cond.wait(None if soonest == math.inf else soonest - now)

    def _scan(self, now: float) -> tuple[list[Hold], float]:
        """The holds due at ``now``, and the soonest renewal of the others (forgetting holds
        that are done or were dropped)."""
        due, soonest = [], math.inf
        for key, ref in list(self._holds.items()):
            hold = ref()
            if hold is None or hold.done:
                self._holds.pop(key, None)  # a settle may have discarded it meanwhile
            elif hold._renew_at <= now:
                due.append(hold)
            else:
                soonest = min(soonest, hold._renew_at)
        return due, soonest

    def _beat(self, hold: Hold) -> None:
        """Renew one hold (never raises): again in a third of its TTL, or never if lost."""
        hold._renew_at = time.monotonic() + hold._budget.hold_ttl_s / 3
        try:
            renewed = hold.renew()
        except Exception:
            if not hold._renew_failed:  # once per hold: a store outage is not a log flood
                hold._renew_failed = True
                logger.exception("blameset: renewing budget hold %s failed; retrying", hold.id)
            return
        if not renewed:
            self.discard(hold)
            if hold.lost:
                logger.warning(
                    "blameset: budget hold %s ($%.6f) expired before its work finished (a "
                    "renewal came too late); its settle will be late and may overspend",
                    hold.id,
                    hold.estimate_usd,
                )


_HEARTBEAT = _Heartbeat()


def _event(name: str, attributes: dict[str, Any]) -> None:
    """A budget decision as an event on the current blameset span."""
    add_span_event(name, attributes)


def _count(name: str, description: str) -> None:
    """Add one to a counter of the application's MeterProvider (rare events only: each call
    looks the instrument up). Never raises."""
    try:
        from opentelemetry import metrics

        metrics.get_meter("blameset").create_counter(name, description=description).add(1)
    except Exception:
        logger.exception("blameset: counting %s failed", name)


# --- the budget ----------------------------------------------------------------------------------


@dataclass
class _Breaker:
    state: BreakerState = "closed"
    since: float = 0.0
    checked_at: float = float("-inf")
    last_hour_usd: float = 0.0
    baseline_usd: float = 0.0


class Budget:
    """Budgets on three levels over one store (``memory``, ``sqlite:PATH``, ``redis://...``)."""

    def __init__(
        self,
        store: Any = "memory",
        *,
        tenant_per_minute_usd: float | None = 1.0,
        tenant_per_day_usd: float | None = 10.0,
        request_max_tool_calls: int = 10,
        request_max_tokens: int = 100_000,
        spike_ratio: float = 5.0,
        baseline_hours: int = 24,
        min_baseline_usd_per_hour: float = 1.0,
        min_history_hours: int = 6,
        breaker_cooldown_s: float = 300.0,
        breaker_check_s: float = 5.0,
        probe_every: int = 10,
        core_routes: Sequence[str] = (),
        hold_ttl_s: float = 600.0,
        renew_holds: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (
            not (isinstance(hold_ttl_s, int | float) and math.isfinite(hold_ttl_s))
            or hold_ttl_s <= 0
        ):
            raise InvalidInput(
                f"hold_ttl_s must be a positive number of seconds, not {hold_ttl_s!r}"
            )
        self._ledger = cast(Ledger, open_store(store))
        self.tenant_per_minute = (
            usd_to_micros(tenant_per_minute_usd) if tenant_per_minute_usd is not None else None
        )
        self.tenant_per_day = (
            usd_to_micros(tenant_per_day_usd) if tenant_per_day_usd is not None else None
        )
        self.request_max_tool_calls = request_max_tool_calls
        self.request_max_tokens = request_max_tokens
        self.spike_ratio = spike_ratio
        self.baseline_hours = baseline_hours
        self.min_baseline = min_baseline_usd_per_hour
        self.min_history_hours = min_history_hours
        self.cooldown_s = breaker_cooldown_s
        self.check_s = breaker_check_s
        self.probe_every = max(1, probe_every)
        self.core_routes = frozenset(core_routes)
        self.hold_ttl_s = hold_ttl_s
        self.renew_holds = renew_holds
        self.clock = clock
        self.late_settles = 0  # holds settled after they had expired (see Hold.settle)
        self.overspends = 0  # settles that left a limited window over its limit
        self._counts_lock = threading.Lock()
        self._breaker = _Breaker()
        self._window_cache: dict[tuple[str, int], tuple[list[Window], list[str]]] = {}
        self._probes = itertools.count()
        self._lock = threading.Lock()

    # -- windows -----------------------------------------------------------------------------------
    @staticmethod
    def tenant_windows(tenant: str, now: float) -> tuple[str, str]:
        minute, day = int(now // 60), int(now // 86_400)
        return f"t:{tenant}:m:{minute}", f"t:{tenant}:d:{day}"

    def _windows(self, tenant: str, now: float) -> tuple[list[Window], list[str]]:
        minute = int(now // 60)
        cached = self._window_cache.get((tenant, minute))
        if cached is not None:  # the same tenant in the same minute: the same four windows
            return cached
        minute_key, day_key = self.tenant_windows(tenant, now)
        windows = [
            Window(minute_key, self.tenant_per_minute, 120),
            Window(day_key, self.tenant_per_day, 2 * 86_400),
            Window(f"g:m:{minute}", None, 2 * 3600),
            Window(f"g:h:{int(now // 3600)}", None, (self.baseline_hours + 2) * 3600),
        ]
        if len(self._window_cache) > 4096:
            self._window_cache.clear()
        entry = self._window_cache[(tenant, minute)] = (windows, [w.key for w in windows])
        return entry

    # -- levels 2 and 3: reserve -----------------------------------------------------------
    def reserve(
        self, *, tenant: str, estimate_usd: float, route: str | None = None, core: bool = False
    ) -> Hold:
        """Hold ``estimate_usd`` for ``tenant`` in its minute and day windows, after the global
        breaker agreed; raises ``BudgetExhausted`` (nothing held) when a limit would be crossed."""
        now = self.clock()
        is_core = core or (route is not None and route in self.core_routes)
        if not is_core:
            self._check_breaker(now, route)
        amount = _amount(estimate_usd, "estimate_usd")
        windows, keys = self._windows(tenant, now)
        hold_id = f"{_HOLD_PREFIX}{next(_hold_seq):x}"
        try:
            tripped = self._ledger.budget_reserve(windows, hold_id, amount, self.hold_ttl_s, now)
        except Exception as exc:  # no store, no budget: fail closed, before any money is spent
            raise Internal(f"budget store unavailable: {exc}") from exc
        if tripped is not None:
            which = "tenant_per_minute_usd" if tripped == keys[0] else "tenant_per_day_usd"
            _event("blameset.budget.refused", {"blameset.budget.limit": which})
            raise _refuse(
                "tenant",
                which,
                f"tenant {tenant!r}: ${estimate_usd:.4f} more would cross {which}",
                **{contract.TENANT_ID: tenant},
            )
        _event(
            "blameset.budget.reserve",
            {"blameset.budget.estimate_usd": amount / MICROS, contract.TENANT_ID: tenant},
        )
        hold = Hold(self, windows, hold_id, amount)
        if self.renew_holds:
            _HEARTBEAT.add(hold, self.hold_ttl_s / 3)
        return hold

    # -- holds that outlived their lease ---------------------------------------------------------
    def _late_settle(self, hold: Hold) -> None:
        """A hold settled after it had expired: while it was expired, other reservations were
        admitted against room it no longer held, so this window can end over its limit."""
        with self._counts_lock:
            self.late_settles += 1
        logger.warning(
            "blameset: budget hold %s settled $%.6f after it had expired (hold_ttl_s=%s%s); the "
            "spend counts, but reservations admitted meanwhile did not see it",
            hold.id,
            hold.actual_usd,
            self.hold_ttl_s,
            "" if self.renew_holds else ", renew_holds=False",
        )
        _event(LATE_SETTLE, {"blameset.budget.hold_id": hold.id})
        set_request_attributes({LATE_SETTLE: True})
        _count("blameset.budget.late_settles", "Budget holds settled after they had expired")

    def _check_overspent(self, hold: Hold) -> None:
        """After a settle that could break the bound (late, or over its estimate): log and mark
        each limited window it left over its limit. Never raises."""
        limited = [(w.key, w.limit) for w in hold._windows if w.limit is not None]
        if not limited:
            return
        try:
            totals = self._ledger.budget_spent([key for key, _ in limited], self.clock())
        except Exception:
            logger.exception("blameset: reading spend after hold %s's settle failed", hold.id)
            return
        for (key, limit), (settled, _) in zip(limited, totals, strict=True):
            if settled > limit:
                self._overspent(hold, key, settled, limit)

    def _overspent(self, hold: Hold, key: str, settled: int, limit: int) -> None:
        with self._counts_lock:
            self.overspends += 1
        logger.warning(
            "blameset: budget window %s is overspent: $%.6f settled against a $%.6f limit "
            "(hold %s settled %s)",
            key,
            settled / MICROS,
            limit / MICROS,
            hold.id,
            "late" if hold.late else "over its estimate",
        )
        over_usd = (settled - limit) / MICROS
        _event(OVERSPENT, {"blameset.budget.window": key, "blameset.budget.over_usd": over_usd})
        set_request_attributes({OVERSPENT: True})
        _count("blameset.budget.overspends", "Budget settles that left a window over its limit")

    def estimate(
        self,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        provider: str | None = None,
    ) -> float:
        """Upper cost of a call: its input plus the most output it may produce, priced with the
        same table as ``record_usage`` (the user's overrides, then genai-prices). 0 if unknown."""
        cost, _ = _runtime.STATE.pricer.price(
            model, provider, Usage(input_tokens=input_tokens, output_tokens=max_output_tokens)
        )
        return cost or 0.0

    # -- level 3: the global breaker --------------------------------------------------------------
    def breaker_state(self, now: float | None = None) -> BreakerState:
        """The breaker's state now (re-evaluated at most every ``breaker_check_s``)."""
        now = self.clock() if now is None else now
        b = self._breaker
        if b.state == "closed" and now - b.checked_at < self.check_s:
            return "closed"  # the common case, without the lock
        if b.state == "open" and now - b.since < self.cooldown_s:
            return "open"  # nothing changes before the cooldown ends: no store reads
        with self._lock:
            self._evaluate(now)
            return self._breaker.state

    def _check_breaker(self, now: float, route: str | None) -> None:
        state = self.breaker_state(now)
        if state == "closed":
            return
        if state == "half_open" and next(self._probes) % self.probe_every == 0:
            return  # a probe: see whether spend has come down
        b = self._breaker
        raise _refuse(
            "global",
            "spike_ratio",
            f"global spend ${b.last_hour_usd:.2f} in the last hour is over {self.spike_ratio}x "
            f"the ${b.baseline_usd:.2f}/h baseline; only core routes run"
            + (f" (route {route!r} is not core)" if route else ""),
            **{contract.BUDGET_BREAKER: state},
        )

    def _evaluate(self, now: float) -> None:
        b = self._breaker
        if now - b.checked_at < self.check_s and b.state != "open":
            return
        spiking = self._spiking(now)
        b.checked_at = now
        if b.state == "closed":
            if spiking:
                b.state, b.since = "open", now
        elif b.state == "open":
            if now - b.since >= self.cooldown_s:
                b.state, b.since = ("half_open", now) if spiking else ("closed", now)
        elif not spiking:  # half-open and spend is back under the line
            b.state, b.since = "closed", now
        elif now - b.since >= self.cooldown_s:
            b.state, b.since = "open", now

    def _spiking(self, now: float) -> bool:
        """Last hour's spend over ``spike_ratio`` x the baseline: the average of the hours before
        that had any spend (a young service is not compared with hours it did not exist), once
        at least ``min_history_hours`` of them exist and the baseline is at least
        ``min_baseline_usd_per_hour`` (a tiny baseline makes any traffic look like a spike)."""
        minute, hour = int(now // 60), int(now // 3600)
        recent = [f"g:m:{m}" for m in range(minute - 59, minute + 1)]
        before = [f"g:h:{h}" for h in range(hour - self.baseline_hours - 1, hour - 1)]
        try:
            totals = self._ledger.budget_spent(recent + before, now)
        except Exception:
            logger.exception("blameset: reading spend for the breaker failed; it stays as it was")
            return self._breaker.state != "closed"
        last_hour = sum(s for s, _ in totals[: len(recent)]) / MICROS
        hours = [s for s, _ in totals[len(recent) :] if s > 0]
        baseline = sum(hours) / MICROS / len(hours) if hours else 0.0
        self._breaker.last_hour_usd, self._breaker.baseline_usd = last_hour, baseline
        return (
            len(hours) >= self.min_history_hours
            and baseline >= self.min_baseline
            and last_hour > self.spike_ratio * baseline
        )

    # -- level 1: per request ----------------------------------------------------------------
    @contextmanager
    def request(self) -> Iterator[RequestGuard]:
        """Count this request's tool calls (``traced.tool`` spans) and tokens (``record_usage``)
        against the per-request limits. The count follows the context: tasks and
        ``bind_context``-wrapped thread work count; a bare thread pool does not (wrap its work)."""
        outer = request_guard.get()
        if outer is not None:  # nested: the outer request's counts go on (no fresh allowance)
            yield outer
            return
        guard = RequestGuard(self.request_max_tool_calls, self.request_max_tokens)
        token = request_guard.set(guard)
        try:
            yield guard
        finally:
            request_guard.reset(token)

    # -- status -----------------------------------------------------------------------------------
    def status(self, tenants: Sequence[str], now: float | None = None) -> dict[str, Any]:
        """Spend per tenant and window (settled, held, limit) and the breaker's state."""
        now = self.clock() if now is None else now
        rows = []
        for tenant in tenants:
            minute_key, day_key = self.tenant_windows(tenant, now)
            (m_settled, m_held), (d_settled, d_held) = self._ledger.budget_spent(
                [minute_key, day_key], now
            )
            for window, settled, held, limit in (
                ("minute", m_settled, m_held, self.tenant_per_minute),
                ("day", d_settled, d_held, self.tenant_per_day),
            ):
                rows.append(
                    {
                        "tenant": tenant,
                        "window": window,
                        "settled_usd": settled / MICROS,
                        "held_usd": held / MICROS,
                        "limit_usd": None if limit is None else limit / MICROS,
                    }
                )
        state = self.breaker_state(now)
        b = self._breaker
        return {
            "tenants": rows,
            "breaker": {
                "state": state,
                "last_hour_usd": b.last_hour_usd,
                "baseline_usd_per_hour": b.baseline_usd,
                "spike_ratio": self.spike_ratio,
            },
        }


# --- degrade instead of fail ----------------------------------------------------------------------


def degrade(
    fallback: Callable[..., Any],
    *,
    on: tuple[type[BaseException], ...] = (BudgetExhausted,),
) -> Callable[[F], F]:
    """Run ``fallback`` (same arguments) when the call is refused by a budget or an upstream
    (``on``), instead of failing; the request span then says ``degraded`` and why."""

    def decorate(fn: F) -> F:
        def mark(exc: BaseException) -> None:
            set_final_status("degraded", boundary="degraded")
            attrs = {contract.ERROR_TYPE: getattr(exc, "error_code", type(exc).__name__)}
            extra = getattr(exc, "span_attributes", None)
            if isinstance(extra, dict):
                attrs.update(extra)
            set_request_attributes(attrs)  # on the request span, however deep we are

        if _is_coroutine(fn):

            @functools.wraps(fn)
            async def degrading_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except on as exc:
                    mark(exc)
                    result = fallback(*args, **kwargs)
                    return await result if _is_awaitable(result) else result

            return cast(F, degrading_async)

        @functools.wraps(fn)
        def degrading(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except on as exc:
                mark(exc)
                return fallback(*args, **kwargs)

        return cast(F, degrading)

    return decorate


def _is_coroutine(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def _is_awaitable(value: Any) -> bool:
    import inspect

    return inspect.isawaitable(value)
