"""The spill folder: where spans and log records go when the collector cannot take them.

Records are appended as flat JSONL (the format ``blameset ingest`` reads) by a background thread,
so a caller never waits on the disk either. The folder is capped in bytes: past the cap records are
counted and dropped, with one warning when the cap is reached and a summary at shutdown. Nothing
is dropped without being counted and said.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = ["DEFAULT_MAX_BYTES", "SpillWriter", "default_spill_dir"]

logger = logging.getLogger("blameset")

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_MAX_PENDING = 200_000  # records waiting for the spill thread; past this they are counted, dropped


def default_spill_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``BLAMESET_SPILL_DIR``, else ``$XDG_CACHE_HOME/blameset/spill`` (``~/.cache/...``)."""
    env = os.environ if environ is None else environ
    if env.get("BLAMESET_SPILL_DIR"):
        return Path(env["BLAMESET_SPILL_DIR"])
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "blameset" / "spill"


class SpillWriter:
    """Appends records to ``<folder>/<signal>-<host>-<pid>-<start>.jsonl`` on its own thread.

    After :meth:`close`, late records (a span ending after shutdown) are written at once on the
    caller's thread: rare, and better than losing them. Across ``fork()`` the child gets its own
    thread, queue and file names.
    """

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.spilled: dict[str, int] = {}
        self.dropped: dict[tuple[str, str], int] = {}  # (signal, reason) -> count
        self._announced = False
        self._reset()
        _after_fork.add(self)

    def _reset(self) -> None:
        self._pending: deque[tuple[str, Any, Callable[[Any], dict[str, Any]]]] = deque()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._files: dict[str, IO[str]] = {}
        self._stamp = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._used: int | None = None  # bytes in the folder, read when first needed
        self._busy = False
        self._closed = False
        self._warned: set[str] = set()

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
            logger.warning(
                "blameset: %d %s could not be exported (%s); spilling them to %s "
                "(set BLAMESET_SPILL_DIR to move it; `blameset ingest` reads it)",
                len(items),
                signal,
                reason,
                self.folder,
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
        """Write what is queued (waiting at most ``timeout_s``), then say what was dropped.

        A disk too slow to take the rest in time: what is still queued is counted as dropped,
        and a batch still being written is reported as unconfirmed, never silently lost.
        """
        self.flush(timeout_s)
        with self._cond:
            self._closed = True
            for signal, _, _ in self._pending:
                self._count_dropped(signal, "spill disk too slow at shutdown", 1)
            self._pending.clear()
            busy = self._busy
            self._cond.notify_all()
        if busy:
            logger.warning(
                "blameset: the spill folder %s is still being written at shutdown; the last "
                "batch may be incomplete",
                self.folder,
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

    def _write(self, batch: list[tuple[str, Any, Callable[[Any], dict[str, Any]]]]) -> None:
        with self._write_lock:
            try:
                self._write_locked(batch)
            except Exception:
                logger.exception("blameset: writing to the spill folder %s failed", self.folder)
                with self._cond:
                    for signal, _, _ in batch:
                        self._count_dropped(signal, "spill write failed", 1)

    def _write_locked(self, batch: list[tuple[str, Any, Callable[[Any], dict[str, Any]]]]) -> None:
        if self._used is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._used = sum(p.stat().st_size for p in self.folder.glob("*.jsonl"))
        lines: dict[str, list[str]] = {}
        for signal, item, to_dict in batch:
            line = json.dumps(to_dict(item), separators=(",", ":"), default=str) + "\n"
            size = len(line.encode("utf-8"))
            if self._used + size > self.max_bytes:
                with self._cond:
                    self._count_dropped(signal, f"spill folder full, cap {self.max_bytes} bytes", 1)
                continue
            self._used += size
            lines.setdefault(signal, []).append(line)
        for signal, chunk in lines.items():
            handle = self._files.get(signal)
            if handle is None:
                path = self.folder / f"{signal}-{self._stamp}.jsonl"
                handle = self._files[signal] = path.open("a", encoding="utf-8")
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

    def _say_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


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
