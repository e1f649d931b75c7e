"""The telemetry configuration in force: one immutable State, swapped whole by configure().

Decorated calls read the module global ``STATE`` once per call; a State never changes after it is
built, so a call sees one consistent configuration even while another thread reconfigures.
Building a State from configure()'s options is ``_config``'s job; this module only holds it, so
everything that reads the configuration (spans, logs, audit, queues) imports nothing heavier.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._redact import Redactor
from ._version_set import VersionSet
from .cost import Pricer

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from ._spill import SpillWriter

__all__ = ["STATE", "Clock", "State", "current_state", "force_flush", "install", "shutdown"]

logger = logging.getLogger("blameset")

Clock = Callable[[], int]
"""Returns the time as integer nanoseconds since the Unix epoch (``time.time_ns``)."""

_generation = itertools.count(1)


@dataclass(frozen=True, slots=True, eq=False)
class State:
    """One configuration. ``off`` means decorated calls go straight to the function."""

    off: bool
    version_set: VersionSet
    service: str | None = None
    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    logger_provider: LoggerProvider | None = None
    spill: SpillWriter | None = None
    clock: Clock = time.time_ns
    pricer: Pricer = field(default_factory=Pricer)
    redactor: Redactor = field(default_factory=Redactor)
    capture_content: bool = False
    export_timeout_s: float = 10.0
    generation: int = field(default_factory=lambda: next(_generation))

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Close this configuration's pipelines (never raises).

        Spans and logs shut down side by side under one deadline, the export timeout plus a
        small margin: each makes a last attempt to export, and what is still unsent by then is
        spilled. Then the spill folder gets up to two more seconds to take it.
        """
        import contextvars

        from ._pipeline import SHUTDOWN_MARGIN_S, shutdown_deadline

        budget_s = (
            timeout_millis / 1000 if timeout_millis is not None else self.export_timeout_s
        ) + SHUTDOWN_MARGIN_S
        deadline = time.monotonic() + budget_s

        def close(provider: Any) -> None:
            shutdown_deadline.set(deadline)
            try:
                provider.shutdown()
            except Exception:
                logger.exception("blameset: shutting down a telemetry pipeline failed")

        providers = [p for p in (self.provider, self.logger_provider) if p is not None]
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(close, p), daemon=True)
            for p in providers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        if self.spill is not None:  # last: both signals may spill while shutting down
            self.spill.close(2.0)


STATE: State = State(off=True, version_set=VersionSet())
"""The configuration in force. Unconfigured means off: nothing is recorded before configure()."""

_lock = threading.Lock()
_atexit_registered = False


def current_state() -> State:
    """The configuration in force (what a harness saves, to :func:`install` it back later)."""
    return STATE


def install(state: State) -> State:
    """Make ``state`` the one in force; return the previous one, still open (tests restore it)."""
    global STATE, _atexit_registered
    with _lock:
        previous, STATE = STATE, state
        if not _atexit_registered and state.provider is not None:
            atexit.register(shutdown)
            _atexit_registered = True
    return previous


def install_off() -> State:
    """Turn telemetry off, keeping the version set and service (logs still carry them); return
    the previous State, still open, for the caller to shut down or put back."""
    return install(State(off=True, version_set=STATE.version_set, service=STATE.service))


def shutdown(timeout_millis: int | None = None) -> None:
    """Export what is pending and turn telemetry off (also runs at interpreter exit).

    Returns within the export timeout (or ``timeout_millis``) plus a small margin; what could not
    go out by then is in the spill folder."""
    install_off().shutdown(timeout_millis)


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Export what is pending now, keeping the pipeline open. True when everything went out."""
    ok = True
    for provider in (STATE.provider, STATE.logger_provider):
        if provider is None:
            continue
        try:
            ok = bool(provider.force_flush(timeout_millis)) and ok
        except Exception:
            logger.exception("blameset: flushing telemetry failed")
            ok = False
    return ok
