"""The error taxonomy and retries with a budget."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blameset.instrument import RetryBudget, errors, retry, traced
from blameset.instrument.errors import (
    BudgetExhausted,
    InvalidInput,
    PolicyViolation,
    QuotaExceeded,
    SafetyViolation,
    UpstreamTimeout,
)
from blameset.instrument.testing import CapturedSpans

BOOK_TABLE = [
    ("INVALID_INPUT", 400, "none", 0, False),
    ("QUOTA_EXCEEDED", 429, "exponential_backoff", 3, False),
    ("UPSTREAM_TIMEOUT", 504, "silent", 2, True),
    ("BUDGET_EXHAUSTED", 402, "none", 0, True),
    ("SAFETY_VIOLATION", 403, "none", 0, True),
    ("INTERNAL", 500, "none", 0, True),
]


@pytest.mark.parametrize(("code", "status", "policy", "budget", "alert"), BOOK_TABLE)
def test_the_book_table_is_the_taxonomy(code, status, policy, budget, alert):
    """Each code carries the book's HTTP status, retry policy, retry budget and alert flag."""
    spec = errors.lookup(code)
    assert (spec.code, spec.http_status, str(spec.retry_policy), spec.retry_budget, spec.alert) == (
        code,
        status,
        policy,
        budget,
        alert,
    )
    assert spec.message_en and spec.message_zh


def test_one_tree_and_the_policy_violation_alias():
    """Every error derives from one base; POLICY_VIOLATION is SAFETY_VIOLATION under a name."""
    for cls in (InvalidInput, QuotaExceeded, UpstreamTimeout, BudgetExhausted, SafetyViolation):
        assert issubclass(cls, errors.BlamesetError)
    err = PolicyViolation("flagged")
    assert isinstance(err, SafetyViolation)
    assert err.error_code == "SAFETY_VIOLATION"
    assert errors.lookup("POLICY_VIOLATION").code == "SAFETY_VIOLATION"
    assert errors.lookup("SAFETY_VIOLATION").audited


def test_unknown_exceptions_map_to_internal():
    """Anything without a code is INTERNAL (a timeout is UPSTREAM_TIMEOUT), never codeless."""
    assert errors.classify(KeyError("x")).code == "INTERNAL"
    assert errors.classify(TimeoutError()).code == "UPSTREAM_TIMEOUT"
    wrapped = errors.as_blameset_error(KeyError("x"))
    assert wrapped.error_code == "INTERNAL"
    assert isinstance(wrapped.__cause__, KeyError)


def test_to_response_carries_code_message_retryable_and_trace(spans: CapturedSpans):
    """to_response() is the HTTP body, in English or Chinese, with the current trace id."""
    body = QuotaExceeded("rate limited by provider").to_response()
    assert body == {
        "code": "QUOTA_EXCEEDED",
        "message": "Too many requests; please try again shortly.",
        "retryable": True,
        "trace_id": None,
    }
    with traced("handler"):
        zh = BudgetExhausted().to_response(lang="zh")
    assert zh["message"] == "今日额度已用完"
    assert zh["retryable"] is False
    assert zh["trace_id"] == f"{spans.one('handler').context.trace_id:032x}"


def test_errors_raised_in_spans_set_code_retryable_status_and_alert(spans: CapturedSpans):
    """error.type is the code, with retryable, alert and the final status (blocked for budget)."""

    @traced("over_budget")
    def over_budget() -> None:
        raise BudgetExhausted("tenant acme over $10/day")

    @traced("limited")
    def limited() -> None:
        raise QuotaExceeded()

    for fn in (over_budget, limited):
        with pytest.raises(errors.BlamesetError):
            fn()
    a = spans.attributes("over_budget")
    assert a["error.type"] == "BUDGET_EXHAUSTED"
    assert a["blameset.final_status"] == "blocked"
    assert a["blameset.error.retryable"] is False
    assert a["blameset.error.alert"] is True
    b = spans.attributes("limited")
    assert b["blameset.error.retryable"] is True
    assert "blameset.error.alert" not in b


def test_users_register_their_own_codes():
    """register() adds a row and returns its exception class; the table includes it."""
    TooLong = errors.register(
        "CONTENT_TOO_LONG", http_status=413, message_en="Too long.", message_zh="内容过长"
    )
    try:
        assert TooLong("9000 tokens").to_response()["code"] == "CONTENT_TOO_LONG"
        assert any(row["code"] == "CONTENT_TOO_LONG" for row in errors.taxonomy_json())
        with pytest.raises(ValueError, match="already registered"):
            errors.register("CONTENT_TOO_LONG", http_status=400, message_en="x", message_zh="x")
    finally:  # the registry is process-wide: leave it as the other tests expect it
        errors.CODES.pop("CONTENT_TOO_LONG")
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        errors.register("bad code", http_status=400, message_en="x", message_zh="x")


def test_taxonomy_json_has_the_documented_keys():
    """The JSON rows have code, http_status, retry_policy, retry_budget, alert, message_en/zh."""
    for row in errors.taxonomy_json():
        assert {
            "code",
            "http_status",
            "retry_policy",
            "retry_budget",
            "alert",
            "message_en",
            "message_zh",
        } <= set(row)


# --- retries ----------------------------------------------------------------------------------


CODES = [
    "QUOTA_EXCEEDED",
    "UPSTREAM_TIMEOUT",
    "INVALID_INPUT",
    "BUDGET_EXHAUSTED",
    "INTERNAL",
    "OK",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CODES), min_size=1, max_size=10), st.floats(0, 1))
