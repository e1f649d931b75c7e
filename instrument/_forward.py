"""Store and forward: re-send what the spill folder holds once the collector answers again.

One background thread per spill writer (``blameset-resend``; never a caller's thread) goes through
the folder's files for each signal it was given an exporter for, oldest first: at start-up (what an
earlier process left), when a live export succeeds again (the exporter tells it), and with
exponential backoff with jitter after a failed attempt, else every ``idle_scan_s``. The first batch
after a failure is a small probe, so an attempt during an outage costs little.

Each record reaches the collector at most once after the collector acknowledged it:

- a file is sent only under an exclusive, non-blocking ``flock``; its writer holds that lock for as
  long as it writes the file (the writer creates it locked), so a file being written, or being
  sent by another process sharing the folder, is skipped;
- after each acknowledged batch the byte offset reached is recorded beside the file
  (``.<name>.sent``, written by rename), so a process that stops half-way (or is killed) leaves the
  rest for the next one, which starts at that offset;
- the file (then its offset file) is deleted only once every record in it was acknowledged.

What cannot be known: a request the collector took but never answered (a timeout) is sent again,
as the OTLP exporters themselves do when they retry; span and log ids let the collector or
``blameset ingest`` keep one copy.

Files are sent only to the destination they were spilled for (a key in the file name): a folder
shared by services that send to different collectors does not mix them. Files of another
destination, or written before this version, are left to ``blameset ingest``, and said so once.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._spillfile import release_in_child, spill_file_key

if TYPE_CHECKING:
    from ._spill import SpillWriter

__all__ = ["Forwarder"]

logger = logging.getLogger("blameset")

_INT64 = (-(2**63), 2**63 - 1)


@dataclass(slots=True)
class _Route:
    exporter: Any
    key: str
    success: Any
    decode: Callable[[dict[str, Any], _Cache], Any]


class _Outcome:
    SENT = "sent"  # everything there was went out (or there was nothing)
    FAILED = "failed"  # the collector did not take a batch: back off
    SKIPPED = "skipped"  # someone else has the file (writing or sending it)


class Forwarder:
    """Re-sends a :class:`SpillWriter`'s folder through the exporters it is given."""

    def __init__(
        self,
        writer: SpillWriter,
        *,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        idle_scan_s: float = 30.0,
        batch_size: float = 512,
        probe_size: float = 16,
    ) -> None:
        self._writer = writer
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._idle_scan_s = idle_scan_s
        self._batch_size = max(1, int(batch_size))
        self._probe_size = max(1, min(int(probe_size), self._batch_size))
        self._routes: dict[str, _Route] = {}
        self.sent: dict[str, int] = {}
        self.attempts = 0  # batches handed to an exporter
        self.failures = 0  # passes that ended at a batch the collector did not take
        self.passes = 0  # looks through the folder
        self._told: set[str] = set()
        self._start()

    def _start(self) -> None:
        self._cond = threading.Condition()
        self._stopped = False
        self._answered = False  # a live export succeeded: the collector is back
        # The last pass stopped at a batch the collector did not take: only then is a live
        # export's success news (else every export, 20 per 10,000 spans, woke a pass through
        # the folder: ~0.2 us of the export thread's time per span, holding the GIL).
        self._failing = False
        self._new = False  # something was spilled since the last look
        self._batch = self._batch_size
        self._thread: threading.Thread | None = None
        self._fd: int | None = None  # the file being sent, locked

    def after_fork(self) -> None:
        """In a forked child: the thread did not survive; a file the parent was sending stays
        the parent's (closing our copy of its descriptor leaves the parent's lock alone)."""
        if self._fd is not None:
            release_in_child(self._fd)
        stopped = self._stopped
        self._start()
        if self._routes and not stopped:
            self._ensure_thread()

    # -- told by others ------------------------------------------------------------------------
    def route(self, signal: str, exporter: Any, key: str) -> None:
        """Send ``signal``'s files spilled for ``key`` through ``exporter`` from now on."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        if signal == "spans":
            success: Any = SpanExportResult.SUCCESS
            decode: Callable[[dict[str, Any], _Cache], Any] = _span
        else:
            from opentelemetry.sdk._logs.export import LogRecordExportResult

            success, decode = LogRecordExportResult.SUCCESS, _log
        listen = getattr(exporter, "on_success", None)
        if callable(listen):
            listen(self.answered)
        with self._cond:
            self._routes[signal] = _Route(exporter, key, success, decode)
            self._new = True
            self._cond.notify_all()
        self._ensure_thread()

    def answered(self) -> None:
        """The collector took a live export: whatever waits in the folder can go now."""
        with self._cond:
            if self._failing and not self._answered:
                self._answered = True
                self._cond.notify_all()

    def spilled(self) -> None:
        """The writer put records in the folder (the collector just failed them: not sent at
        once, but after the shortest backoff)."""
        with self._cond:
            self._new = True
            self._cond.notify_all()

    def stop(self, timeout_s: float) -> None:
        """Stop after the batch in flight (waiting at most ``timeout_s`` for it)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- the thread ----------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="blameset-resend", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        delay, idle, backoff = 0.0, False, self._min_backoff_s  # at once: an earlier spill
        while self._wait(delay, idle):
            try:
                outcome = self._pass()
            except Exception:  # a bug here must not end re-sending for good
                logger.exception("blameset: re-sending the spill folder failed")
                outcome = _Outcome.FAILED
            self.passes += 1
            with self._cond:
                self._failing = outcome == _Outcome.FAILED
            if outcome == _Outcome.FAILED:
                self.failures += 1
                self._batch = self._probe_size
                delay, idle = backoff * random.uniform(0.8, 1.2), False
                backoff = min(backoff * 2, self._max_backoff_s)
            else:
                delay, idle, backoff = self._idle_scan_s, True, self._min_backoff_s

    def _wait(self, delay: float, idle: bool) -> bool:
        """Wait ``delay`` s, less when the collector answers a live export or (idle) records
        are spilled. False once stopped."""
        deadline = time.monotonic() + delay
        with self._cond:
            while not self._stopped and not self._answered:
                if idle and self._new:
                    idle = False
                    deadline = min(deadline, time.monotonic() + self._min_backoff_s)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._answered = self._new = False
            return not self._stopped

    def _pass(self) -> str:
        """One go through every signal's files, the writer's own open file last (sealed first
        so it can be sent). FAILED when a signal stopped at a batch its collector did not take
        (the other signals still had their turn: their collector may be another one)."""
        with self._cond:
            routes = list(self._routes.items())
        if self.passes == 0:
            self._sweep()
        failed = False
        for signal, route in routes:
            failed = self._drain(signal, route) == _Outcome.FAILED or failed
        return _Outcome.FAILED if failed else _Outcome.SENT

    def _drain(self, signal: str, route: _Route) -> str:
        sealed = False
        while True:
            for path in self._candidates(signal, route.key):
                if self._send_file(path, signal, route) == _Outcome.FAILED:
                    return _Outcome.FAILED
            if sealed or not self._writer.seal(signal):
                return _Outcome.SENT
            sealed = True

    def _sweep(self) -> None:
        """Remove what a crash can leave beside the files: offset files whose spill file is
        gone, and hidden files a writer died creating (over a minute old)."""
        folder = self._writer.folder
        try:
            hidden = [p for p in folder.glob(".*") if p.is_file()]
        except OSError:
            return
        for path in hidden:
            name, _, tail = path.name[1:].partition(".jsonl.")
            try:
                orphan = tail.startswith("sent") and not (folder / f"{name}.jsonl").exists()
                stale = tail == "new" and time.time() - path.stat().st_mtime > 60
                if orphan or stale:
                    path.unlink()
            except OSError:
                continue  # someone else's to clean up

    def _candidates(self, signal: str, key: str) -> list[Path]:
        """This destination's files of ``signal``, oldest first."""
        folder = self._writer.folder
        dated: list[tuple[int, str, Path]] = []
        others = 0
        try:
            paths = list(folder.glob(f"{signal}-*.jsonl"))
        except OSError:
            return []
        for path in paths:
            if spill_file_key(path.name) != key:
                others += 1
                continue
            try:
                dated.append((path.stat().st_mtime_ns, path.name, path))
            except OSError:
                continue  # sent by someone else while we looked
        if others and signal not in self._told:
            self._told.add(signal)
            logger.info(
                "blameset: %d %s files in %s were spilled for another destination (or by an "
                "older version) and are not re-sent here; `blameset ingest` reads them",
                others,
                signal,
                folder,
            )
        return [path for _, _, path in sorted(dated)]

    def _send_file(self, path: Path, signal: str, route: _Route) -> str:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return _Outcome.SKIPPED
        except OSError as error:
            self._say_once(f"open {path}", "blameset: cannot re-send %s: %s", path, error)
            return _Outcome.SKIPPED
        self._fd = fd
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    self._say_once(
                        "nolock", "blameset: cannot lock %s (%s); not re-sending it", path, error
                    )
                return _Outcome.SKIPPED  # its writer has it open, or another sender
            if not _still_there(path, fd):  # sent and deleted after we opened it
                return _Outcome.SKIPPED
            return self._send_locked(fd, path, signal, route)
        finally:
            self._fd = None
            os.close(fd)

    def _send_locked(self, fd: int, path: Path, signal: str, route: _Route) -> str:
        marker = path.with_name(f".{path.name}.sent")
        offset = _read_offset(marker)
        size = os.fstat(fd).st_size
        cache = _Cache()
        with os.fdopen(fd, "rb", closefd=False) as stream:  # ``fd`` (and its lock) stays open
            stream.seek(offset)
            while True:
                if self._stopped:
                    return _Outcome.FAILED
                lines, end = _read_lines(stream, self._batch)
                if not lines:
                    break
                if not self._export(lines, signal, route, cache, path):
                    return _Outcome.FAILED
                offset = end
                _write_offset(marker, offset)
        # the room first, then the file: a writer that sees the folder empty must find the room
        # too (the other order let a spill between the two count as "folder full": a flaky test)
        self._writer.freed(size)
        for done in (path, marker):
            done.unlink(missing_ok=True)
        return _Outcome.SENT

    def _export(
        self, lines: list[bytes], signal: str, route: _Route, cache: _Cache, path: Path
    ) -> bool:
        """Decode and send one batch; True when the collector acknowledged it. Lines that do
        not decode are counted as dropped (a crashed writer's last, cut line)."""
        records: list[Any] = []
        bad = 0
        for line in lines:
            try:
                records.append(route.decode(json.loads(line), cache))
            except Exception:
                bad += 1
        if bad:
            self._writer.count_dropped(signal, f"unreadable line in spill file {path.name}", bad)
        if not records:
            return True
        self.attempts += 1
        try:
            ok = bool(route.exporter.export(records) == route.success)
        except Exception:
            logger.debug("blameset: re-sending spilled %s raised", signal, exc_info=True)
            ok = False
        if ok:
            self.sent[signal] = self.sent.get(signal, 0) + len(records)
            self._batch = self._batch_size
        return ok

    def _say_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._told:
            self._told.add(key)
            logger.warning(message, *args)


