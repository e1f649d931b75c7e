"""The OpenTelemetry GenAI client metrics, recorded from blameset's LLM spans.

``gen_ai.client.token.usage`` (tokens, by ``gen_ai.token.type``),
``gen_ai.client.operation.duration`` (seconds) and ``gen_ai.client.operation.time_to_first_chunk``
(seconds, streamed calls only), with the convention's attributes, so dashboards built on the
semantic conventions read our calls.

Only when the application has set a global MeterProvider: without one there is nothing to
record to, and this costs one lookup per LLM call. A call inside which an instrumentation's own
GenAI span ran (openai-v2, Traceloop record these metrics themselves) is left to it, so a
dashboard counts each call once.
"""

from __future__ import annotations

import sys
from typing import Any

from . import contract
from ._faults import internal_error

__all__ = ["enabled", "record_call"]

TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"

# The convention's advisory bucket boundaries.
_TOKEN_BUCKETS = [4.0**i for i in range(14)]
_SECOND_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                   40.96, 81.92]  # fmt: skip

_provider: Any = None  # the MeterProvider the instruments below belong to
_instruments: tuple[Any, Any, Any] | None = None


def enabled() -> bool:
    """Whether a MeterProvider is set (instruments made for the one in force)."""
    # The API module's global, read directly: get_meter_provider() costs a microsecond or two
    # (it reads the environment), too much for every LLM call. Unimported: nobody set one.
    internal = sys.modules.get("opentelemetry.metrics._internal")
    if internal is None:
        return False
    provider = getattr(internal, "_METER_PROVIDER", None)
    if provider is None:
        return False
    global _provider, _instruments
    if provider is not _provider:
        _provider = provider
        _instruments = None
        if type(provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider"):
            try:
                meter = provider.get_meter("blameset")
                _instruments = (
                    meter.create_histogram(
                        TOKEN_USAGE,
                        unit="{token}",
                        description="Number of input and output tokens used",
                        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
                    ),
                    meter.create_histogram(
                        OPERATION_DURATION,
                        unit="s",
                        description="GenAI operation duration",
                        explicit_bucket_boundaries_advisory=_SECOND_BUCKETS,
                    ),
                    meter.create_histogram(
                        TIME_TO_FIRST_CHUNK,
                        unit="s",
                        description="Time to receive the first chunk of a streamed response",
                        explicit_bucket_boundaries_advisory=_SECOND_BUCKETS,
                    ),
                )
            except Exception:
                internal_error("metrics setup")
    return _instruments is not None


def record_call(rec: Any, error_type: str | None, end_ns: int) -> None:
    """Record the metrics of one LLM call, from its span's recorder (never raises)."""
    instruments = _instruments
    if instruments is None or rec.foreign_genai:
        return
    try:
        tokens, duration, first_chunk = instruments
        attrs: dict[str, Any] = {contract.GEN_AI_OPERATION_NAME: "chat"}
        span_attrs = getattr(rec.span, "attributes", None) or {}
        operation = span_attrs.get(contract.GEN_AI_OPERATION_NAME)
        if isinstance(operation, str):
            attrs[contract.GEN_AI_OPERATION_NAME] = operation
        if rec.provider:
            attrs[contract.GEN_AI_PROVIDER_NAME] = rec.provider
        elif isinstance(span_attrs.get(contract.GEN_AI_PROVIDER_NAME), str):
            attrs[contract.GEN_AI_PROVIDER_NAME] = span_attrs[contract.GEN_AI_PROVIDER_NAME]
        if rec.model:
            attrs[contract.GEN_AI_REQUEST_MODEL] = rec.model
        if rec.response_model:
            attrs[contract.GEN_AI_RESPONSE_MODEL] = rec.response_model
        timed = dict(attrs)
        if error_type is not None:
            timed[contract.ERROR_TYPE] = error_type
        duration.record((end_ns - rec.start_ns) / 1e9, timed)
        if rec.first_token_ns is not None:
            first_chunk.record((rec.first_token_ns - rec.start_ns) / 1e9, timed)
        usage = rec.usage
        if usage is not None:
            tokens.record(usage[0], {**attrs, "gen_ai.token.type": "input"})
            tokens.record(usage[1], {**attrs, "gen_ai.token.type": "output"})
    except Exception:
        internal_error("metrics")
