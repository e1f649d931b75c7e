"""Retries that follow the taxonomy: only retryable codes, never past a code's retry budget,
exponential backoff with full jitter, and a process-wide budget so an outage cannot become a retry
storm (at most ~10% extra calls, plus a small floor for quiet services).

    @retry                      # or @retry(budget=RetryBudget(ratio=0.2), base_delay_s=0.2)
    def call_model(prompt): ...

Each retried failure is a ``blameset.retry`` event on the current span; the span ends with
``blameset.retry.attempts``. The last error is raised unchanged.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from opentelemetry import trace

from . import contract
from .errors import ErrorCode, RetryPolicy, classify

__all__ = ["RetryBudget", "retry"]

F = TypeVar("F", bound=Callable[..., Any])


class RetryBudget:
    """A token bucket shared by every retrying call in the process.

    Each call deposits ``ratio`` tokens (the bucket holds at most ``max_tokens``); each retry
    takes one. The bucket starts with ``min_tokens``. So over any stretch of N calls, retries
    are at most ``max_tokens + ratio * N``: with the defaults, a dead upstream gets about 1.1x
    its normal traffic plus a burst of 10, not 3x or 4x.
    """

    def __init__(
        self, ratio: float = 0.1, min_tokens: float = 10.0, max_tokens: float = 10.0
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError("ratio must be between 0 and 1")
        self.ratio = ratio
        self.max_tokens = max(max_tokens, min_tokens)
        self._tokens = min_tokens
        self._lock = threading.Lock()
        self.calls = 0
        self.retries = 0
        self.denied = 0

    def record_call(self) -> None:
        with self._lock:
            self.calls += 1
            self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        """Take one retry token; False when the budget is spent (the caller must not retry)."""
        with self._lock:
            if self._tokens >= 1:
                self._tokens -= 1
                self.retries += 1
                return True
            self.denied += 1
            return False


DEFAULT_BUDGET = RetryBudget()


class _Policy:
    """The settings of one @retry, and the decision for each failure."""

    def __init__(
        self,
        budget: RetryBudget,
        base_delay_s: float,
        max_delay_s: float,
        silent_delay_s: float,
        rng: Callable[[], float],
        classify_error: Callable[[BaseException], ErrorCode],
    ) -> None:
        self.budget = budget
        self.base = base_delay_s
        self.max = max_delay_s
        self.silent = silent_delay_s
        self.rng = rng
        self.classify = classify_error

    def next_delay(self, exc: Exception, retries_so_far: int) -> float | None:
        """Seconds to wait before the next attempt, or None: give up and raise."""
        spec = self.classify(exc)
        if spec.retry_policy is RetryPolicy.NONE or retries_so_far >= spec.retry_budget:
            return None
        cap = self.silent if spec.retry_policy is RetryPolicy.SILENT else self.max
        asked = getattr(exc, "retry_after_s", None)  # the upstream said when (Retry-After)
        if isinstance(asked, int | float) and asked > self.max:
            return None  # it wants longer than we may wait: give up now rather than hammer it
        if not self.budget.try_spend():
            return None
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^n)].
        delay = float(self.rng() * min(cap, self.base * (2**retries_so_far)))
        return max(delay, float(asked)) if isinstance(asked, int | float) else delay

    @staticmethod
    def note(exc: Exception, attempt: int, delay_s: float) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                contract.RETRY_EVENT,
                {
                    "attempt": attempt,
                    contract.ERROR_TYPE: classify(exc).code,
                    "exception.type": type(exc).__name__,
                    "delay_ms": delay_s * 1000,
                },
            )

    @staticmethod
    def done(attempts: int) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(contract.RETRY_ATTEMPTS, attempts)


@overload
def retry(fn: F, /) -> F: ...


@overload
def retry(
    *,
    budget: RetryBudget | None = None,
    base_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    silent_delay_s: float = 0.5,
    sleep: Callable[[float], Any] | None = None,
    rng: Callable[[], float] = random.random,
    classify_error: Callable[[BaseException], ErrorCode] = classify,
) -> Callable[[F], F]: ...


def retry(
    fn: F | None = None,
    /,
    *,
    budget: RetryBudget | None = None,
    base_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    silent_delay_s: float = 0.5,
    sleep: Callable[[float], Any] | None = None,
    rng: Callable[[], float] = random.random,
    classify_error: Callable[[BaseException], ErrorCode] = classify,
) -> F | Callable[[F], F]:
    """Retry a sync or async function as the taxonomy allows.

    ``sleep`` defaults to ``time.sleep`` (``asyncio.sleep`` for coroutines); tests pass their own.
    ``classify_error`` maps an exception to its taxonomy row (default: its ``error_code``, a known
    mapping, or INTERNAL, which is never retried).
    """
    policy = _Policy(
        budget or DEFAULT_BUDGET, base_delay_s, max_delay_s, silent_delay_s, rng, classify_error
    )

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            import asyncio  # only for coroutines: services that never retry one do not load it

            async_sleep = sleep or asyncio.sleep

            @functools.wraps(func)
            async def retrying_async(*args: Any, **kwargs: Any) -> Any:
                policy.budget.record_call()
                attempt = 1
                while True:
                    try:
                        result = await func(*args, **kwargs)
                    except Exception as exc:
                        delay = policy.next_delay(exc, attempt - 1)
                        if delay is None:
                            policy.done(attempt)
                            raise
                        policy.note(exc, attempt, delay)
                        pause = async_sleep(delay)
                        if inspect.isawaitable(pause):
                            await pause
                        attempt += 1
                        continue
                    policy.done(attempt)
                    return result

            return cast(F, retrying_async)

        sync_sleep = sleep or time.sleep

        @functools.wraps(func)
        def retrying(*args: Any, **kwargs: Any) -> Any:
            policy.budget.record_call()
            attempt = 1
            while True:
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    delay = policy.next_delay(exc, attempt - 1)
                    if delay is None:
                        policy.done(attempt)
                        raise
                    policy.note(exc, attempt, delay)
                    sync_sleep(delay)
                    attempt += 1
                    continue
                policy.done(attempt)
                return result

        return cast(F, retrying)

    return decorate(fn) if fn is not None else decorate
