"""@retry knows the providers' errors: the real openai and anthropic exception classes."""

from __future__ import annotations

from typing import Any

import pytest

from blameset.instrument import RetryBudget, errors, retry, traced
from blameset.instrument._retry import classify_provider, retry_after_s
from blameset.instrument.testing import CapturedSpans

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


def _response(module: Any, status: int, headers: dict[str, str] | None = None) -> Any:
    """An HTTP response of the transport the SDK itself uses (its module's ``httpx2``)."""
    transport = module._base_client.httpx2
    request = transport.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return transport.Response(status, headers=headers or {}, request=request)


def _status_error(module: Any, cls: str, status: int, headers: dict[str, str] | None = None) -> Any:
    return getattr(module, cls)("boom", response=_response(module, status, headers), body=None)


@pytest.mark.parametrize(
    ("module_name", "cls", "status", "code"),
    [
        ("openai", "RateLimitError", 429, "QUOTA_EXCEEDED"),
        ("anthropic", "RateLimitError", 429, "QUOTA_EXCEEDED"),
        ("openai", "InternalServerError", 500, "UPSTREAM_TIMEOUT"),
        ("anthropic", "InternalServerError", 529, "UPSTREAM_TIMEOUT"),
        ("openai", "BadRequestError", 400, "INVALID_INPUT"),
        ("anthropic", "AuthenticationError", 401, None),
    ],
)
def test_provider_status_errors_map_onto_the_taxonomy(module_name, cls, status, code):
    """Rate limits, 5xx and overloaded, bad requests map by class name and status; 401 does not."""
    module = {"openai": openai, "anthropic": anthropic}[module_name]
    found = classify_provider(_status_error(module, cls, status))
    assert (found.code if found else None) == code


def test_provider_timeouts_are_upstream_timeouts():
    """The SDKs' timeout and connection errors are UPSTREAM_TIMEOUT, retried silently."""
    for module in (openai, anthropic):
        request = _response(module, 200).request
        assert classify_provider(module.APITimeoutError(request=request)).code == "UPSTREAM_TIMEOUT"
        assert classify_provider(module.APIConnectionError(request=request)).code == (
            "UPSTREAM_TIMEOUT"
        )


def test_retry_after_ms_and_retry_after_headers_set_the_wait():
    """retry-after-ms wins over retry-after; either is read from the response's headers."""
    both = _status_error(
        openai, "RateLimitError", 429, {"retry-after-ms": "250", "retry-after": "9"}
    )
    seconds = _status_error(anthropic, "RateLimitError", 429, {"retry-after": "2"})
    assert retry_after_s(both) == 0.25
    assert retry_after_s(seconds) == 2.0
    assert retry_after_s(_status_error(openai, "RateLimitError", 429)) is None


def test_a_rate_limited_call_is_retried_after_the_servers_wait_and_the_event_says_so(
    spans: CapturedSpans,
):
    """An openai 429 with retry-after-ms waits that long; its retry event says QUOTA_EXCEEDED."""
    waits: list[float] = []
    outcomes: list[Any] = [
        _status_error(openai, "RateLimitError", 429, {"retry-after-ms": "300"}),
        "answer",
    ]

    @traced("handler")
    @retry(budget=RetryBudget(), sleep=waits.append, rng=lambda: 0.0)
    def call() -> str:
        value = outcomes.pop(0)
        if isinstance(value, Exception):
            raise value
        return str(value)

    assert call() == "answer"
    assert waits == [0.3]
    (event,) = [e for e in spans.one("handler").events if e.name == "blameset.retry"]
    assert event.attributes["error.type"] == "QUOTA_EXCEEDED"
    assert event.attributes["exception.type"] == "RateLimitError"


def test_the_event_carries_the_code_a_custom_classifier_decided(spans: CapturedSpans):
    """With a custom classifier, the retry event says the code it returned, not INTERNAL."""
    outcomes: list[Any] = [KeyError("flaky"), "ok"]

    @traced("handler")
    @retry(
        budget=RetryBudget(),
        sleep=lambda s: None,
        classify_error=lambda exc: errors.lookup("UPSTREAM_TIMEOUT"),
    )
    def call() -> str:
        value = outcomes.pop(0)
        if isinstance(value, Exception):
            raise value
        return str(value)

    assert call() == "ok"
    (event,) = [e for e in spans.one("handler").events if e.name == "blameset.retry"]
    assert event.attributes["error.type"] == "UPSTREAM_TIMEOUT"


def test_an_authentication_error_is_not_retried():
    """A 401 is the service's own misconfiguration: raised at once, never retried."""
    attempts = []

    @retry(budget=RetryBudget(), sleep=lambda s: None)
    def call() -> None:
        attempts.append(1)
        raise _status_error(anthropic, "AuthenticationError", 401)

    with pytest.raises(anthropic.AuthenticationError):
        call()
    assert len(attempts) == 1
