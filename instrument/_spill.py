"""The spill folder: where spans and log records go when the collector cannot take them, and
where they wait until it can.

Records are appended as flat JSONL (the format ``blameset ingest`` reads) by a background thread,
so a caller never waits on the disk either. The folder is capped in bytes: past the cap records are
counted and dropped, with one warning when the cap is reached and a summary at shutdown. Nothing
is dropped without being counted and said.

Store and forward: once :meth:`SpillWriter.forward` names a signal's exporter, a background thread
(``_forward``) re-sends the spilled records of that destination when the collector answers again,
oldest file first, and deletes a file only after the collector acknowledged all of it. A file is
written under an exclusive ``flock`` for as long as its writer has it open, so a forwarder (of this
process or another one sharing the folder) takes only files nobody writes and nobody else sends.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._spillfile import destination_key, release_in_child

if TYPE_CHECKING:
    from ._forward import Forwarder

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SpillWriter",
    "default_spill_dir",
]

logger = logging.getLogger("blameset")

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_MAX_PENDING = 200_000  # records waiting for the spill thread; past this they are counted, dropped
_RECOUNT_EVERY_S = 1.0  # how often a full folder is measured again (another process may free it)


def default_spill_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``BLAMESET_SPILL_DIR``, else ``$XDG_CACHE_HOME/blameset/spill`` (``~/.cache/...``)."""
    env = os.environ if environ is None else environ
    if env.get("BLAMESET_SPILL_DIR"):
        return Path(env["BLAMESET_SPILL_DIR"])
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "blameset" / "spill"


def folder_bytes(folder: Path) -> int:
    """Bytes the spill files in ``folder`` hold (all processes' files: the cap is the folder's)."""
    total = 0
    for path in folder.glob("*.jsonl"):
        try:
            total += path.stat().st_size
        except OSError:
            continue  # sent and deleted while we looked
    return total


def _open_locked(folder: Path, name: str) -> IO[str]:
    """A new spill file, open for appending and ``flock``-ed before it gets its visible name, so
    no forwarder ever sees it unlocked while it is written. On a filesystem without locks the
    file is written all the same (forwarders cannot lock it either, so none sends it)."""
    hidden = folder / f".{name}.new"
    handle = hidden.open("a", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            logger.warning(
                "blameset: cannot lock spill files in %s (%s); they are kept for `blameset "
                "ingest` but not re-sent",
                folder,
                error,
            )
        os.rename(hidden, folder / name)
    except BaseException:
        handle.close()
        raise
    return handle


def _with_scope(signal: str, item: Any, record: dict[str, Any]) -> dict[str, Any]:
    """What a resend needs beyond the flat format: the instrumentation scope, and a span's links
    and trace state (``blameset ingest`` ignores these keys)."""
    scope = getattr(item, "instrumentation_scope", None)
    if scope is not None and getattr(scope, "name", None):
        record["scope"] = {"name": scope.name, "version": scope.version}
    if signal != "spans":
        return record
    links = getattr(item, "links", None)
    if links:
        from ._records import plain_attributes

        record["links"] = [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": plain_attributes(link.attributes),
            }
            for link in links
        ]
    context = getattr(item, "context", None)
    state = getattr(context, "trace_state", None)
    if state:
        record["trace_state"] = state.to_header()
    return record


