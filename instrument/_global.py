"""One tracer provider and one logger provider for the process: how blameset meets the
OpenTelemetry globals.

Libraries instrumented by OpenTelemetry (openai-v2, OpenInference, Traceloop, FastAPI's) take
their tracer and logger from the global providers, once, when they are instrumented; blameset
reconfigures (``configure()`` again, ``configured()`` blocks in tests). So, for each signal:

- when the application set no provider, the global becomes blameset's
  (:class:`BlamesetTracerProvider`, :class:`BlamesetLoggerProvider`), whose tracers and loggers
  work through the providers of the configuration in force: a library's span goes through
  blameset's processors whichever configure() call came last;
- when the application already set an SDK provider (its own, Logfire's: anything with
  ``add_span_processor`` / ``add_log_record_processor``), blameset adds one forwarding processor
  to it, which hands every span or log record to the configuration in force; blameset's own spans
  are then made with that provider's tracers: one provider, both pipelines;
- anything else is left alone, with one warning saying what blameset did instead.

The globals are set once per process by OpenTelemetry's rule; :func:`saved` and :func:`restore`
let ``configured()`` put back a global it set, so a test leaves the process as it found it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import SpanProcessor

from . import _runtime
from ._faults import internal_error

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import ReadWriteLogRecord
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from opentelemetry.util.types import Attributes

__all__ = [
    "BlamesetLoggerProvider",
    "BlamesetTracerProvider",
    "ForwardingLogRecordProcessor",
    "ForwardingSpanProcessor",
    "Installed",
    "Mode",
    "install_global",
    "install_global_logs",
    "restore",
    "saved",
]

logger = logging.getLogger("blameset")

Mode = Literal["ours", "shared", "foreign"]
"""ours: the global provider is blameset's; shared: the application's SDK provider, ours added to
it; foreign: neither (library spans or log records do not reach blameset)."""

_lock = threading.Lock()
_warned: set[str] = set()


# --- traces -------------------------------------------------------------------------------------
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
        target = _span_target()
        if target is not None:
            try:
                target.on_start(span, parent_context=parent_context)
            except Exception:
                internal_error("forwarded span start")

    def on_end(self, span: ReadableSpan) -> None:
        target = _span_target()
        if target is not None:
            try:
                target.on_end(span)
            except Exception:
                internal_error("forwarded span end")

    def shutdown(self) -> None:
        return None  # blameset's pipeline shuts down with blameset's configuration

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _span_target() -> Any:
    state = _runtime.STATE
    provider = state.provider
    if state.off or provider is None:
        return None
    return getattr(provider, "_active_span_processor", None)


@dataclass(frozen=True, slots=True)
class Installed:
    """What :func:`install_global` did: the mode, and the application's provider when shared."""

    mode: Mode
    shared: Any = None


def install_global() -> Installed:
    """Make the process's global tracer provider reach blameset. Idempotent."""
    with _lock:
        current: Any = trace.get_tracer_provider()
        if isinstance(current, BlamesetTracerProvider):
            return Installed("ours")
        if isinstance(current, trace.ProxyTracerProvider):  # OpenTelemetry's: nothing set yet
            trace.set_tracer_provider(BlamesetTracerProvider())
            current = trace.get_tracer_provider()
            if isinstance(current, BlamesetTracerProvider):
                return Installed("ours")
        if callable(getattr(current, "add_span_processor", None)):
            if not getattr(current, "_blameset_forwarding", False):
                current.add_span_processor(ForwardingSpanProcessor())
                _mark(current, "_blameset_forwarding")
            return Installed("shared", current)
        _warn_once(
            "traces",
            "blameset: the global tracer provider is a %s, which takes no span processors: "
            "blameset records its own spans with a provider of its own, but spans of other "
            "libraries (openai-v2, FastAPI...) do not reach it",
            type(current).__name__,
        )
        return Installed("foreign")


