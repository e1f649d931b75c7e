"""Retries that follow the taxonomy: only retryable codes, never past a code's retry budget,
exponential backoff with full jitter, and a process-wide budget so an outage cannot become a retry
storm (at most ~10% extra calls, plus a small floor for quiet services).

    @retry                      # or @retry(budget=RetryBudget(ratio=0.2), base_delay_s=0.2)
    def call_model(prompt): ...

Each retried failure is a ``blameset.retry`` event on the current span, with the code the retry
decided on; the span ends with ``blameset.retry.attempts``. The last error is raised unchanged.

The providers' own errors are known without importing their SDKs (:func:`classify_provider`):
OpenAI's and Anthropic's rate limits (429) are ``QUOTA_EXCEEDED``; timeouts, connection errors,
5xx and Anthropic's ``overloaded`` (529) are ``UPSTREAM_TIMEOUT``; the server's ``retry-after-ms``
and ``retry-after`` headers set the wait.
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
from .errors import CODES, ErrorCode, RetryPolicy, classify

# By class name (anywhere in the exception's MRO) and HTTP status: openai and anthropic name their
# errors alike (both SDKs come from the same generator), httpx's timeouts end in "Timeout".
_RATE_LIMITED = frozenset({"RateLimitError"})
_UNAVAILABLE = frozenset(
    {
        "APITimeoutError",
        "APIConnectionError",
        "InternalServerError",
        "OverloadedError",
        "ServiceUnavailableError",
        "DeadlineExceededError",
        "ReadTimeout",
        "ConnectTimeout",
        "PoolTimeout",
        "WriteTimeout",
        "RemoteProtocolError",
    }
)
_INVALID = frozenset({"BadRequestError", "NotFoundError", "UnprocessableEntityError"})
_UNAVAILABLE_STATUS = frozenset({408, 500, 502, 503, 504, 529})


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def classify_provider(exc: BaseException) -> ErrorCode | None:
    """The taxonomy row of an LLM provider's error (OpenAI, Anthropic, httpx), or None."""
    names = {klass.__name__ for klass in type(exc).__mro__}
    status = _status(exc)
    if names & _RATE_LIMITED or status == 429:
        return CODES["QUOTA_EXCEEDED"]
    if names & _UNAVAILABLE or status in _UNAVAILABLE_STATUS:
        return CODES["UPSTREAM_TIMEOUT"]
    if names & _INVALID or status in (400, 404, 413, 422):
        return CODES["INVALID_INPUT"]
    return None


def classify_with_providers(exc: BaseException) -> ErrorCode:
    """:func:`errors.classify`, knowing the providers' errors: an exception's own taxonomy code
    first, then a provider error's mapping, then the built-in mappings (INTERNAL at worst)."""
    code = getattr(exc, "error_code", None)
    if not (isinstance(code, str) and code):
        found = classify_provider(exc)
        if found is not None:
            return found
    return classify(exc)


def retry_after_s(exc: BaseException) -> float | None:
    """When the upstream asked to be retried, in seconds: the exception's own ``retry_after_s``,
    else the response's ``retry-after-ms`` or ``retry-after`` header (seconds or an HTTP date)."""
    asked = getattr(exc, "retry_after_s", None)
    if isinstance(asked, int | float) and not isinstance(asked, bool):
        return float(asked)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        after = headers.get("retry-after")
        if after is None:
            return None
        try:
            return max(0.0, float(after))
        except ValueError:
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(after)
            return max(0.0, when.timestamp() - time.time())
    except Exception:  # a header of a shape we do not know: no hint
        return None


__all__ = ["RetryBudget", "classify_provider", "retry", "retry_after_s"]

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

    def next_delay(self, exc: Exception, retries_so_far: int) -> tuple[float | None, ErrorCode]:
        """Seconds to wait before the next attempt (None: give up and raise), and the code the
        decision was made on."""
        spec = self.classify(exc)
        if spec.retry_policy is RetryPolicy.NONE or retries_so_far >= spec.retry_budget:
            return None, spec
        cap = self.silent if spec.retry_policy is RetryPolicy.SILENT else self.max
        asked = retry_after_s(exc)  # the upstream said when (retry-after-ms, Retry-After)
        if asked is not None and asked > self.max:
            return None, spec  # it wants longer than we may wait: give up rather than hammer it
        if not self.budget.try_spend():
            return None, spec
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^n)].
        delay = float(self.rng() * min(cap, self.base * (2**retries_so_far)))
        return (max(delay, asked) if asked is not None else delay), spec

    @staticmethod
    def note(exc: Exception, attempt: int, delay_s: float, spec: ErrorCode) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                contract.RETRY_EVENT,
                {
                    "attempt": attempt,
                    contract.ERROR_TYPE: spec.code,
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
    classify_error: Callable[[BaseException], ErrorCode] = classify_with_providers,
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
    classify_error: Callable[[BaseException], ErrorCode] = classify_with_providers,
) -> F | Callable[[F], F]:
    """Retry a sync or async function as the taxonomy allows.

    ``sleep`` defaults to ``time.sleep`` (``asyncio.sleep`` for coroutines); tests pass their own.
    ``classify_error`` maps an exception to its taxonomy row (default: its ``error_code``, a
    provider error's mapping, a known mapping, or INTERNAL, which is never retried).
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
                        delay, spec = policy.next_delay(exc, attempt - 1)
                        if delay is None:
                            policy.done(attempt)
                            raise
                        policy.note(exc, attempt, delay, spec)
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
                    delay, spec = policy.next_delay(exc, attempt - 1)
                    if delay is None:
                        policy.done(attempt)
                        raise
                    policy.note(exc, attempt, delay, spec)
                    sync_sleep(delay)
                    attempt += 1
                    continue
                policy.done(attempt)
                return result

        return cast(F, retrying)

    return decorate(fn) if fn is not None else decorate
