"""The export worker's batching: full batches when woken by a full queue, the rest on the
timer, a flush or shutdown (one export, one OTLP request, per batch rather than per few spans)."""

from __future__ import annotations

import threading

from blameset.instrument._pipeline import SpillingBatcher


class Recorder:
    """An export callable that records batch sizes; its first call blocks until released."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.in_first = threading.Event()
        self.release = threading.Event()
        self.exported = threading.Condition()

    def __call__(self, batch: list[int]) -> bool:
        if not self.sizes:
            self.in_first.set()
            assert self.release.wait(30), "the test never released the first export"
        with self.exported:
            self.sizes.append(len(batch))
            self.exported.notify_all()
        return True

    def wait_for(self, n: int) -> None:
        with self.exported:
            assert self.exported.wait_for(lambda: len(self.sizes) >= n, 30), self.sizes


def batcher(export: Recorder, *, delay_s: float = 600.0) -> SpillingBatcher[int]:
    spilled: list[int] = []
    return SpillingBatcher(
        name="test",
        export=export,
        spill=lambda items, reason: spilled.extend(items),
        export_timeout_s=5.0,
        max_queue=10_000,
        batch_size=100,
        delay_s=delay_s,
    )


def test_a_woken_worker_exports_full_batches_and_leaves_the_remainder_queued() -> None:
    """Spans queued while a batch is in flight wait for a full batch, not one export each."""
    export = Recorder()
    b = batcher(export)
    try:
        for i in range(100):  # a full batch wakes the worker
            b.add(i)
        assert export.in_first.wait(30)
        for i in range(30):  # queued while the first export is in flight
            b.add(i)
        export.release.set()
        export.wait_for(1)  # the worker is past its first export
        for i in range(70):  # the queue reaches a full batch again
            b.add(i)
        export.wait_for(2)
        assert b.force_flush(30)
        assert export.sizes == [100, 100]
    finally:
        export.release.set()
        b.shutdown()


def test_flush_and_timer_export_a_partial_batch() -> None:
    """What never fills a batch still leaves: on a flush, and on the timer with no flush."""
    export = Recorder()
    export.release.set()
    b = batcher(export)
    try:
        for i in range(7):
            b.add(i)
        assert b.force_flush(30)
        assert export.sizes == [7]
    finally:
        b.shutdown()
    timed = Recorder()
    timed.release.set()
    b = batcher(timed, delay_s=0.05)
    try:
        for i in range(5):
            b.add(i)
        timed.wait_for(1)  # no flush asked: the timer sent it
        assert timed.sizes == [5]
    finally:
        b.shutdown()


def test_shutdown_exports_what_is_queued() -> None:
    """Shutdown drains a partial batch instead of spilling or dropping it."""
    export = Recorder()
    export.release.set()
    b = batcher(export)
    for i in range(42):
        b.add(i)
    b.shutdown()
    assert sum(export.sizes) == 42