# --- logs ---------------------------------------------------------------------------------------
class _DelegatingLogger(_logs.Logger):
    """A logger whose records go to the logger provider of the configuration in force."""

    def __init__(
        self, name: str, version: str | None, schema_url: str | None, attributes: Attributes
    ) -> None:
        super().__init__(name, version, schema_url, attributes)
        self._generation = -1
        self._logger: _logs.Logger = _logs.NoOpLogger(name)

    def _current(self) -> _logs.Logger:
        state = _runtime.STATE
        if state.generation != self._generation:
            provider = state.logger_provider
            self._logger = (
                provider.get_logger(self._name, self._version, self._schema_url, self._attributes)
                if provider is not None and not state.off
                else _logs.NoOpLogger(self._name)
            )
            self._generation = state.generation
        return self._logger

    def emit(self, record: Any = None, **fields: Any) -> None:
        if record is not None:
            self._current().emit(record)
        else:
            self._current().emit(**fields)

    def enabled(self, **kwargs: Any) -> bool:
        return self._current().enabled(**kwargs)


class BlamesetLoggerProvider(_logs.LoggerProvider):
    """The global logger provider blameset installs: its loggers follow configure()."""

    def get_logger(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> _logs.Logger:
        return _DelegatingLogger(name, version, schema_url, attributes)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return _runtime.force_flush(timeout_millis)

    def shutdown(self) -> None:
        _runtime.shutdown()


class ForwardingLogRecordProcessor(LogRecordProcessor):
    """Added to an application's SDK logger provider: its records reach blameset's pipeline."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        state = _runtime.STATE
        provider = state.logger_provider
        if state.off or provider is None:
            return
        target = getattr(provider, "_multi_log_record_processor", None)
        if target is not None:
            try:
                target.on_emit(log_record)
            except Exception:
                internal_error("forwarded log record")

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def install_global_logs() -> Mode:
    """Make the process's global logger provider reach blameset. Idempotent."""
    with _lock:
        current: Any = _logs.get_logger_provider()
        if isinstance(current, BlamesetLoggerProvider):
            return "ours"
        if isinstance(current, _logs._internal.ProxyLoggerProvider):  # nothing set yet
            _logs.set_logger_provider(BlamesetLoggerProvider())
            current = _logs.get_logger_provider()
            if isinstance(current, BlamesetLoggerProvider):
                return "ours"
        if callable(getattr(current, "add_log_record_processor", None)):
            if not getattr(current, "_blameset_forwarding", False):
                current.add_log_record_processor(ForwardingLogRecordProcessor())
                _mark(current, "_blameset_forwarding")
            return "shared"
        _warn_once(
            "logs",
            "blameset: the global logger provider is a %s, which takes no log record "
            "processors: blameset exports its own log records, but other libraries' do not "
            "reach it",
            type(current).__name__,
        )
        return "foreign"


# --- helpers ------------------------------------------------------------------------------------
def _mark(provider: Any, name: str) -> None:
    try:
        setattr(provider, name, True)
    except Exception:  # a provider with __slots__: it may get a second forwarder, nothing worse
        logger.debug("blameset: cannot mark %r", provider, exc_info=True)


def _warn_once(signal: str, message: str, *args: Any) -> None:
    if signal not in _warned:
        _warned.add(signal)
        logger.warning(message, *args)


@dataclass(frozen=True, slots=True)
class Saved:
    """The global providers as they were before a ``configured()`` block (None: not set)."""

    tracer_provider: Any
    logger_provider: Any


def saved() -> Saved:
    """The global providers now, for :func:`restore`."""
    return Saved(
        getattr(trace, "_TRACER_PROVIDER", None),
        getattr(_logs._internal, "_LOGGER_PROVIDER", None),
    )


def restore(before: Saved) -> None:
    """Unset a global provider blameset set since ``before`` was taken, when none was set then.

    OpenTelemetry allows one set per process, and has no unset: this resets its two module
    globals (the provider and its set-once flag), as OpenTelemetry's own test helpers do.
    Tracers that libraries took meanwhile keep following blameset's configuration in force,
    which the caller has put back. Never raises."""
    from opentelemetry.util._once import Once

    try:
        with _lock:
            if before.tracer_provider is None and isinstance(
                getattr(trace, "_TRACER_PROVIDER", None), BlamesetTracerProvider
            ):
                trace._TRACER_PROVIDER = None
                trace._TRACER_PROVIDER_SET_ONCE = Once()
            internal = _logs._internal
            if before.logger_provider is None and isinstance(
                getattr(internal, "_LOGGER_PROVIDER", None), BlamesetLoggerProvider
            ):
                internal._LOGGER_PROVIDER = None
                internal._LOGGER_PROVIDER_SET_ONCE = Once()
    except Exception:
        internal_error("restoring the global providers")