# -- the offset beside a file being sent -------------------------------------------------------


def _still_there(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_offset(marker: Path) -> int:
    try:
        return max(0, int(marker.read_text(encoding="ascii").strip() or 0))
    except (FileNotFoundError, ValueError):
        return 0


def _write_offset(marker: Path, offset: int) -> None:
    partial = marker.with_name(f"{marker.name}.{os.getpid()}")
    partial.write_text(str(offset), encoding="ascii")
    os.replace(partial, marker)


def _read_lines(stream: Any, n: int) -> tuple[list[bytes], int]:
    """Up to ``n`` non-empty lines and the offset after them."""
    lines: list[bytes] = []
    while len(lines) < n:
        line = stream.readline()
        if not line:
            break
        if line.strip():
            lines.append(line)
    return lines, stream.tell()


# -- flat records back to the SDK's objects ----------------------------------------------------


class _Cache:
    """One Resource and one InstrumentationScope object per distinct value in a file, so the
    exporter groups the batch as the live pipeline would."""

    def __init__(self) -> None:
        self._resources: dict[str, Any] = {}
        self._scopes: dict[tuple[str, str | None], Any] = {}

    def resource(self, attributes: Any) -> Any:
        from opentelemetry.sdk.resources import Resource

        key = json.dumps(attributes or {}, sort_keys=True, default=str)
        found = self._resources.get(key)
        if found is None:
            found = self._resources[key] = Resource(_attributes(attributes))
        return found

    def scope(self, scope: Any) -> Any:
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        scope = scope if isinstance(scope, dict) else {}
        key = (str(scope.get("name") or "blameset"), scope.get("version"))
        found = self._scopes.get(key)
        if found is None:
            found = self._scopes[key] = InstrumentationScope(key[0], key[1])
        return found


def _value(value: Any) -> Any:
    """An attribute value the OTLP encoder takes: what JSON cannot say as one is sent as text."""
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, list) and all(isinstance(v, bool | int | float | str) for v in value):
        return [_value(v) for v in value]
    return json.dumps(value, default=str)


