"""One tracer provider for the process: how blameset meets the OpenTelemetry global.

Libraries instrumented by OpenTelemetry (openai-v2, OpenInference, Traceloop, FastAPI's) take
their tracer from the global provider, once, when they are instrumented; blameset reconfigures
(``configure()`` again, ``configured()`` blocks in tests). So:

- when the application set no provider, the global becomes :class:`BlamesetTracerProvider`,
  whose tracers start each span in the provider of the configuration in force: a library's span
  goes through blameset's processors whichever configure() call came last;
- when the application already set an SDK provider (its own, Logfire's), blameset adds one
  :class:`ForwardingSpanProcessor` to it, which hands every span to the configuration in force,
  and makes its own spans with that provider's tracers: one provider, both pipelines;
- anything else (a provider of another SDK) is left alone, with one warning saying so.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from . import _runtime
from ._faults import internal_error

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from opentelemetry.util.types import Attributes

__all__ = [
    "BlamesetTracerProvider",
    "ForwardingSpanProcessor",
    "Mode",
    "install_global",
]

logger = logging.getLogger("blameset")

Mode = Literal["ours", "shared", "foreign"]
"""ours: the global provider is blameset's; shared: the application's SDK provider, ours added to
it; foreign: neither (library spans do not reach blameset)."""

_lock = threading.Lock()
_forwarding_added: set[int] = set()
_warned = False


class _DelegatingTracer(trace.Tracer):
    """A tracer whose spans start in the provider of the configuration in force."""

    def __init__(
        self,
        name: str,
        version: str | None,
        schema_url: str | None,
        attributes: Attributes,
    ) -> None:
        self._args = (name, version, schema_url, attributes)
        self._generation = -1
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _current(self) -> trace.Tracer:
        state = _runtime.STATE
        if state.generation != self._generation:
            provider = state.provider
            name, version, schema_url, attributes = self._args
            self._tracer = (
                provider.get_tracer(name, version, schema_url, attributes)
                if provider is not None and not state.off
                else trace.NoOpTracer()
            )
            self._generation = state.generation
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().start_as_current_span(*args, **kwargs)


class BlamesetTracerProvider(trace.TracerProvider):
    """The global provider blameset installs: its tracers follow configure()."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _DelegatingTracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )

    # SDK-provider methods some callers expect on the global one.
    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return _runtime.force_flush(timeout_millis)

    def shutdown(self) -> None:
        _runtime.shutdown()


class ForwardingSpanProcessor(SpanProcessor):
    """Added to an application's SDK provider: every span of it goes to blameset's pipeline
    in force as well (the application's own processors keep theirs)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        target = _target()
        if target is not None:
            try:
                target.on_start(span, parent_context=parent_context)
            except Exception:
                internal_error("forwarded span start")

    def on_end(self, span: ReadableSpan) -> None:
        target = _target()
        if target is not None:
            try:
                target.on_end(span)
            except Exception:
                internal_error("forwarded span end")

    def shutdown(self) -> None:
        return None  # blameset's pipeline shuts down with blameset's configuration

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _target() -> Any:
    state = _runtime.STATE
    provider = state.provider
    if state.off or provider is None:
        return None
    return getattr(provider, "_active_span_processor", None)


def install_global() -> tuple[Mode, SdkTracerProvider | None]:
    """Make the process's global tracer provider reach blameset; what it did, and the
    application's SDK provider when blameset shares it. Idempotent."""
    global _warned
    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, BlamesetTracerProvider):
            return "ours", None
        if type(current).__name__ == "ProxyTracerProvider":
            trace.set_tracer_provider(BlamesetTracerProvider())
            if isinstance(trace.get_tracer_provider(), BlamesetTracerProvider):
                return "ours", None
            current = trace.get_tracer_provider()  # lost a race to another setter
        if isinstance(current, SdkTracerProvider):
            if id(current) not in _forwarding_added:
                current.add_span_processor(ForwardingSpanProcessor())
                _forwarding_added.add(id(current))
            return "shared", current
        if not _warned:
            _warned = True
            logger.warning(
                "blameset: the global tracer provider is a %s, not an OpenTelemetry SDK "
                "provider: blameset records its own spans, but spans of other libraries "
                "(openai-v2, FastAPI...) do not reach it",
                type(current).__name__,
            )
        return "foreign", None
