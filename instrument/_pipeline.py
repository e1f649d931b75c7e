"""Batching processors that export in the background and spill whatever did not go out.

The SDK's batch processors drop a batch that fails to export, drop spans when their queue is full,
and can hold ``shutdown()`` for several export timeouts. Ours keep the same shape (a bounded queue,
a worker thread exporting batches) but hand every record that did not reach the collector to the
spill folder: a failed or timed-out export, a full queue, whatever is left when shutdown's
deadline passes. ``shutdown()`` returns within the export timeout plus a small margin.

A batch still in flight when shutdown gives up on it is spilled too; should it arrive after all,
the collector and the spill folder both hold it, and ingest keeps one copy (same span id).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from ._records import log_to_dict, span_to_dict
from ._spill import SpillWriter

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["SpillingBatcher", "SpillingSpanProcessor", "spilling_log_processor"]

logger = logging.getLogger("blameset")

T = TypeVar("T")

SHUTDOWN_MARGIN_S = 0.5


class SpillingBatcher(Generic[T]):
    """A bounded queue drained by one worker thread into ``export``; failures go to ``spill``."""

    def __init__(
        self,
        *,
        name: str,
        export: Callable[[list[T]], bool],
        spill: Callable[[list[T], str], None],
        export_timeout_s: float,
        max_queue: int = 2048,
        batch_size: int = 512,
        delay_s: float = 1.0,
    ) -> None:
        self._name = name
        self._export = export
        self._spill = spill
        self.export_timeout_s = export_timeout_s
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._delay_s = delay_s
        self._start()
        _forks.add(self)

    def _start(self) -> None:
        self._queue: deque[T] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight: list[T] | None = None
        self._stopping = False
        self._abandoned = False  # shutdown took the in-flight batch: the worker must not spill it
        self._flush_requested = 0
        self._worker = threading.Thread(
            target=self._run, name=f"blameset-{self._name}", daemon=True
        )
        self._worker.start()

    def _after_fork(self) -> None:
        # The worker thread did not survive fork(); what the parent queued is the parent's to
        # export, so the child starts empty (else both would send it).
        if not self._stopping:
            self._start()

    # -- the caller's side: never blocks on the network ---------------------------------------
    def add(self, item: T) -> None:
        overflow = False
        with self._lock:
            if self._stopping or len(self._queue) >= self._max_queue:
                overflow = True
            else:
                self._queue.append(item)
                full = len(self._queue) >= self._batch_size
        if overflow:
            self._spill([item], "export queue full" if not self._stopping else "after shutdown")
        elif full:
            self._wake.set()

    def force_flush(self, timeout_s: float) -> bool:
        """Export (or spill) everything queued now; True when done within the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._flush_requested += 1
        self._wake.set()
        with self._idle:
            while self._queue or self._in_flight is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def shutdown(self, deadline: float | None = None) -> None:
        """Stop, trying the queue once more; what is still unsent at the deadline (monotonic;
        default: now + export timeout + margin) is spilled."""
        if deadline is None:
            deadline = time.monotonic() + self.export_timeout_s + SHUTDOWN_MARGIN_S
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandoned = True
            leftover = list(self._queue)
            self._queue.clear()
            if self._in_flight is not None:
                leftover.extend(self._in_flight)
                self._in_flight = None
            self._idle.notify_all()
        if leftover:
            self._spill(leftover, "collector did not answer before shutdown's deadline")

    # -- the worker ----------------------------------------------------------------------------
    def _gave_up(self) -> bool:
        return self._abandoned  # read through a call: another thread sets it

    def _run(self) -> None:
        # Woken by a full batch, the worker exports full batches only and leaves the rest for
        # the next one: draining every last span each time exported ~9 spans an export (1,173
        # exports for 10,000 spans in bench/overhead.py), each a wake-up and a fight for the GIL
        # with the service. The timer exports what was queued when it fired (under steady load
        # the queue never empties, and draining it would be the old way again); a flush and
        # shutdown export everything.
        while True:
            timed_out = not self._wake.wait(self._delay_s)
            self._wake.clear()
            with self._lock:
                due = len(self._queue) if timed_out else 0
            while True:
                with self._lock:
                    drain = due > 0 or self._stopping or self._flush_requested > 0
                    if (
                        self._abandoned
                        or not self._queue
                        or (not drain and len(self._queue) < self._batch_size)
                    ):
                        if not self._queue:
                            self._flush_requested = 0  # every flush asked so far is done
                        self._idle.notify_all()
                        stopping = self._stopping
                        break
                    batch = [
                        self._queue.popleft()
                        for _ in range(min(self._batch_size, len(self._queue)))
                    ]
                    due -= len(batch)
                    self._in_flight = batch
                ok = False
                try:
                    ok = self._export(batch)
                except Exception:
                    logger.debug("blameset: exporter raised", exc_info=True)
                with self._lock:
                    if self._gave_up():  # shutdown spilled this batch already
                        return
                    self._in_flight = None
                    if ok:
                        continue
                self._spill(batch, "export failed")
            if stopping:
                return


