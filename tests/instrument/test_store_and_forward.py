"""Store and forward: what the spill folder holds reaches the collector once it answers again.

Real OTLP/HTTP exporters against tests/otlp_receiver.py's receiver on 127.0.0.1, stopped and
started again on the same port; real files, real second processes. The outages are shortened by
configuration (export timeouts of 0.3 s, short backoffs) but each spans several export timeouts
and retries. Nothing here sleeps for an event: it polls what it can observe, with a deadline.
What the outage costs the caller is measured by ``bench/export.py --outage``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor

from blameset import instrument
from blameset.instrument import _export, _runtime, traced
from blameset.instrument._spill import SpillWriter
from tests.conftest import VS
from tests.otlp_receiver import HttpReceiver, Received, closed_port

pytestmark = pytest.mark.usefixtures("restore_configuration")

TIMEOUT_S = 0.3
FAST = {"min_backoff_s": 0.1, "max_backoff_s": 0.5, "idle_scan_s": 0.2}
ROOT = Path(__file__).parents[2]


def eventually(what: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Poll ``what`` until true or the deadline (the events here come from other threads and
    processes: there is nothing to wait on)."""
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class SpanIds(SpanProcessor):
    """The id of every span that ended, to check that each reached the collector once."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_end(self, span: Any) -> None:
        self.ids.append(f"{span.context.span_id:016x}")


def settings(port: int) -> _export.OtlpSettings:
    return _export.OtlpSettings(endpoint=f"http://127.0.0.1:{port}", timeout=TIMEOUT_S)


def forward(writer: SpillWriter, port: int, signal: str = "spans", **tuning: float) -> Any:
    """Send ``writer``'s spill of ``signal`` to the receiver on ``port``; the exporter used."""
    chosen = settings(port)
    otlp = "traces" if signal == "spans" else "logs"
    exporter = _export.otlp_exporter(otlp, chosen)
    writer.forward(signal, exporter, _export.destination(otlp, exporter, chosen), **tuning)
    return exporter


def configure_forwarding(port: int, folder: Path, *processors: SpanProcessor) -> SpillWriter:
    """configure() with a real OTLP/HTTP exporter to ``port``, its spill re-sent there."""
    exporter = _export.otlp_exporter("traces", settings(port))
    instrument.configure(
        service="svc",
        version_set=VS,
        exporter=exporter,
        timeout=TIMEOUT_S,
        spill_dir=folder,
        processors=processors,
    )
    writer = _runtime.STATE.spill
    assert writer is not None
    writer.forward(
        "spans", exporter, _export.destination("traces", exporter, settings(port)), **FAST
    )
    return writer


def data_files(folder: Path, signal: str = "spans") -> list[Path]:
    return sorted(folder.glob(f"{signal}-*.jsonl"))


def flat(i: int) -> dict[str, Any]:
    """A flat span record as the spill folder holds it, with a unique id."""
    return {
        "trace_id": f"{i + 1:032x}",
        "span_id": f"{i + 1:016x}",
        "parent_span_id": None,
        "name": f"op {i}",
        "kind": "internal",
        "start_time_unix_nano": 1_700_000_000_000_000_000 + i,
        "end_time_unix_nano": 1_700_000_000_000_100_000 + i,
        "status": "ok",
        "status_message": None,
        "resource": {"service.name": "svc"},
        "attributes": {"i": i},
        "events": [],
    }


def spill_flat(folder: Path, port: int, records: list[dict[str, Any]], per_file: int) -> None:
    """Spill ``records`` for the (down) collector on ``port``, ``per_file`` to a file."""
    writer = SpillWriter(folder)
    quiet = {"min_backoff_s": 3600.0, "max_backoff_s": 3600.0, "idle_scan_s": 3600.0}
    forward(writer, port, **quiet)
    forwarder = writer._forwarder
    assert forwarder is not None
    assert eventually(lambda: forwarder.passes >= 1)  # its look at start-up: then it waits
    for start in range(0, len(records), per_file):
        writer.spill("spans", records[start : start + per_file], lambda r: r, "test")
        assert writer.flush()
        writer.seal("spans")
    writer.close()