def _attributes(attributes: Any) -> dict[str, Any]:
    if not isinstance(attributes, dict):
        return {}
    return {str(k): _value(v) for k, v in attributes.items() if v is not None}


def _hex(value: Any, required: bool) -> int:
    number = int(value, 16) if isinstance(value, str) and value else 0
    if required and not number:
        raise ValueError("a span without its id")
    return number


def _span(doc: dict[str, Any], cache: _Cache) -> Any:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    trace_id = _hex(doc.get("trace_id"), True)
    state = TraceState.from_header([doc["trace_state"]]) if doc.get("trace_state") else None
    context = SpanContext(
        trace_id,
        _hex(doc.get("span_id"), True),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=state,
    )
    parent_id = _hex(doc.get("parent_span_id"), False)
    parent = SpanContext(trace_id, parent_id, is_remote=False) if parent_id else None
    code = {"ok": StatusCode.OK, "error": StatusCode.ERROR}.get(doc.get("status") or "")
    status = Status(
        code or StatusCode.UNSET, doc.get("status_message") if code is StatusCode.ERROR else None
    )
    return ReadableSpan(
        name=str(doc.get("name") or ""),
        context=context,
        parent=parent,
        resource=cache.resource(doc.get("resource")),
        attributes=_attributes(doc.get("attributes")),
        events=[
            Event(
                str(e.get("name") or ""), _attributes(e.get("attributes")), e.get("time_unix_nano")
            )
            for e in doc.get("events") or []
        ],
        links=[
            Link(
                SpanContext(
                    _hex(link.get("trace_id"), True), _hex(link.get("span_id"), True), True
                ),
                _attributes(link.get("attributes")),
            )
            for link in doc.get("links") or []
        ],
        kind=SpanKind[str(doc.get("kind") or "internal").upper()],
        status=status,
        start_time=doc.get("start_time_unix_nano"),
        end_time=doc.get("end_time_unix_nano"),
        instrumentation_scope=cache.scope(doc.get("scope")),
    )


