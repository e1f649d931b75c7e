"""Telemetry's own faults: logged once per place, with the traceback, and then the call goes on.

The one home of "a telemetry fault must never reach the user's code" (logfire's
``handle_internal_errors``): callers catch, call :func:`internal_error`, and go on. A leaf module,
so every part of instrument reports its faults here instead of importing a sibling to do it.
"""

from __future__ import annotations

import logging

__all__ = ["internal_error"]

logger = logging.getLogger("blameset")

_reported: set[str] = set()


def internal_error(where: str) -> None:
    """Log the exception being handled as a telemetry fault in ``where`` and carry on.

    Call it from an ``except`` block. The first fault of a place is logged with its traceback;
    later ones only at debug level, so a fault on every call does not flood the service's logs.
    """
    if where in _reported:
        logger.debug("blameset: telemetry fault in %s", where, exc_info=True)
        return
    _reported.add(where)
    logger.exception("blameset: telemetry fault in %s; the call goes on without it", where)
