"""blameset instrument: decorators that turn service calls into OpenTelemetry spans stamped with
the version set, tokens, cost and the latency breakdown, and the guard rails beside them. Light to
import: the OpenTelemetry SDK and genai-prices load only when configure() or the first priced call
needs them.

What users need is re-exported here. Public modules, for what is not: ``errors`` (the exception
tree: ``errors.QuotaExceeded``, ``errors.register``), ``audit`` (``verify``, ``set_default``),
``budget``, ``idempotency`` (the ``Serializer`` protocol), ``stores``, ``cost``, ``contract`` (the
attribute names analyze reads), ``testing`` (``capture_spans``), ``tracing`` and ``logs``. Modules
named ``_name`` are the implementation.
"""

from . import audit as audit
from . import errors as errors
from ._config import configure, configured
from ._context import RequestContext, bind_context, current_context, request_context
from ._queue import QueueStamp, dequeued, stamp
from ._retry import RetryBudget, retry
from ._runtime import force_flush, shutdown
from ._version_set import VersionSet
from .audit import AuditLog
from .budget import Budget, degrade
from .cost import ModelPrice
from .idempotency import dedupe_key, idempotent
from .logs import emit_event, setup_logging
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

# `audit` is imported above for its side effect too: it registers the recorder that audits
# SAFETY_VIOLATION-like errors raised in a span (tracing.on_audited_error), so it always runs.

__all__ = [
    "AuditLog",
    "Budget",
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
    "degrade",
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
