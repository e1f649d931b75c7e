"""A worker process for the idempotency tests: N threads call one idempotent function.

usage: python idem_worker.py STORE KEY OUT_FILE THREADS LEASE_S MODE
MODE "work": the effect appends "<tag>" to OUT_FILE then simulates 0.3 s of work.
MODE "hang": the effect appends "started", then blocks until killed.
"""

from __future__ import annotations

import sys
import threading
import time

from blameset.instrument.idempotency import idempotent


def main() -> None:
    store, key, out, threads, lease_s, mode = sys.argv[1:7]

    @idempotent(key=lambda: key, store=store, lease_s=float(lease_s), wait_s=30, poll_s=0.02)
    def effect() -> str:
        with open(out, "a") as handle:
            handle.write(("started" if mode == "hang" else "ran") + "\n")
            handle.flush()
        if mode == "hang":
            threading.Event().wait()  # until SIGKILL
        time.sleep(0.3)  # the work takes a while, so duplicates overlap it
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
