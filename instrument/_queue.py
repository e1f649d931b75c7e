"""Queue time: carry a stamp with each job, and the worker's request span reports the wait.

Producer: ``job = {"payload": ..., "stamp": instrument.stamp().to_dict()}``. Worker:
``with dequeued(QueueStamp.from_dict(job["stamp"]), "outline"): handle(job)``. The stamp holds the
enqueue time, the W3C trace context and the request context (tenant, user, actor, action_id,
version override), all JSON-safe, so it crosses process boundaries (Redis, Celery, SQS) too.
Inside the block the trace continues the producer's, a ``queue`` span covers the wait, and the first
request span started there gets ``blameset.latency.queue_ms`` and ``blameset.boundary = async``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from . import _runtime, contract
from ._context import current_context, request_context, resolve_versions
from ._faults import internal_error
from ._version_set import VersionSet, span_attributes
from .tracing import pending_queue

__all__ = ["QueueStamp", "dequeued", "stamp"]


@dataclass(frozen=True, slots=True)
class QueueStamp:
    """What a job carries from producer to worker. ``to_dict()`` is JSON-safe."""

    enqueued_at_ns: int
    carrier: Mapping[str, str] = field(default_factory=dict)
    tenant: str | None = None
    user: str | None = None
    actor: str | None = None
    action_id: str | None = None
    versions: str | None = None
    """Canonical string of the version set override in force at enqueue, if any."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["carrier"] = dict(self.carrier)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueStamp:
        return cls(
            enqueued_at_ns=int(data["enqueued_at_ns"]),
            carrier=dict(data.get("carrier") or {}),
            tenant=data.get("tenant"),
            user=data.get("user"),
            actor=data.get("actor"),
            action_id=data.get("action_id"),
            versions=data.get("versions"),
        )


def stamp() -> QueueStamp:
    """Capture now, the current trace and the request context, to send along with a job."""
    state = _runtime.STATE
    carrier: dict[str, str] = {}
    try:
        from opentelemetry.propagate import get_global_textmap  # loads entry points: not at import

        get_global_textmap().inject(carrier)
    except Exception:
        internal_error("queue stamp")
    ctx = current_context()
    versions = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
    return QueueStamp(
        enqueued_at_ns=state.clock(),
        carrier=carrier,
        tenant=ctx.tenant,
        user=ctx.user,
        actor=ctx.actor,
        action_id=ctx.action_id,
        versions=versions.canonical if versions is not None else None,
    )


@contextmanager
def dequeued(job: QueueStamp, name: str = "job") -> Iterator[float]:
    """Run a job's work in the context it was enqueued in; yields the queue time in ms."""
    state = _runtime.STATE
    now = state.clock()
    queue_ms = max(0.0, (now - job.enqueued_at_ns) / 1e6)
    with ExitStack() as stack:
        try:
            from opentelemetry.propagate import get_global_textmap

            parent = get_global_textmap().extract(job.carrier)
            token = otel_context.attach(parent)
            stack.callback(otel_context.detach, token)
        except Exception:
            internal_error("queue context")
        versions = VersionSet.parse(job.versions) if job.versions else None
        stack.enter_context(
            request_context(
                tenant=job.tenant,
                user=job.user,
                actor=job.actor,
                action_id=job.action_id,
                versions=versions,
            )
        )
        if not state.off and state.tracer is not None:
            span = _queue_span(state, name, job.enqueued_at_ns, now, queue_ms)
            if span is not None:  # the work becomes a child of the wait: wait, then process
                token = otel_context.attach(trace.set_span_in_context(span))
                stack.callback(otel_context.detach, token)
        pending = pending_queue.set([queue_ms])
        stack.callback(pending_queue.reset, pending)
        yield queue_ms


def _queue_span(
    state: _runtime.State, name: str, start: int, end: int, queue_ms: float
) -> Span | None:
    try:
        ctx = current_context()
        vs = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
        attrs: dict[str, Any] = {
            contract.SPAN_KIND: "queue",
            **span_attributes(vs or state.version_set, state.version_set),
            contract.LATENCY_QUEUE_MS: queue_ms,
            contract.BOUNDARY: "async",
        }
        if ctx.tenant:
            attrs[contract.TENANT_ID] = ctx.tenant
        span = state.tracer.start_span(  # type: ignore[union-attr]
            f"queue {name}", kind=SpanKind.CONSUMER, attributes=attrs, start_time=start
        )
        span.end(end_time=end)
        return span
    except Exception:
        internal_error("queue span")
        return None