@pytest.fixture
def port() -> int:
    """A free port where the collector will answer once the test starts it."""
    return closed_port()


def once_each(received: Received) -> Counter[str]:
    return Counter(s["span_id"] for s in received.spans)


def test_an_outage_of_several_export_timeouts_ends_with_every_span_delivered_once(
    tmp_path: Path, port: int
):
    """5,000 spans made while the collector is down (longer than several export timeouts and
    retries) all reach it after it comes back on the same port, each exactly once, and the
    spill folder is emptied."""
    ids = SpanIds()
    writer = configure_forwarding(port, tmp_path, ids)
    assert writer._forwarder is not None
    op = traced("op")(lambda i: i)
    assert [op(i) for i in range(5000)] == list(range(5000))
    # The outage lasts until everything is spilled and three re-send attempts have failed.
    assert eventually(lambda: writer.spilled.get("spans", 0) == 5000)
    assert eventually(lambda: writer._forwarder is not None and writer._forwarder.failures >= 3)
    receiver = HttpReceiver(port=port)
    try:
        assert eventually(lambda: receiver.received.span_count() >= 5000)
        assert eventually(lambda: not data_files(tmp_path))
        op(5000)  # the live pipeline works again too
        instrument.force_flush()
    finally:
        instrument.shutdown()
        receiver.close()
    counts = once_each(receiver.received)
    assert set(counts) == set(ids.ids) and len(ids.ids) == 5001
    assert max(counts.values()) == 1, "a span reached the collector twice"
    assert writer.forwarded == {"spans": 5000}
    assert all(r["resource"]["service.name"] == "svc" for r in receiver.received.spans)


def test_configure_alone_resends_spans_and_logs_after_an_outage(tmp_path: Path, port: int):
    """configure(exporter="otlp") with nothing else: spans and log records spilled while the
    collector was down reach it once it is back, each once, with no forwarding set up by hand."""
    instrument.configure(
        service="svc",
        version_set=VS,
        exporter="otlp",
        endpoint=f"http://127.0.0.1:{port}",
        timeout=TIMEOUT_S,
        spill_dir=tmp_path,
    )
    writer = _runtime.STATE.spill
    assert writer is not None and writer._forwarder is not None
    op = traced("op")(lambda i: i)
    assert [op(i) for i in range(200)] == list(range(200))
    instrument.emit_event("outage.probe", {"n": 1})
    assert eventually(lambda: writer.spilled.get("spans", 0) == 200)
    assert eventually(lambda: writer.spilled.get("logs", 0) >= 1)
    receiver = HttpReceiver(port=port)
    try:
        op(200)  # a live export succeeds: the resend wakes at once
        instrument.force_flush()
        assert eventually(lambda: receiver.received.span_count() >= 201)
        assert eventually(lambda: receiver.received.log_count() >= 1)
    finally:
        instrument.shutdown()
        receiver.close()
    counts = once_each(receiver.received)
    assert len(counts) == 201 and max(counts.values()) == 1


def test_a_new_process_resends_what_an_earlier_one_spilled(tmp_path: Path, port: int):
    """Spans a process spilled before it exited reach the collector through the next process
    that sends to it (at its start-up, with no new traffic)."""
    endpoint = f"http://127.0.0.1:{port}"
    worker = [sys.executable, "-m", "tests.instrument.forward_worker"]
    subprocess.run([*worker, "spill", endpoint, str(tmp_path), "300"], cwd=ROOT, check=True)
    spilled = {json.loads(line)["span_id"] for path in data_files(tmp_path) for line in path.open()}
    assert len(spilled) == 300
    receiver = HttpReceiver(port=port)
    try:
        writer = SpillWriter(tmp_path)
        forward(writer, port, **FAST)
        assert eventually(lambda: receiver.received.span_count() >= 300)
        assert eventually(lambda: not data_files(tmp_path))
        writer.close()
    finally:
        receiver.close()
    counts = once_each(receiver.received)
    assert set(counts) == spilled and max(counts.values()) == 1