class SpillWriter:
    """Appends records to ``<folder>/<signal>-<host>-<pid>-<start>-<n>[@<key>].jsonl`` on its own
    thread (``key`` names the destination, once :meth:`forward` told it).

    After :meth:`close`, late records (a span ending after shutdown) are written at once on the
    caller's thread: rare, and better than losing them. Across ``fork()`` the child gets its own
    thread, queue and file names.
    """

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.spilled: dict[str, int] = {}
        self.dropped: dict[tuple[str, str], int] = {}  # (signal, reason) -> count
        self._keys: dict[str, str] = {}  # signal -> destination key, set by forward()
        self._forwarder: Forwarder | None = None
        self._announced = False
        self._files: dict[str, IO[str]] = {}
        self._reset()
        _after_fork.add(self)

    def _reset(self) -> None:
        for handle in getattr(self, "_files", {}).values():
            release_in_child(handle.fileno())  # the parent's file and lock stay the parent's
        self._pending: deque[tuple[str, Any, Callable[[Any], dict[str, Any]]]] = deque()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._files = {}
        self._stamp = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._used: int | None = None  # bytes in the folder, read when first needed
        self._counted_at = 0.0
        self._seq = 0  # files this process started (a sealed file is followed by a new one)
        self._busy = False
        self._closed = False
        self._warned: set[str] = set()
        if self._forwarder is not None:
            self._forwarder.after_fork()

    # -- store and forward ---------------------------------------------------------------------
    def forward(self, signal: str, exporter: Any, destination: str, **tuning: float) -> None:
        """Re-send this signal's spilled records through ``exporter`` when the collector answers
        again (``destination`` says where ``exporter`` sends: only files spilled for the same
        destination are sent there). Starts the forwarder thread; calling it again for a signal
        replaces its exporter. ``tuning``: the forwarder's backoff and batch settings."""
        from ._forward import Forwarder

        key = destination_key(destination)
        with self._write_lock:
            if self._keys.get(signal) != key:
                self._seal_locked(signal)  # what was written for another destination stays so
                self._keys[signal] = key
            if self._forwarder is None:
                self._forwarder = Forwarder(self, **tuning)
            forwarder = self._forwarder
        forwarder.route(signal, exporter, key)

    def key(self, signal: str) -> str | None:
        return self._keys.get(signal)

    def seal(self, signal: str) -> bool:
        """Close this process's open file of ``signal`` (releasing its lock) so it can be sent;
        the next record starts a new file. True when there was one."""
        with self._write_lock:
            return self._seal_locked(signal)

    def _seal_locked(self, signal: str) -> bool:
        handle = self._files.pop(signal, None)
        if handle is None:
            return False
        handle.close()
        return True

    def freed(self, n_bytes: int) -> None:
        """A forwarder deleted a file of ``n_bytes``: the cap has that much room again."""
        with self._write_lock:
            if self._used is not None:
                self._used = max(0, self._used - n_bytes)

    @property
    def forwarded(self) -> dict[str, int]:
        """Records re-sent to the collector and acknowledged, by signal."""
        return dict(self._forwarder.sent) if self._forwarder is not None else {}

    # -- callers' side (never blocks on the disk while open) ------------------------------------
    def spill(
        self,
        signal: str,
        records: Iterable[Any],
        to_dict: Callable[[Any], dict[str, Any]],
        reason: str,
    ) -> None:
        """Queue records of one signal ("spans", "logs") for the spill file."""
        items = list(records)
        if not items:
            return
        late = False
        with self._cond:
            if self._closed:
                late = True
            else:
                room = _MAX_PENDING - len(self._pending)
                if room < len(items):
                    self._count_dropped(signal, "spill queue full", len(items) - max(0, room))
                    items = items[: max(0, room)]
                self._pending.extend((signal, item, to_dict) for item in items)
                self._start_thread()
                self._cond.notify()
        if late:
            self._write([(signal, item, to_dict) for item in items])
            self._say_once(
                "late",
                "blameset: %d %s ended after telemetry shut down; written to %s",
                len(items),
                signal,
                self.folder,
            )
            return
        if items and not self._announced:
            self._announced = True
            forwarding = self._forwarder is not None and signal in self._keys
            logger.warning(
                "blameset: %s could not be exported (%s); spilling them to %s (counted: the "
                "totals are logged at shutdown; %s; set BLAMESET_SPILL_DIR to move it; "
                "`blameset ingest` reads it)",
                signal,
                reason,
                self.folder,
                "re-sent when the collector answers again" if forwarding else "not re-sent",
            )

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued is on disk (bounded). True when it is."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most ``timeout_s``), stop re-sending, then say what
        was spilled, re-sent and dropped.

        A disk too slow to take the rest in time: what is still queued is counted as dropped,
        and a batch still being written is reported as unconfirmed, never silently lost.
        """
        started = time.monotonic()
        self.flush(timeout_s)
        with self._cond:
            self._closed = True
            for signal, _, _ in self._pending:
                self._count_dropped(signal, "spill disk too slow at shutdown", 1)
            self._pending.clear()
            busy = self._busy
            self._cond.notify_all()
        if self._forwarder is not None:
            # A batch in flight is not waited for long: should it be acknowledged after the
            # process is gone, the next process sends it again (counted once by span id).
            self._forwarder.stop(min(0.5, max(0.1, timeout_s - (time.monotonic() - started))))
        if busy:
            logger.warning(
                "blameset: the spill folder %s is still being written at shutdown; the last "
                "batch may be incomplete",
                self.folder,
            )
        self._summary()

    def _summary(self) -> None:
        forwarded = self.forwarded
        if self.spilled or forwarded:
            logger.warning(
                "blameset: spilled to %s: %s; re-sent to the collector: %s",
                self.folder,
                _counts(self.spilled),
                _counts(forwarded),
            )
        if self.dropped:
            logger.warning(
                "blameset: telemetry dropped: %s",
                ", ".join(f"{n} {sig} ({why})" for (sig, why), n in self.dropped.items()),
            )

    # -- the writer thread ---------------------------------------------------------------------
    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="blameset-spill", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    self._close_files()
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._busy = True
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self._forwarder is not None:
                self._forwarder.spilled()

    def _write(self, batch: list[tuple[str, Any, Callable[[Any], dict[str, Any]]]]) -> None:
        with self._write_lock:
            try:
                self._write_locked(batch)
            except Exception:
                logger.exception("blameset: writing to the spill folder %s failed", self.folder)
                with self._cond:
                    for signal, _, _ in batch:
                        self._count_dropped(signal, "spill write failed", 1)

    def _room(self, size: int) -> bool:
        """Whether ``size`` more bytes fit under the cap (measuring the folder again, at most
        once a second, when they seem not to: a forwarder elsewhere may have freed it)."""
        assert self._used is not None
        if self._used + size <= self.max_bytes:
            return True
        now = time.monotonic()
        if now - self._counted_at >= _RECOUNT_EVERY_S:
            self._counted_at = now
            self._used = folder_bytes(self.folder)
        return self._used + size <= self.max_bytes

    def _write_locked(self, batch: list[tuple[str, Any, Callable[[Any], dict[str, Any]]]]) -> None:
        if self._used is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._used = folder_bytes(self.folder)
            self._counted_at = time.monotonic()
        lines: dict[str, list[str]] = {}
        for signal, item, to_dict in batch:
            record = _with_scope(signal, item, to_dict(item))
            line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
            size = len(line.encode("utf-8"))
            if not self._room(size):
                with self._cond:
                    self._count_dropped(signal, f"spill folder full, cap {self.max_bytes} bytes", 1)
                continue
            self._used += size
            lines.setdefault(signal, []).append(line)
        for signal, chunk in lines.items():
            handle = self._files.get(signal)
            if handle is None:
                key = self._keys.get(signal)
                self._seq += 1
                name = f"{signal}-{self._stamp}-{self._seq:04d}" + (f"@{key}" if key else "")
                handle = self._files[signal] = _open_locked(self.folder, name + ".jsonl")
            handle.write("".join(chunk))
            handle.flush()
            self.spilled[signal] = self.spilled.get(signal, 0) + len(chunk)

    def _close_files(self) -> None:
        with self._write_lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()

    def _count_dropped(self, signal: str, reason: str, n: int) -> None:
        # Called with self._cond held; the warning goes out once per reason.
        if n <= 0:
            return
        self.dropped[(signal, reason)] = self.dropped.get((signal, reason), 0) + n
        self._say_once(
            reason,
            "blameset: dropping %s: %s (counted; the count is logged at shutdown)",
            signal,
            reason,
        )

    def count_dropped(self, signal: str, reason: str, n: int) -> None:
        """Count records lost on the way back to the collector (an unreadable spill line)."""
        with self._cond:
            self._count_dropped(signal, reason, n)

    def _say_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


def _counts(by_signal: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {signal}" for signal, n in sorted(by_signal.items())) or "none"


class _ForkRegistry:
    """Re-initialises live writers in a forked child (their threads did not survive the fork)."""

    def __init__(self) -> None:
        import weakref

        self._writers: weakref.WeakSet[SpillWriter] = weakref.WeakSet()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._in_child)

    def add(self, writer: SpillWriter) -> None:
        self._writers.add(writer)

    def _in_child(self) -> None:
        for writer in list(self._writers):
            writer._reset()  # the parent's queue stays the parent's to write


_after_fork = _ForkRegistry()
