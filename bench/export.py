"""What an OTLP outage costs the service: call latency and shutdown time while the collector is
down, hangs or fails, against a healthy one; and the redactor on a long unbroken payload.

The timings the tests used to assert (a call's p99 under 10 ms during an outage; shutdown within
the export timeout + 0.5 s margin + 2 s for the spill folder; 60 KB redacted in under 0.5 s)
are printed here as numbers and ratios against their reference, since a loaded machine made
them flaky as assertions.

Run by hand, not in CI:  .venv/bin/python bench/export.py [--calls 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests.otlp_receiver: the tests' receivers

from blameset import instrument
from blameset.instrument import VersionSet, traced
from blameset.instrument._redact import Redactor
from tests.otlp_receiver import HttpReceiver, closed_port

TIMEOUT_S = 1.0
SHUTDOWN_BOUND_S = TIMEOUT_S + 0.5 + 2.0  # export timeout + margin + the spill folder's 2 s
P99_BOUND_S = 0.010


@traced("op")
def op(i: int) -> int:
    return i


def outage(case: str, calls: int) -> tuple[float, float]:
    """(p99 of a call, shutdown seconds) with the collector in state ``case``."""
    modes = {"healthy": "ok", "hanging": "hang", "failing": "fail"}
    receiver = HttpReceiver(mode=modes[case]) if case in modes else None
    endpoint = receiver.endpoint if receiver else f"http://127.0.0.1:{closed_port()}"
    with tempfile.TemporaryDirectory() as spill:
        try:
            instrument.configure(
                service="bench",
                version_set=VersionSet(code="bench"),
                exporter="otlp",
                endpoint=endpoint,
                timeout=TIMEOUT_S,
                spill_dir=spill,
            )
            for i in range(20):  # warm-up: first calls pay one-time imports and caches
                op(i)
            durations = []
            for i in range(calls):
                t0 = time.perf_counter()
                op(i)
                durations.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            instrument.shutdown()
            shutdown_s = time.perf_counter() - t0
        finally:
            if receiver:
                receiver.close()
    durations.sort()
    return durations[max(0, int(len(durations) * 0.99) - 1)], shutdown_s


def redactor_s() -> float:
    """Seconds to redact 60 KB without spaces (an attachment): linear, not quadratic."""
    blob = ("ab.c-" * 12_000) + "@x"
    redact = Redactor()
    redact("warm up the compiled patterns")
    t0 = time.perf_counter()
    redact(blob)
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per case")
    args = parser.parse_args(argv)
    print("note: this machine may be noisy; compare ratios, not absolute times.")
    healthy_p99, healthy_shutdown = outage("healthy", args.calls)
    print(f"  {'healthy':<12} p99 {healthy_p99 * 1e3:7.3f} ms   shutdown {healthy_shutdown:5.2f} s")
    for case in ("down", "hanging", "failing"):
        p99, shutdown_s = outage(case, args.calls)
        print(
            f"  {case:<12} p99 {p99 * 1e3:7.3f} ms ({p99 / healthy_p99:4.2f}x healthy, "
            f"{p99 / P99_BOUND_S:4.2f}x the 10 ms bound)   shutdown {shutdown_s:5.2f} s "
            f"({shutdown_s / SHUTDOWN_BOUND_S:4.2f}x the {SHUTDOWN_BOUND_S:.1f} s bound)"
        )
    took = redactor_s()
    print(f"  redactor, 60 KB unbroken: {took * 1e3:.1f} ms ({took / 0.5:.3f}x the 0.5 s bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
