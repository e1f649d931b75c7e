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

__all__ = ["SpillWriter", "default_spill_dir", "log_to_dict"]

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


def log_to_dict(record: Any) -> dict[str, Any]:
    """One OTel SDK log record (``ReadableLogRecord``/``ReadWriteLogRecord``) as a flat dict."""
    from instrument.export import _attrs

    log = record.log_record
    resource = getattr(record, "resource", None)
    severity = log.severity_number
    return {
        "time_unix_nano": log.timestamp,
        "observed_time_unix_nano": log.observed_timestamp,
        "severity_text": log.severity_text,
        "severity_number": severity.value if severity is not None else None,
        "body": log.body,
        "trace_id": f"{log.trace_id:032x}" if log.trace_id else None,
        "span_id": f"{log.span_id:016x}" if log.span_id else None,
        "event_name": getattr(log, "event_name", None) or None,
        "resource": _attrs(resource.attributes) if resource is not None else {},
        "attributes": _attrs(log.attributes),
    }


class SpillWriter:
    """Appends records to ``<folder>/<signal>-<host>-<pid>-<start>.jsonl`` on its own thread."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._pending: deque[tuple[str, Any, Callable[[Any], dict[str, Any]]]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._files: dict[str, IO[str]] = {}
        self._stamp = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._used: int | None = None  # bytes in the folder, read when first needed
        self._busy = False
        self._closed = False
        self.spilled: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self._announced = False
        self._cap_warned = False

    # -- callers' side (never blocks on the disk) ----------------------------------------------
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
        with self._cond:
            room = _MAX_PENDING - len(self._pending)
            if room < len(items) or self._closed:
                kept = max(0, room) if not self._closed else 0
                self._count_dropped(signal, len(items) - kept)
                items = items[:kept]
            self._pending.extend((signal, item, to_dict) for item in items)
            self._start_thread()
            self._cond.notify()
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

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close the files, and say what was spilled or dropped."""
        self.flush(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            for handle in self._files.values():
                handle.close()
            self._files.clear()
        if any(self.dropped.values()):
            logger.warning(
                "blameset: spill folder %s full (cap %d bytes): dropped %s",
                self.folder,
                self.max_bytes,
                ", ".join(f"{n} {signal}" for signal, n in self.dropped.items() if n),
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
                if self._closed and not self._pending:
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._busy = True
            try:
                self._write(batch)
            except Exception:
                logger.exception("blameset: writing to the spill folder %s failed", self.folder)
                with self._cond:
                    for signal, _, _ in batch:
                        self._count_dropped(signal, 1)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, batch: list[tuple[str, Any, Callable[[Any], dict[str, Any]]]]) -> None:
        if self._used is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._used = sum(p.stat().st_size for p in self.folder.glob("*.jsonl"))
        lines: dict[str, list[str]] = {}
        for signal, item, to_dict in batch:
            line = json.dumps(to_dict(item), separators=(",", ":"), default=str) + "\n"
            size = len(line.encode("utf-8"))
            if self._used + size > self.max_bytes:
                with self._cond:
                    self._count_dropped(signal, 1)
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

    def _count_dropped(self, signal: str, n: int) -> None:
        # Called with self._cond held.
        if n <= 0:
            return
        self.dropped[signal] = self.dropped.get(signal, 0) + n
        if not self._cap_warned:
            self._cap_warned = True
            logger.warning(
                "blameset: spill folder %s is full (cap %d bytes) or its queue is: dropping "
                "%s from now on, counted; the count is logged at shutdown",
                self.folder,
                self.max_bytes,
                signal,
            )
