"""blameset instrument: decorators that turn service calls into OpenTelemetry spans stamped with
the version set, tokens, cost and the latency breakdown. Light to import: the OpenTelemetry SDK and
genai-prices load only when configure() or the first priced call needs them.
"""

from ._runtime import configure, configured, force_flush, shutdown
from .context import RequestContext, bind_context, current_context, request_context
from .cost import ModelPrice
from .idempotency import dedupe_key, idempotent
from .logs import emit_event, setup_logging
from .queue import QueueStamp, dequeued, stamp
from .retry import RetryBudget, retry
from .tracing import (
    Traced,
    current_span,
    error_code,
    record_content,
    record_first_token,
    record_queue_time,
    record_usage,
    set_final_status,
    traced,
)
from .version_set import VersionSet

__all__ = [
    "ModelPrice",
    "QueueStamp",
    "RequestContext",
    "RetryBudget",
    "Traced",
    "VersionSet",
    "bind_context",
    "configure",
    "configured",
    "current_context",
    "current_span",
    "dedupe_key",
    "dequeued",
    "emit_event",
    "error_code",
    "force_flush",
    "idempotent",
    "record_content",
    "record_first_token",
    "record_queue_time",
    "record_usage",
    "request_context",
    "retry",
    "set_final_status",
    "setup_logging",
    "shutdown",
    "stamp",
    "traced",
]
