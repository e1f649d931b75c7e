"""Worker processes for the cross-process budget tests.

python budget_worker.py STORE THREADS ATTEMPTS NOW
    THREADS threads each try ATTEMPTS reservations of $0.01 against a $1.00/day tenant
    budget at the fixed time NOW; prints how many it settled.

python budget_worker.py lease STORE THREADS ATTEMPTS TENANT TTL RENEW
    THREADS threads each try ATTEMPTS reservations of $0.10 against a $1.00/day budget of
    TENANT with hold_ttl_s=TTL, on the real clock; an admitted one works 1.5 x TTL before
    settling, a refused one tries again a fifth of TTL later. RENEW is 1 (the heartbeat on)
    or 0. Prints JSON: holds admitted, late settles, overspent windows seen.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable

from blameset.instrument.budget import Budget
from blameset.instrument.errors import BudgetExhausted


def run_threads(threads: int, work: Callable[[], int]) -> int:
    """Run ``work`` on THREADS threads at once; the sum of what they return."""
    counts: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        n = work()
        with lock:
            counts.append(n)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts)


def fixed_time(store: str, threads: int, attempts: int, now: float) -> None:
    budget = Budget(store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, clock=lambda: now)

    def work() -> int:
        settled = 0
        for _ in range(attempts):
            try:
                with budget.reserve(tenant="acme", estimate_usd=0.01, core=True) as hold:
                    hold.settle(actual_usd=0.01)
            except BudgetExhausted:
                continue
            settled += 1
        return settled

    print(run_threads(threads, work))


def lease(store: str, threads: int, attempts: int, tenant: str, ttl: float, renew: bool) -> None:
    budget = Budget(
        store,
        tenant_per_minute_usd=None,
        tenant_per_day_usd=1.00,
        hold_ttl_s=ttl,
        renew_holds=renew,
    )

    def work() -> int:
        admitted = 0
        for _ in range(attempts):
            try:
                hold = budget.reserve(tenant=tenant, estimate_usd=0.10, core=True)
            except BudgetExhausted:
                time.sleep(ttl / 5)  # the workload's pace: a refused caller comes back later
                continue
            with hold:
                time.sleep(1.5 * ttl)  # the work: half as long again as the hold's lifetime
                hold.settle(actual_usd=0.10)
            admitted += 1
        return admitted

    admitted = run_threads(threads, work)
    report = {"admitted": admitted, "late": budget.late_settles, "overspends": budget.overspends}
    print(json.dumps(report))


def main() -> None:
    if sys.argv[1] == "lease":
        store, threads, attempts, tenant, ttl, renew = sys.argv[2:8]
        lease(store, int(threads), int(attempts), tenant, float(ttl), renew == "1")
    else:
        store, threads, attempts, now = sys.argv[1:5]
        fixed_time(store, int(threads), int(attempts), float(now))


if __name__ == "__main__":
    main()