def test_retries_never_exceed_a_codes_budget(outcomes: list[str], jitter: float):
    """For any failure sequence: never a retry of a non-retryable code, never past the budget of
    the code that failed, and the waits follow full-jitter exponential backoff."""
    calls: list[str] = []
    waits: list[float] = []

    @retry(
        budget=RetryBudget(ratio=1.0, min_tokens=100),
        sleep=waits.append,
        rng=lambda: jitter,
        base_delay_s=0.1,
        max_delay_s=5,
        silent_delay_s=0.5,
    )
    def flaky() -> str:
        outcome = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(outcome)
        if outcome == "OK":
            return "ok"
        raise errors.exception_class(outcome)()

    try:
        flaky()
        succeeded = True
    except errors.BlamesetError:
        succeeded = False
    retries = len(calls) - 1
    for i, outcome in enumerate(calls[:-1]):
        spec = errors.lookup(outcome)
        assert spec.retryable, f"retried a non-retryable {outcome}"
        assert i < spec.retry_budget, f"retry {i + 1} of {outcome} is past its budget"
    last = calls[-1]
    if not succeeded:
        spec = errors.lookup(last)
        assert not spec.retryable or retries >= spec.retry_budget
    assert len(waits) == retries
    for n, (wait, outcome) in enumerate(zip(waits, calls, strict=False)):
        cap = 0.5 if outcome == "UPSTREAM_TIMEOUT" else 5
        assert wait == pytest.approx(jitter * min(cap, 0.1 * 2**n))


def test_the_process_wide_budget_stops_a_retry_storm():
    """With the upstream down for every call, retries stay near 10% of calls."""
    budget = RetryBudget(ratio=0.1, min_tokens=5)
    attempts = 0

    @retry(budget=budget, sleep=lambda s: None)
    def always_throttled() -> None:
        nonlocal attempts
        attempts += 1
        raise QuotaExceeded()

    for _ in range(1000):
        with pytest.raises(QuotaExceeded):
            always_throttled()
    assert budget.calls == 1000
    assert budget.retries <= 0.1 * 1000 + 5
    assert attempts == 1000 + budget.retries
    assert budget.denied > 0


def test_retry_attempts_show_in_the_span(spans: CapturedSpans):
    """Each retried failure is a span event; the span says how many attempts it took."""
    results = iter([UpstreamTimeout(), UpstreamTimeout(), "done"])

    @traced("handler")
    @retry(budget=RetryBudget(min_tokens=10), sleep=lambda s: None, rng=lambda: 0.5)
    def call() -> str:
        value = next(results)
        if isinstance(value, Exception):
            raise value
        return value

    assert call() == "done"
    span = spans.one("handler")
    assert span.attributes["blameset.retry.attempts"] == 3
    events = [e for e in span.events if e.name == "blameset.retry"]
    assert [e.attributes["attempt"] for e in events] == [1, 2]
    assert events[0].attributes["error.type"] == "UPSTREAM_TIMEOUT"


def test_async_retry_and_the_error_passes_unchanged():
    """Coroutines retry too; the last error reaches the caller as the same object."""
    last = QuotaExceeded("still throttled")
    errs = [QuotaExceeded(), QuotaExceeded(), QuotaExceeded(), last]
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    @retry(budget=RetryBudget(min_tokens=10), sleep=fake_sleep)
    async def call() -> None:
        raise errs.pop(0)

    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(call())
    assert info.value is last
    assert len(slept) == 3


def test_an_alias_cannot_shadow_a_code():
    """Registering an alias that is already a code (or alias) is refused."""
    with pytest.raises(ValueError, match="already a code"):
        errors.register(
            "MY_CODE", http_status=400, message_en="x", message_zh="x", aliases=("INVALID_INPUT",)
        )
    assert "MY_CODE" not in errors.CODES
    assert errors.classify(errors.InvalidInput()).code == "INVALID_INPUT"


def test_the_retry_budget_bounds_retries_after_a_long_healthy_stretch():
    """1000 healthy calls, then a 200-call outage: retries <= burst of 10 + 10% of calls."""
    budget = RetryBudget()
    fail = False

    @retry(budget=budget, sleep=lambda s: None)
    def call() -> None:
        if fail:
            raise QuotaExceeded()

    for _ in range(1000):
        call()
    fail = True
    before = budget.retries
    for _ in range(200):
        with pytest.raises(QuotaExceeded):
            call()
    assert budget.retries - before <= 10 + 0.1 * 200 + 1


def test_retry_after_is_honoured_or_the_retry_given_up():
    """A Retry-After under the cap becomes the wait; one over the cap is not retried at all."""
    waits: list[float] = []
    errs = [QuotaExceeded(retry_after_s=2.0), QuotaExceeded(retry_after_s=60.0)]

    @retry(budget=RetryBudget(), sleep=waits.append, rng=lambda: 0.0, max_delay_s=5)
    def call() -> None:
        raise errs.pop(0)

    with pytest.raises(QuotaExceeded) as info:
        call()
    assert waits == [2.0]
    assert info.value.retry_after_s == 60.0


def test_retry_budget_and_threads_with_a_real_lock():
    """The bucket is safe across threads: spent tokens never exceed what was deposited."""
    budget = RetryBudget(ratio=0.5, min_tokens=0, max_tokens=1000)

    def worker() -> None:
        for _ in range(1000):
            budget.record_call()
            budget.try_spend()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.retries <= 0.5 * budget.calls
