"""A worker process for the budget test: THREADS threads each try ATTEMPTS reservations of
$0.01 against a $1.00/day tenant budget; prints how many it settled.

usage: python budget_worker.py STORE THREADS ATTEMPTS NOW
"""

from __future__ import annotations

import sys
import threading

from blameset.instrument.budget import Budget
from blameset.instrument.errors import BudgetExhausted


def main() -> None:
    store, threads, attempts, now = sys.argv[1:5]
    budget = Budget(
        store, tenant_per_minute_usd=None, tenant_per_day_usd=1.00, clock=lambda: float(now)
    )
    settled = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal settled
        for _ in range(int(attempts)):
            try:
                with budget.reserve(tenant="acme", estimate_usd=0.01, core=True) as hold:
                    hold.settle(actual_usd=0.01)
            except BudgetExhausted:
                continue
            with lock:
                settled += 1

    workers = [threading.Thread(target=work) for _ in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(settled)


if __name__ == "__main__":
    main()
