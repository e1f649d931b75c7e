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

from instrument import _runtime, contract
from instrument.context import current_context, resolve_versions

__all__ = ["install_log_context"]

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