def test_two_processes_sharing_a_spill_folder_send_each_file_once(tmp_path: Path, port: int):
    """Two processes re-sending one folder at once (20 files, 25-span batches) deliver every
    span exactly once between them: a file is claimed by one of them."""
    records = [flat(i) for i in range(2000)]
    spill_flat(tmp_path, port, records, per_file=100)
    assert len(data_files(tmp_path)) == 20
    receiver = HttpReceiver(port=port)
    endpoint = f"http://127.0.0.1:{port}"
    worker = [sys.executable, "-m", "tests.instrument.forward_worker"]
    try:
        drains = [
            subprocess.Popen(
                [*worker, "drain", endpoint, str(tmp_path), "60"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [proc.communicate(timeout=120)[0] for proc in drains]
        assert [proc.returncode for proc in drains] == [0, 0]
    finally:
        receiver.close()
    counts = once_each(receiver.received)
    assert set(counts) == {r["span_id"] for r in records}
    assert max(counts.values()) == 1, "both processes sent the same file"
    assert sum(int(out.split()[-1]) for out in outputs) == 2000
    assert not data_files(tmp_path)


def test_a_file_still_being_written_is_not_sent_until_its_writer_lets_go(tmp_path: Path, port: int):
    """Another forwarder skips a spill file while its writer still has it open (and locked);
    once the writer closes it, the file is sent, once."""
    owner = SpillWriter(tmp_path)
    forward(owner, port, min_backoff_s=3600.0, max_backoff_s=3600.0, idle_scan_s=3600.0)
    owning = owner._forwarder
    assert owning is not None
    assert eventually(lambda: owning.passes >= 1)  # its look at start-up: then it waits an hour
    owner.spill("spans", [flat(i) for i in range(100)], lambda r: r, "test")
    assert owner.flush()
    receiver = HttpReceiver(port=port)
    other = SpillWriter(tmp_path)
    try:
        forward(other, port, **FAST)
        assert other._forwarder is not None
        forwarder = other._forwarder
        assert eventually(lambda: forwarder.passes >= 2)
        assert receiver.received.span_count() == 0 and len(data_files(tmp_path)) == 1
        owner.seal("spans")
        assert eventually(lambda: receiver.received.span_count() >= 100)
        assert eventually(lambda: not data_files(tmp_path))
    finally:
        owner.close()
        other.close()
        receiver.close()
    assert max(once_each(receiver.received).values()) == 1
    assert other.forwarded == {"spans": 100}


def test_a_resend_cut_short_carries_on_after_the_last_acknowledged_batch(tmp_path: Path, port: int):
    """The collector takes two batches of a file, then fails; the next process sends the rest
    of the file only: every span once, none twice."""
    records = [flat(i) for i in range(250)]
    spill_flat(tmp_path, port, records, per_file=250)
    flaky = HttpReceiver(port=port, fail_after=2)
    first = SpillWriter(tmp_path)
    try:
        forward(first, port, batch_size=50, probe_size=50, **FAST)
        assert first._forwarder is not None
        forwarder = first._forwarder
        assert eventually(lambda: forwarder.failures >= 2)
        first.close()
    finally:
        flaky.close()
    assert flaky.received.span_count() == 100
    assert len(data_files(tmp_path)) == 1  # the file stays until all of it went out
    receiver = HttpReceiver(port=port, received=flaky.received)
    second = SpillWriter(tmp_path)
    try:
        forward(second, port, batch_size=50, **FAST)
        assert eventually(lambda: not data_files(tmp_path))
        second.close()
    finally:
        receiver.close()
    counts = once_each(receiver.received)
    assert set(counts) == {r["span_id"] for r in records}
    assert max(counts.values()) == 1
    assert second.forwarded == {"spans": 150}
    assert not list(tmp_path.iterdir()), "an offset file was left behind"


def test_space_a_resend_frees_under_the_cap_is_spilled_into_again(tmp_path: Path, port: int):
    """Past the cap records are counted as dropped; once the collector took the folder's files,
    the cap has room again and new records are spilled, not dropped."""
    writer = SpillWriter(tmp_path, max_bytes=20_000)
    forward(writer, port, **FAST)
    writer.spill("spans", [flat(i) for i in range(200)], lambda r: r, "test")
    assert writer.flush()
    full = sum(n for (_, why), n in writer.dropped.items() if why.startswith("spill folder full"))
    kept = writer.spilled["spans"]
    assert full > 0 and kept + full == 200
    receiver = HttpReceiver(port=port)
    try:
        assert eventually(lambda: receiver.received.span_count() >= kept)
        assert eventually(lambda: not data_files(tmp_path))
        writer.spill("spans", [flat(i) for i in range(200, 250)], lambda r: r, "test")
        assert writer.flush()
        assert eventually(lambda: receiver.received.span_count() >= kept + 50)
    finally:
        writer.close()
        receiver.close()
    assert writer.dropped == {("spans", "spill folder full, cap 20000 bytes"): full}
    assert writer.spilled["spans"] == kept + 50
    assert max(once_each(receiver.received).values()) == 1


def test_files_spilled_for_another_collector_are_left_alone_and_said_so(
    tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
):
    """A folder shared by services sending to different collectors: a forwarder sends only what
    was spilled for its own collector, and says that the others' files are left for ingest."""
    spill_flat(tmp_path, port, [flat(i) for i in range(10)], per_file=10)
    receiver = HttpReceiver()  # another collector, on another port
    writer = SpillWriter(tmp_path)
    try:
        with caplog.at_level(logging.INFO, logger="blameset"):
            forward(writer, receiver.port, **FAST)
            assert writer._forwarder is not None
            forwarder = writer._forwarder
            assert eventually(lambda: forwarder.passes >= 2)
    finally:
        writer.close()
        receiver.close()
    assert receiver.received.span_count() == 0
    assert len(data_files(tmp_path)) == 1
    assert "spilled for another destination" in caplog.text


def test_log_records_spilled_during_an_outage_reach_the_collector_scrubbed(
    tmp_path: Path, port: int
):
    """Log records the collector could not take are re-sent when it is back, each once, with
    their trace and span ids, and with the secrets they held redacted in the spill and on the
    wire."""
    from opentelemetry import trace
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import LoggerProvider

    from blameset.instrument._pipeline import spilling_log_processor
    from blameset.instrument._records import Scrubber
    from blameset.instrument._redact import Redactor

    secret = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2
    scrubber = Scrubber(Redactor())
    writer = SpillWriter(tmp_path)
    exporter = _export.ScrubbingLogExporter(_export.otlp_exporter("logs", settings(port)), scrubber)
    provider = LoggerProvider()
    provider.add_log_record_processor(
        spilling_log_processor(
            exporter, writer, export_timeout_s=TIMEOUT_S, to_dict=scrubber.log_dict
        )
    )
    app = provider.get_logger("forward-test-app")
    span = trace.NonRecordingSpan(trace.SpanContext(0xABC, 0xDEF, False, trace.TraceFlags(1)))
    inside = trace.set_span_in_context(span)
    try:
        writer.forward(
            "logs", exporter, _export.destination("logs", exporter, settings(port)), **FAST
        )
        for i in range(300):
            app.emit(LogRecord(body=f"call {i} with key {secret}", context=inside))
        provider.force_flush()
        assert eventually(lambda: writer.spilled.get("logs", 0) == 300)
        spilled_text = "".join(p.read_text() for p in data_files(tmp_path, "logs"))
        receiver = HttpReceiver(port=port)
        try:
            assert eventually(lambda: receiver.received.log_count() >= 300)
            assert eventually(lambda: not data_files(tmp_path, "logs"))
        finally:
            receiver.close()
    finally:
        provider.shutdown()
        writer.close()
    assert secret not in spilled_text and "[REDACTED" in spilled_text
    bodies = Counter(str(r["body"]) for r in receiver.received.logs)
    assert len(bodies) == 300 and max(bodies.values()) == 1
    assert not any(secret in body for body in bodies)
    assert {(r["trace_id"], r["span_id"]) for r in receiver.received.logs} == {
        (f"{0xABC:032x}", f"{0xDEF:016x}")
    }
    assert writer.forwarded == {"logs": 300}


def test_spans_spilled_and_resent_hold_no_secret(tmp_path: Path, port: int):
    """A secret in a span's attributes is redacted before the spill folder, so the re-sent span
    does not carry it to the collector either."""
    secret = "sk-proj-" + "Z9y8X7w6V5u4T3s2R1q0" * 2
    writer = configure_forwarding(port, tmp_path)

    @traced("op")
    def op() -> None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("app.note", f"calling with {secret}")

    op()
    instrument.force_flush()
    assert eventually(lambda: writer.spilled.get("spans", 0) == 1)
    on_disk = "".join(p.read_text() for p in data_files(tmp_path))
    receiver = HttpReceiver(port=port)
    try:
        assert eventually(lambda: receiver.received.span_count() >= 1)
    finally:
        instrument.shutdown()
        receiver.close()
    assert secret not in on_disk and "[REDACTED" in on_disk
    (span,) = receiver.received.spans
    assert secret not in json.dumps(span) and "[REDACTED" in span["attributes"]["app.note"]


def test_the_shutdown_summary_counts_every_spilled_span(
    tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
):
    """With 123 spans spilled, the warnings say 123 (not the size of the first batch spilled)."""
    with caplog.at_level(logging.WARNING, logger="blameset"):
        configure_forwarding(port, tmp_path)
        op = traced("op")(lambda i: i)
        for i in range(123):
            op(i)
        instrument.shutdown()
    assert "spilled to" in caplog.text and "123 spans" in caplog.text
    assert "1 spans" not in caplog.text
    assert sum(1 for p in data_files(tmp_path) for _ in p.open()) == 123


def test_a_spill_file_can_still_be_ingested_while_it_waits(tmp_path: Path, port: int):
    """What waits in the spill folder stays flat JSONL that ``blameset ingest`` reads (the keys
    added for the re-send are ignored by it)."""
    configure_forwarding(port, tmp_path)
    op = traced("op")(lambda i: i)
    for i in range(20):
        op(i)
    instrument.shutdown()
    out = tmp_path.parent / f"{tmp_path.name}-dataset"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "blameset"), "ingest", str(tmp_path), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("20 spans"), done.stdout


def test_a_child_forked_during_a_resend_does_not_keep_the_file_locked(tmp_path: Path, port: int):
    """fork() while the forwarder is sending a file (the collector holds the request): the child
    lets go of its copy of the claimed file, so once the parent's attempt ends the file can be
    claimed again while the child still runs."""
    import fcntl

    spill_flat(tmp_path, port, [flat(i) for i in range(10)], per_file=10)
    (path,) = data_files(tmp_path)
    hanging = HttpReceiver(mode="hang", port=port)
    sender = SpillWriter(tmp_path)
    go, child_may_exit = os.pipe()
    child_running, running = os.pipe()
    pid = -1
    try:
        forward(sender, port, min_backoff_s=3600.0, max_backoff_s=3600.0, idle_scan_s=3600.0)
        forwarder = sender._forwarder
        assert forwarder is not None
        assert eventually(lambda: bool(hanging.received.headers))  # the file is being sent
        pid = os.fork()
        if pid == 0:  # the child: past its fork handlers, stays alive until told
            os.write(running, b"x")
            os.read(go, 1)
            os._exit(0)
        assert os.read(child_running, 1) == b"x"
        hanging.release.set()  # the collector answers 503: the parent's attempt ends
        assert eventually(lambda: forwarder.failures >= 1)
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the child held it
        finally:
            os.close(fd)
    finally:
        if pid > 0:
            os.write(child_may_exit, b"x")
            os.waitpid(pid, 0)
        sender.close()
        hanging.close()


def test_a_signal_whose_collector_is_down_does_not_hold_back_another(tmp_path: Path, port: int):
    """Logs go to a collector that stays down, spans to one that is up: the spans are re-sent
    all the same, the logs stay in the folder."""
    writer = SpillWriter(tmp_path)
    forward(writer, closed_port(), "logs", **FAST)
    forward(writer, port, **FAST)
    log = {"time_unix_nano": 1, "severity_text": "WARN", "body": "b", "attributes": {}}
    writer.spill("logs", [log], lambda r: r, "test")
    writer.spill("spans", [flat(i) for i in range(30)], lambda r: r, "test")
    receiver = HttpReceiver(port=port)
    try:
        assert eventually(lambda: receiver.received.span_count() >= 30)
        assert eventually(lambda: not data_files(tmp_path))
    finally:
        writer.close()
        receiver.close()
    assert len(data_files(tmp_path, "logs")) == 1
    assert max(once_each(receiver.received).values()) == 1


def test_what_a_crash_leaves_beside_the_files_is_swept(tmp_path: Path, port: int):
    """An offset file whose spill file is gone and a hidden file a writer died creating (over a
    minute old) are removed at start-up; an offset file of a waiting spill file is kept."""
    spill_flat(tmp_path, port, [flat(i) for i in range(5)], per_file=5)
    (waiting,) = data_files(tmp_path)
    kept = tmp_path / f".{waiting.name}.sent"
    kept.write_text("0")
    orphan = tmp_path / ".spans-gone-1-2-0001@abc.jsonl.sent"
    orphan.write_text("10")
    stale = tmp_path / ".spans-dead-1-2-0001@abc.jsonl.new"
    stale.write_text("")
    os.utime(stale, (time.time() - 120, time.time() - 120))
    fresh = tmp_path / ".spans-busy-1-2-0001@abc.jsonl.new"
    fresh.write_text("")
    writer = SpillWriter(tmp_path)
    try:
        forward(writer, port, **FAST)  # the collector is still down: nothing is sent
        assert writer._forwarder is not None
        forwarder = writer._forwarder
        assert eventually(lambda: forwarder.passes >= 1)
    finally:
        writer.close()
    assert kept.exists() and fresh.exists() and waiting.exists()
    assert not orphan.exists() and not stale.exists()


def test_live_exports_wake_no_pass_when_nothing_waits_to_be_resent(tmp_path: Path, port: int):
    """A collector answering is news only after a failed pass: in steady state an export is no
    reason to look through the folder (it was every batch)."""
    writer = SpillWriter(tmp_path)
    quiet = {"min_backoff_s": 3600.0, "max_backoff_s": 3600.0, "idle_scan_s": 3600.0}
    forward(writer, port, **quiet)
    forwarder = writer._forwarder
    assert forwarder is not None
    assert eventually(lambda: forwarder.passes >= 1)  # its look at start-up found nothing
    for _ in range(5):
        forwarder.answered()  # what each successful live export calls
    with forwarder._cond:
        assert not forwarder._answered
    writer.close()


def test_after_a_failed_pass_a_live_export_wakes_the_resend_at_once(tmp_path: Path, port: int):
    """The collector back (a live export succeeded): what waits goes now, not after the
    backoff (an hour here)."""
    spill_flat(tmp_path, port, [flat(i) for i in range(40)], per_file=20)
    writer = SpillWriter(tmp_path)
    hour = {"min_backoff_s": 3600.0, "max_backoff_s": 3600.0, "idle_scan_s": 3600.0}
    forward(writer, port, **hour)
    forwarder = writer._forwarder
    assert forwarder is not None
    assert eventually(lambda: forwarder.failures >= 1)  # collector down at start-up
    receiver = HttpReceiver(port=port)
    try:
        forwarder.answered()
        assert eventually(lambda: receiver.received.span_count() >= 40)
    finally:
        writer.close()
        receiver.close()
    assert len(once_each(receiver.received)) == 40
