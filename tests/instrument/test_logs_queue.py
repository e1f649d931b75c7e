"""Log records inside spans, and queue time carried with a job."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import queue
from pathlib import Path

import pytest

from blameset import instrument
from blameset.instrument import QueueStamp, dequeued, request_context, stamp, traced
from blameset.instrument.testing import CapturedSpans, FakeClock
from tests.conftest import VS


def test_log_records_inside_a_span_carry_ids(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
):
    """A stdlib log record made in a span carries trace_id, span_id, version set id and tenant."""
    log = logging.getLogger("app")

    @traced("handler")
    def handler() -> None:
        log.warning("inside")

    with caplog.at_level(logging.INFO, logger="app"), request_context(tenant="acme"):
        handler()
        log.warning("outside")
    inside, outside = caplog.records
    span = spans.one("handler")
    assert inside.trace_id == f"{span.context.trace_id:032x}"
    assert inside.span_id == f"{span.context.span_id:016x}"
    assert inside.version_set_id == VS.id
    assert inside.tenant_id == "acme"
    assert outside.trace_id == "" and outside.span_id == ""


def test_log_format_strings_work_with_the_ids(spans: CapturedSpans):
    """%(trace_id)s works in any formatter, inside and outside spans."""
    formatter = logging.Formatter("%(trace_id)s|%(span_id)s|%(version_set_id)s|%(message)s")
    record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "msg", (), None)
    assert formatter.format(record) == f"||{VS.id}|msg"


def test_queue_time_and_context_travel_with_the_job(spans: CapturedSpans, clock: FakeClock):
    """A job stamped in a request and handled later: same trace, queue span, queue_ms, context."""

    @traced("export_document")
    def export_document() -> None:
        pass

    @traced("enqueue_export")
    def producer() -> dict:
        return {"doc": "d1", "stamp": stamp().to_dict()}

    with request_context(tenant="acme", action_id="act-1", versions={"prompt": "export@v2"}):
        job = producer()
    job = json.loads(json.dumps(job))  # a real queue serialises the job
    clock.advance(250)
    with dequeued(QueueStamp.from_dict(job["stamp"]), "export") as waited:
        assert instrument.current_context().tenant == "acme"
        export_document()
    assert waited == 250.0
    prod, queue, work = (
        spans.one("enqueue_export"),
        spans.one("queue export"),
        spans.one("export_document"),
    )
    assert queue.context.trace_id == prod.context.trace_id == work.context.trace_id
    assert queue.parent.span_id == prod.context.span_id
    assert work.parent.span_id == queue.context.span_id
    assert queue.attributes["blameset.span.kind"] == "queue"
    assert (queue.end_time - queue.start_time) / 1e6 == 250.0
    a = work.attributes
    assert a["blameset.span.kind"] == "request"
    assert a["blameset.latency.queue_ms"] == 250.0
    assert a["blameset.boundary"] == "async"
    assert a["blameset.tenant.id"] == "acme"
    assert a["blameset.action_id"] == "act-1"
    assert a["blameset.version.prompt"] == "export@v2"


def test_one_queue_wait_belongs_to_one_request(spans: CapturedSpans, clock: FakeClock):
    """Only the first request in the dequeued block gets the queue time."""

    @traced("work")
    def work() -> None:
        pass

    job = stamp()
    clock.advance(10)
    with dequeued(job):
        work()
        work()
    first, second = spans.named("work")
    assert first.attributes["blameset.latency.queue_ms"] == 10.0
    assert "blameset.latency.queue_ms" not in second.attributes


def test_asyncio_work_queue(spans: CapturedSpans, clock: FakeClock):
    """The worker pattern of an asyncio.Queue: each job's request reports its own wait."""

    @traced("handle")
    async def handle(n: int) -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for n in range(3):
            await queue.put((n, stamp()))
            clock.advance(5)

        async def worker() -> None:
            while not queue.empty():
                n, job = await queue.get()
                with dequeued(job, "handle"):
                    await handle(n)

        await worker()

    asyncio.run(main())
    waits = [s.attributes["blameset.latency.queue_ms"] for s in spans.named("handle")]
    assert waits == [15.0, 10.0, 5.0]


def test_record_queue_time_by_hand(spans: CapturedSpans):
    """Queues that report their own wait can set it on the current request."""

    @traced("handler")
    def handler() -> None:
        instrument.record_queue_time(42)

    handler()
    assert spans.attributes("handler")["blameset.latency.queue_ms"] == 42.0


@pytest.mark.usefixtures("restore_configuration")
def test_setup_logging_leaves_logger_levels_alone():
    """Adding the handler does not make the user's console print INFO lines."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    instrument.setup_logging()
    assert root.level == logging.WARNING


@pytest.mark.usefixtures("restore_configuration")
def test_records_handled_on_another_thread_keep_their_trace(tmp_path: Path):
    """With a QueueHandler, the listener thread exports the record with the span it came from."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")
    q: queue.Queue = queue.Queue()
    listener = logging.handlers.QueueListener(q, instrument.logs.BlamesetLogHandler())
    app = logging.getLogger("app")
    app.addHandler(logging.handlers.QueueHandler(q))
    listener.start()
    try:
        with instrument.request_context(tenant="acme"), traced("handler"):
            app.warning("queued")
    finally:
        listener.stop()
        for handler in list(app.handlers):
            app.removeHandler(handler)
    instrument.shutdown()
    span = json.loads(out.read_text().splitlines()[0])
    (log,) = [json.loads(x) for x in (tmp_path / "spans.logs.jsonl").read_text().splitlines()]
    assert log["trace_id"] == span["trace_id"]
    assert log["span_id"] == span["span_id"]
    assert log["attributes"]["blameset.tenant.id"] == "acme"