def _log(doc: dict[str, Any], cache: _Cache) -> Any:
    from opentelemetry import trace
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import ReadableLogRecord

    trace_id = _hex(doc.get("trace_id"), False)
    span_id = _hex(doc.get("span_id"), False)
    context = Context()  # not the forwarder thread's own
    if trace_id and span_id:
        span = trace.NonRecordingSpan(
            trace.SpanContext(trace_id, span_id, False, trace.TraceFlags(trace.TraceFlags.SAMPLED))
        )
        context = trace.set_span_in_context(span, context)
    severity = doc.get("severity_number")
    body = doc.get("body")
    record = LogRecord(
        timestamp=_int_or_none(doc.get("time_unix_nano")),
        observed_timestamp=_int_or_none(doc.get("observed_time_unix_nano")),
        context=context,
        severity_text=doc.get("severity_text"),
        severity_number=SeverityNumber(severity) if severity else None,
        body=_attributes(body)
        if isinstance(body, dict)
        else None
        if body is None
        else _value(body),
        attributes=_attributes(doc.get("attributes")),
        event_name=doc.get("event_name"),
    )
    return ReadableLogRecord(
        record,
        resource=cache.resource(doc.get("resource")),
        instrumentation_scope=cache.scope(doc.get("scope")),
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None
