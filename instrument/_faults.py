"""Telemetry's own faults: logged once per place, with the traceback, and then the call goes on.

The one home of "a telemetry fault must never reach the user's code" (logfire's
``handle_internal_errors``). A leaf module: every part of instrument reports its faults here
instead of importing a sibling to do it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["handle_internal_errors", "internal_error"]

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


@contextmanager
def handle_internal_errors(where: str) -> Iterator[None]:
    """A block whose exceptions are telemetry faults: reported by :func:`internal_error`, never
    raised. For code off the per-call path (a ``try``/``except`` is cheaper on it)."""
    try:
        yield
    except Exception:
        internal_error(where)
