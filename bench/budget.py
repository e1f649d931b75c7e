"""Reserve + settle latency of a Budget per store: memory, SQLite (a file in a temp folder), Redis
on loopback (BLAMESET_TEST_REDIS_URL, or a redis-server started here on a free port).

Targets on the 2-core development machine: memory < 5 us, SQLite < 1 ms, Redis < 0.5 ms per
reserve + settle. Medians of rounds, in one process. Run by hand: .venv/bin/python bench/budget.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from blameset.instrument.budget import Budget

TARGETS_US = {"memory": 5.0, "sqlite": 1000.0, "redis": 500.0}


@contextmanager
def redis_url() -> Iterator[str | None]:
    if os.environ.get("BLAMESET_TEST_REDIS_URL"):
        yield os.environ["BLAMESET_TEST_REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def measure(budget: Budget, n: int) -> float:
    """Microseconds per reserve + settle, over n of them."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        budget.reserve(tenant="acme", estimate_usd=0.001).settle(0.0008)
    return (time.perf_counter_ns() - t0) / n / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; medians of {rounds} rounds")
    print("reference: the same store with the lease heartbeat off (renew_holds=False),")
    print("its rounds interleaved with the measured ones")
    limits = {"tenant_per_minute_usd": None, "tenant_per_day_usd": None}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, redis_url() as url:
        specs: dict[str, Callable[[], str]] = {
            "memory": lambda: "memory",
            "sqlite": lambda: f"sqlite:{Path(tmp) / 'budget.db'}",
        }
        if url:
            specs["redis"] = lambda: url
        for name, spec in specs.items():
            on = Budget(spec(), **limits)  # type: ignore[arg-type]
            off = Budget(spec(), renew_holds=False, **limits)  # type: ignore[arg-type]
            n = {"memory": 20_000, "sqlite": 500, "redis": 1000}[name]
            n = n if not args.quick else n // 5
            measure(on, n), measure(off, n)  # warm-up (tables, scripts, connections)
            samples_on, samples_off = [], []
            for _ in range(rounds):
                samples_on.append(measure(on, n))
                samples_off.append(measure(off, n))
            results[name] = statistics.median(samples_on)
            ratio = results[name] / statistics.median(samples_off)
            spread = (max(samples_on) - min(samples_on)) / results[name] * 100
            print(
                f"  {name:<7} {results[name]:10.1f} us per reserve+settle (spread {spread:.0f}%)"
                f"   heartbeat on / off: {ratio:.2f}x"
            )
    print()
    for name, us in results.items():
        target = TARGETS_US[name]
        verdict = "PASS" if us <= target else "MISS"
        print(f"{name:<7} {us:10.1f} us   target < {target:g} us   {verdict}")
    if "redis" not in results:
        print("redis   (no redis-server here: not measured)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