class SpillingSpanProcessor(SpanProcessor):
    """A span processor exporting through ``exporter`` in batches, spilling what fails (as
    ``to_dict`` makes them: configure() passes the scrubbing one, so the spill folder holds no
    secret either)."""

    def __init__(
        self,
        exporter: SpanExporter,
        spill: SpillWriter,
        *,
        export_timeout_s: float,
        to_dict: Callable[[ReadableSpan], dict[str, Any]] = span_to_dict,
    ) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self._exporter = exporter
        self._spill_writer = spill
        self._batcher = _batcher(
            "spans",
            exporter,
            SpanExportResult.SUCCESS,
            spill,
            to_dict,
            export_timeout_s,
            "BSP",
        )

    # no on_start: the SDK's no-op, which blameset's processor chain does not call

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._batcher.add(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return _flush(self._batcher, self._spill_writer, timeout_millis)

    def shutdown(self) -> None:
        _close(self._batcher, self._exporter, "span")


def _batcher(
    signal: str,
    exporter: Any,
    success: Any,
    spill: SpillWriter,
    to_dict: Callable[[Any], dict[str, Any]],
    export_timeout_s: float,
    env_prefix: str,
) -> SpillingBatcher[Any]:
    """A batcher exporting ``signal`` through ``exporter`` and spilling what fails."""
    max_queue, batch_size, delay_s = batch_settings(env_prefix)

    def export(batch: list[Any]) -> bool:
        return bool(exporter.export(batch) == success)

    def to_spill(batch: list[Any], reason: str) -> None:
        spill.spill(signal, batch, to_dict, reason)

    return SpillingBatcher(
        name=signal,
        export=export,
        spill=to_spill,
        export_timeout_s=export_timeout_s,
        max_queue=max_queue,
        batch_size=batch_size,
        delay_s=delay_s,
    )


def _flush(batcher: SpillingBatcher[Any], spill: SpillWriter, timeout_millis: int) -> bool:
    """Export (or spill) what is queued and get the spill on disk, within one timeout."""
    deadline = time.monotonic() + timeout_millis / 1000
    done = batcher.force_flush(timeout_millis / 1000)
    return spill.flush(max(0.0, deadline - time.monotonic())) and done


def _close(batcher: SpillingBatcher[Any], exporter: Any, what: str) -> None:
    """Last export attempt under the shared shutdown deadline, then close the exporter."""
    batcher.shutdown(shutdown_deadline.get(None))
    try:
        exporter.shutdown()
    except Exception:
        logger.exception("blameset: %s exporter failed to shut down", what)


def spilling_log_processor(
    exporter: Any,
    spill: SpillWriter,
    *,
    export_timeout_s: float,
    to_dict: Callable[[Any], dict[str, Any]] = log_to_dict,
) -> LogRecordProcessor:
    """The same for log records (built lazily: the SDK's logs module loads only when used).
    ``to_dict`` makes the spill folder's records (configure() passes the scrubbing one)."""
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    class SpillingLogProcessor(LogRecordProcessor):
        def __init__(self) -> None:
            self._batcher = _batcher(
                "logs",
                exporter,
                LogRecordExportResult.SUCCESS,
                spill,
                to_dict,
                export_timeout_s,
                "BLRP",
            )

        def on_emit(self, log_record: Any) -> None:
            self._batcher.add(log_record)

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return _flush(self._batcher, spill, timeout_millis)

        def shutdown(self) -> None:
            _close(self._batcher, exporter, "log")

    return SpillingLogProcessor()


class _ForkRegistry:
    """Restarts live batchers' workers in a forked child."""

    def __init__(self) -> None:
        import os
        import weakref

        self._batchers: weakref.WeakSet[SpillingBatcher[Any]] = weakref.WeakSet()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._in_child)

    def add(self, batcher: SpillingBatcher[Any]) -> None:
        self._batchers.add(batcher)

    def _in_child(self) -> None:
        for batcher in list(self._batchers):
            batcher._after_fork()


_forks = _ForkRegistry()

shutdown_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("blameset_deadline")
"""Set by State.shutdown: one deadline (monotonic) shared by the span and log pipelines."""


def batch_settings(prefix: str) -> tuple[int, int, float]:
    """Queue size, batch size and delay (s) from the SDK's own variables, ``OTEL_BSP_*`` for
    spans and ``OTEL_BLRP_*`` for logs; defaults 2048, 512 and 1 s."""
    import os

    def number(name: str, default: float) -> float:
        raw = os.environ.get(f"OTEL_{prefix}_{name}")
        try:
            return float(raw) if raw else default
        except ValueError:
            logger.warning(
                "blameset: OTEL_%s_%s=%r is not a number; using %s", prefix, name, raw, default
            )
            return default

    max_queue = max(1, int(number("MAX_QUEUE_SIZE", 2048)))
    batch = max(1, min(max_queue, int(number("MAX_EXPORT_BATCH_SIZE", 512))))
    return max_queue, batch, number("SCHEDULE_DELAY", 1000) / 1000


def exporter_timeout_s(signal: str, explicit: float | None) -> float:
    """The export timeout in seconds, as the OTLP exporters resolve it (they read seconds)."""
    import os

    if explicit is not None:
        return float(explicit)
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = os.environ.get(name)
        if raw:
            try:
                return float(raw)
            except ValueError:
                break
    return 10.0
