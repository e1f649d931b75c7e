"""The outcome's fast attribute path leaves a span exactly as the SDK's set_attributes would."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from blameset.instrument.tracing import _set_plain


def _both(attrs: dict[str, Any], limits: SpanLimits | None = None) -> tuple[Any, Any]:
    tracer = TracerProvider(span_limits=limits).get_tracer("t")
    start = {"a": "x", "b": 1}
    sdk, fast = tracer.start_span("s", attributes=start), tracer.start_span("s", attributes=start)
    sdk.set_attributes(attrs)
    _set_plain(fast, attrs)
    return sdk, fast


@pytest.mark.parametrize(
    "attrs",
    [
        {"c": 1.5, "d": 0, "e": "success", "f": True},
        {"a": "again"},  # a key set again moves to the end
        {"c": [1, 2]},  # a sequence: the SDK's path makes it a tuple
        {"c": object()},  # not an attribute value: the SDK's path decides
        {"": 1, "c": 2},  # an empty key: the SDK drops it
    ],
)
def test_same_attributes_and_order_as_the_sdk(attrs: dict[str, Any]) -> None:
    """Values, order and dropped count match the SDK's set_attributes for plain and odd input."""
    sdk, fast = _both(attrs)
    assert list(fast.attributes.items()) == list(sdk.attributes.items())
    assert fast.dropped_attributes == sdk.dropped_attributes  # type: ignore[attr-defined]


def test_limits_are_the_sdks() -> None:
    """A full attribute table or a length limit leaves it to the SDK: same eviction, truncation."""
    for limits in (SpanLimits(max_span_attributes=3), SpanLimits(max_span_attribute_length=2)):
        sdk, fast = _both({"c": "long value", "d": 2}, limits)
        assert list(fast.attributes.items()) == list(sdk.attributes.items())


def test_an_ended_span_is_not_changed() -> None:
    """On an ended span nothing is set, as with the SDK."""
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("s")
    span.end()
    _set_plain(span, {"c": 1})
    assert "c" not in span.attributes
