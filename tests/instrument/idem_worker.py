"""A worker process for the idempotency tests: N threads call one idempotent function.

usage: python idem_worker.py STORE KEY OUT_FILE THREADS LEASE_S MODE [OVERLAP]
MODE "work": the effect appends "ran" to OUT_FILE, then holds its claim until OVERLAP other
callers (in all processes) were told the key is running, so the duplicates provably overlap it.
Each caller told so appends its name once to OUT_FILE.waiting, which the test reads too, and (with
OVERLAP) writes it to the FIFO OUT_FILE.fifo, which the holder reads: it blocks on the callers'
own messages, it does not poll for them.
MODE "hang": the effect appends "started" and prints it, then blocks until killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from pathlib import Path
from typing import Any

from blameset.instrument import idempotent
from blameset.instrument.stores import Claim, open_store

OVERLAP_DEADLINE_S = 60.0


class WatchedStore:
    """The real store, noting each caller (process and thread) told "running": in a file, and on
    the FIFO the holder listens to when there is one."""

    def __init__(self, spec: str, waiting: Path, fifo: Path | None) -> None:
        self._inner = open_store(spec)
        self._waiting = waiting
        self._fifo = fifo
        self._noted: set[int] = set()

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        claim = self._inner.begin(key, owner, lease_s, now)
        thread = threading.get_ident()
        if claim.status == "running" and thread not in self._noted:
            self._noted.add(thread)
            name = f"{os.getpid()}-{thread}\n"
            with self._waiting.open("a") as handle:  # one short O_APPEND write: whole lines
                handle.write(name)
            if self._fifo is not None:
                # Blocks until the holder listens; a line under PIPE_BUF is written whole.
                fd = os.open(self._fifo, os.O_WRONLY)
                try:
                    os.write(fd, name.encode())
                finally:
                    os.close(fd)
        return claim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def listen(fifo: Path) -> int:
    """Open the FIFO for the holder. Read-write, so it never reads end-of-file between two
    callers' writes, and opening does not wait for a writer."""
    return os.open(fifo, os.O_RDWR)


def until_waiting(fd: int, overlap: int) -> None:
    """Block until ``overlap`` distinct callers said they were told "running" (bounded, so a
    broken store fails the run instead of hanging it)."""
    seen: set[str] = set()
    buffer = b""
    while len(seen) < overlap:
        ready, _, _ = select.select([fd], [], [], OVERLAP_DEADLINE_S)
        if not ready:
            raise SystemExit(f"only {len(seen)} of {overlap} callers waited")
        buffer += os.read(fd, 4096)
        *lines, rest = buffer.split(b"\n")
        buffer = rest
        seen.update(lines)


def main() -> None:
    store_spec, key, out, threads, lease_s, mode = sys.argv[1:7]
    overlap = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    waiting = Path(out + ".waiting")
    fifo = Path(out + ".fifo") if overlap else None
    if fifo is not None:
        with contextlib.suppress(FileExistsError):  # another worker process made it first
            os.mkfifo(fifo)
    store = WatchedStore(store_spec, waiting, fifo)

    @idempotent(key=lambda: key, store=store, lease_s=float(lease_s), wait_s=30, poll_s=0.02)
    def effect() -> str:
        with open(out, "a") as handle:
            handle.write(("started" if mode == "hang" else "ran") + "\n")
            handle.flush()
        if mode == "hang":
            print("started", flush=True)  # the test reads this line, then kills us
            threading.Event().wait()  # until SIGKILL
        if fifo is not None:
            # Hold the claim until the duplicates say they are waiting on it (observed, not timed).
            fd = listen(fifo)
            try:
                until_waiting(fd, overlap)
            finally:
                os.close(fd)
        return "result"

    results: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(effect())
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=call) for _ in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise SystemExit(f"errors: {errors!r}")
    assert results == ["result"] * int(threads), results


if __name__ == "__main__":
    main()
