"""Simulated time for asyncio: a loop whose timers fire in order without waiting, so two days of
the demo's traffic take seconds, and the same clock for the spans, budgets and stores.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

__all__ = ["SimulatedLoop", "now"]

T = TypeVar("T")


class _SimulatedSelector(selectors.BaseSelector):
    """A real selector (the loop's self-pipe, thread hand-offs) whose waits for timers take no
    real time: with nothing ready, ``select(timeout)`` moves the simulated clock to the timer."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0  # simulated seconds since the start
        self.threads = 0  # executor calls in flight (the idempotency store runs in threads)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.threads:
            # Work in a thread takes no simulated time: wait for it for real before any timer
            # fires, so what runs next never depends on how fast a thread was.
            return self._real.select(0 if timeout == 0 else None)
        if timeout is None:  # no timer and nothing ready: only the outside world can wake us
            return self._real.select(None)
        # Only executor threads write to the loop here (their count is zero now, and the loop
        # read their wake-up before their result): nothing to poll, jump to the next timer.
        self.now += timeout
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class SimulatedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on simulated time: ``loop.time()`` is simulated seconds, timers fire in
    order without waiting, and calls run in threads (``asyncio.to_thread``) take no simulated time.

    ``clock_ns()`` (for ``instrument.configure(clock=...)``) and ``clock_s()`` (budgets,
    idempotency) read the same clock as epoch time from ``start``."""

    def __init__(self, start: datetime) -> None:
        self._sim = _SimulatedSelector()
        super().__init__(self._sim)
        self._start_ns = int(start.timestamp()) * 1_000_000_000

    def time(self) -> float:
        return self._sim.now

    def clock_ns(self) -> int:
        return self._start_ns + round(self._sim.now * 1e9)

    def clock_s(self) -> float:
        return self._start_ns / 1e9 + self._sim.now

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._sim.threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self._sim.threads -= 1


def now() -> float:
    """Simulated seconds since the start of the running loop's clock."""
    return asyncio.get_running_loop().time()
