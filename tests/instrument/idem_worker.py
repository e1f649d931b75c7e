"""A worker process for the idempotency tests: N threads call one idempotent function.

usage: python idem_worker.py STORE KEY OUT_FILE THREADS LEASE_S MODE [OVERLAP]
MODE "work": the effect appends "ran" to OUT_FILE, then holds its claim until OVERLAP other
callers (in all processes) were told the key is running, so the duplicates provably overlap it.
Each caller told so appends its name once to OUT_FILE.waiting, which the test reads too.
MODE "hang": the effect appends "started", then blocks until killed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from blameset.instrument import idempotent
from blameset.instrument.stores import Claim, open_store

OVERLAP_DEADLINE_S = 60.0


class WatchedStore:
    """The real store, noting in a file each caller (process and thread) told "running"."""

    def __init__(self, spec: str, waiting: Path) -> None:
        self._inner = open_store(spec)
        self._waiting = waiting
        self._noted: set[int] = set()

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        claim = self._inner.begin(key, owner, lease_s, now)
        thread = threading.get_ident()
        if claim.status == "running" and thread not in self._noted:
            self._noted.add(thread)
            with self._waiting.open("a") as handle:  # one short O_APPEND write: whole lines
                handle.write(f"{os.getpid()}-{thread}\n")
        return claim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def waiting_callers(path: Path) -> int:
    """How many callers were told the key is running so far."""
    try:
        return len(set(path.read_text().split()))
    except FileNotFoundError:
        return 0


def main() -> None:
    store_spec, key, out, threads, lease_s, mode = sys.argv[1:7]
    overlap = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    waiting = Path(out + ".waiting")
    store = WatchedStore(store_spec, waiting)

    @idempotent(key=lambda: key, store=store, lease_s=float(lease_s), wait_s=30, poll_s=0.02)
    def effect() -> str:
        with open(out, "a") as handle:
            handle.write(("started" if mode == "hang" else "ran") + "\n")
            handle.flush()
        if mode == "hang":
            threading.Event().wait()  # until SIGKILL
        # Hold the claim until the duplicates are seen waiting on it (observed, not timed).
        deadline = time.monotonic() + OVERLAP_DEADLINE_S
        while waiting_callers(waiting) < overlap:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {waiting_callers(waiting)} of {overlap} callers waited")
            threading.Event().wait(0.005)
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
