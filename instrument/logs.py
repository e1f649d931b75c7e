"""stdlib logging inside spans: every LogRecord gets trace_id, span_id, version_set_id, tenant_id.

Installed by configure() as a LogRecord factory (chained to any factory already there), so it works
with every handler and formatter, e.g. ``"%(levelname)s %(trace_id)s %(message)s"``. Outside a
span the ids are empty strings, so such format strings never fail.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from opentelemetry import trace

from . import _runtime, contract
from ._context import current_context, resolve_versions
from ._faults import internal_error

__all__ = ["BlamesetLogHandler", "emit_event", "install_log_context", "setup_logging"]

_installed = False


def install_log_context() -> None:
    """Install the LogRecord factory once per process (later calls do nothing)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        with contextlib.suppress(Exception):  # a log line must never fail because of us
            _stamp(record)
        return record

    logging.setLogRecordFactory(factory)


def _stamp(record: logging.LogRecord) -> None:
    span_ctx = trace.get_current_span().get_span_context()
    if span_ctx.is_valid:
        trace_id, span_id = f"{span_ctx.trace_id:032x}", f"{span_ctx.span_id:016x}"
    else:
        trace_id = span_id = ""
    ctx = current_context()
    state = _runtime.STATE
    versions = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
    setattr(record, contract.LOG_TRACE_ID, trace_id)
    setattr(record, contract.LOG_SPAN_ID, span_id)
    setattr(record, contract.LOG_VERSION_SET_ID, (versions or state.version_set).id)
    setattr(record, contract.LOG_TENANT_ID, ctx.tenant or "")


# --- stdlib logging -> OTel log records ----------------------------------------------------------

_RESERVED = (
    frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
    | {"message", "asctime", "taskName"}
    | {
        contract.LOG_TRACE_ID,
        contract.LOG_SPAN_ID,
        contract.LOG_VERSION_SET_ID,
        contract.LOG_TENANT_ID,
    }
)
# Loggers whose records never go out: our own, and the transports the exporters use, whose debug
# lines about each export would otherwise become records to export (a feedback loop).
_QUIET_LOGGERS = ("opentelemetry", "blameset", "urllib3", "requests", "grpc", "httpx", "httpcore")


def _quiet(record: logging.LogRecord) -> bool:
    name = record.name
    if any(name == q or name.startswith(q + ".") for q in _QUIET_LOGGERS):
        return True
    thread = record.threadName or ""
    return thread.startswith(("blameset-", "OtelBatch"))  # logged by an export worker


def _severity(levelno: int) -> int:
    """stdlib level -> OTel severity number (DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21)."""
    if levelno <= logging.NOTSET:
        return 0
    for base, number in (
        (logging.CRITICAL, 21),
        (logging.ERROR, 17),
        (logging.WARNING, 13),
        (logging.INFO, 9),
        (logging.DEBUG, 5),
    ):
        if levelno >= base:
            return min(number + (levelno - base), number + 3)
    return max(1, levelno)


_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class BlamesetLogHandler(logging.Handler):
    """Sends stdlib log records out as OTel log records through the configured pipeline
    (OTLP with spans, or the sibling ``*.logs.jsonl`` in JSONL mode), each carrying trace_id,
    span_id, the version set id and the tenant. Does nothing while telemetry is off."""

    def emit(self, record: logging.LogRecord) -> None:
        state = _runtime.STATE
        provider = state.logger_provider
        if provider is None or _quiet(record):
            return
        try:
            from opentelemetry._logs import SeverityNumber

            attributes = _log_attributes(state, record)
            provider.get_logger(record.name).emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=state.clock(),
                context=_record_context(record),
                severity_number=SeverityNumber(_severity(record.levelno)),
                severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
                body=record.getMessage(),
                attributes=attributes,
            )
        except Exception:
            internal_error("log record")


def _record_context(record: logging.LogRecord) -> Any:
    """The trace context the record was made in: the ids our LogRecord factory stamped on it
    (right even when a QueueHandler hands the record to another thread), else the current one."""
    from opentelemetry.context import get_current

    trace_id = getattr(record, contract.LOG_TRACE_ID, "")
    span_id = getattr(record, contract.LOG_SPAN_ID, "")
    if not trace_id or not span_id:
        return get_current()
    current = trace.get_current_span().get_span_context()
    if current.is_valid and f"{current.trace_id:032x}" == trace_id:
        return get_current()
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(span)


def _log_attributes(state: _runtime.State, record: logging.LogRecord) -> dict[str, Any]:
    ctx = current_context()
    versions = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
    attributes: dict[str, Any] = {
        "code.file.path": record.pathname,
        "code.function.name": record.funcName,
        "code.line.number": record.lineno,
        # Stamped at creation by our factory, so right on whichever thread handles the record.
        contract.VERSION_SET_ID: getattr(record, contract.LOG_VERSION_SET_ID, None)
        or (versions or state.version_set).id,
    }
    if versions is not None:
        attributes[contract.VERSION_SET] = versions.canonical
    tenant = getattr(record, contract.LOG_TENANT_ID, None) or ctx.tenant
    if tenant:
        attributes[contract.TENANT_ID] = tenant
    if ctx.action_id:
        attributes[contract.ACTION_ID] = ctx.action_id
    attributes.update(  # the `extra={...}` fields the user added
        (key, value)
        for key, value in vars(record).items()
        if key not in _RESERVED and isinstance(value, str | int | float | bool)
    )
    if record.exc_info and record.exc_info[1] is not None:
        import traceback

        exc = record.exc_info[1]
        redact = state.redactor
        attributes["exception.type"] = type(exc).__name__
        attributes["exception.message"] = redact(str(exc))
        attributes["exception.stacktrace"] = redact("".join(traceback.format_exception(exc)))
    return attributes


def setup_logging(
    level: int | str = logging.NOTSET, logger: logging.Logger | str | None = None
) -> BlamesetLogHandler:
    """One line to send a logger's records (the root logger's by default) out with the spans.

    Adds a handler and changes no logger's level: what the logger lets through (WARNING and up
    for an unconfigured root logger) goes out, filtered further by ``level``. Safe to call
    again: the handler is added once per logger.
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    for handler in target.handlers:
        if isinstance(handler, BlamesetLogHandler):
            handler.setLevel(level)
            return handler
    handler = BlamesetLogHandler(level)
    target.addHandler(handler)
    own = logging.getLogger("blameset")
    if target is logging.getLogger() and not target.handlers[:-1] and not own.handlers:
        # Our handler does not export blameset's own warnings (the spill folder's name, say),
        # and with it on the root logger Python's last-resort stderr output no longer applies:
        # give them a stderr handler of their own so they are still seen.
        stderr = logging.StreamHandler()
        stderr.setLevel(logging.WARNING)
        own.addHandler(stderr)
    return handler


def emit_event(name: str, attributes: dict[str, Any], body: str | None = None) -> None:
    """Send one structured event (an audit record, say) as an OTel log record with
    ``event_name``; it carries the current trace, version set id and tenant."""
    state = _runtime.STATE
    provider = state.logger_provider
    if provider is None:
        return
    try:
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.context import get_current

        ctx = current_context()
        versions = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
        attrs = {contract.VERSION_SET_ID: (versions or state.version_set).id, **attributes}
        if ctx.tenant:
            attrs.setdefault(contract.TENANT_ID, ctx.tenant)
        now = state.clock()
        provider.get_logger("blameset").emit(
            timestamp=now,
            observed_timestamp=now,
            context=get_current(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=body,
            attributes=attrs,
            event_name=name,
        )
    except Exception:
        internal_error("event")
