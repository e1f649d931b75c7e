"""The export pipeline under the conditions a review found it wanting: many batches against a
hanging collector, both signals at once, a slow spill disk, fork, late spans, noisy transports,
queue handlers, and secrets in awkward shapes."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import threading
import time
from pathlib import Path

import pytest

from blameset import instrument
from blameset.instrument import traced
from blameset.instrument._redact import Redactor
from blameset.instrument._spill import SpillWriter
from tests.conftest import VS
from tests.otlp_receiver import GrpcReceiver, HttpReceiver

pytestmark = pytest.mark.usefixtures("restore_configuration")


def spilled(folder: Path, signal: str) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.glob(f"{signal}-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


@traced("op")
def op(i: int) -> int:
    logging.getLogger("app").warning("op %d", i)
    return i


def test_shutdown_is_bounded_with_many_batches_and_both_signals_hanging(tmp_path: Path):
    """1500 spans and 1500 log records (several batches each) against a hanging collector:
    shutdown returns within the export timeout plus the margin, and everything is spilled."""
    hanging = HttpReceiver(mode="hang")
    try:
        instrument.configure(
            version_set=VS,
            exporter="otlp",
            endpoint=hanging.endpoint,
            timeout=1.0,
            spill_dir=tmp_path,
        )
        instrument.setup_logging(logger="app")
        for i in range(1500):
            op(i)
        t0 = time.perf_counter()
        instrument.shutdown()
        took = time.perf_counter() - t0
    finally:
        hanging.close()
    # Export timeout + margin + the spill folder's 2 s (+ slack); batch by batch, spans then
    # logs, would be six timeouts or more.
    assert took < 1.0 + 0.5 + 2.0 + 0.5, f"shutdown took {took:.2f} s"
    assert len(spilled(tmp_path, "spans")) == 1500
    assert len(spilled(tmp_path, "logs")) == 1500


def test_a_slow_spill_disk_is_counted_not_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A disk that does not take the spill in time: close() is bounded and says what it dropped."""
    writer = SpillWriter(tmp_path)
    stuck = threading.Event()
    original = writer._write_locked

    def slow_write(batch):
        stuck.wait(5)  # the disk hangs until the test lets go
        original(batch)

    writer._write_locked = slow_write  # type: ignore[method-assign]
    writer.spill("spans", [{"a": 1}], lambda x: x, "export failed")
    for _ in range(1000):  # until the writer thread holds the first batch (bounded)
        if writer._busy:
            break
        stuck.wait(0.005)
    writer.spill("spans", [{"a": 2}, {"a": 3}], lambda x: x, "export failed")
    with caplog.at_level(logging.WARNING, logger="blameset"):
        t0 = time.perf_counter()
        writer.close(timeout_s=0.2)
        took = time.perf_counter() - t0
    stuck.set()
    assert took < 1.0
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "2 spans (spill disk too slow at shutdown)" in messages
    assert "still being written" in messages


def test_a_span_ending_after_shutdown_is_spilled(tmp_path: Path):
    """A request still running when telemetry shuts down is written to the spill folder."""
    instrument.configure(
        version_set=VS,
        exporter="otlp",
        endpoint="http://127.0.0.1:9",
        timeout=0.2,
        spill_dir=tmp_path,
    )
    with traced("in_flight"):
        instrument.shutdown()
    (span,) = spilled(tmp_path, "spans")
    assert span["name"] == "in_flight"


def test_a_forked_child_exports_its_own_spans(tmp_path: Path):
    """After fork() the child's spans reach the collector (its threads are restarted)."""
    receiver = HttpReceiver()
    try:
        instrument.configure(
            version_set=VS,
            exporter="otlp",
            endpoint=receiver.endpoint,
            timeout=5,
            spill_dir=tmp_path,
        )
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                child_op = traced("child_op")(lambda: None)
                for _ in range(20):
                    child_op()
                instrument.shutdown()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        instrument.shutdown()
    finally:
        receiver.close()
    assert [s["name"] for s in receiver.received.spans].count("child_op") == 20
    assert spilled(tmp_path, "spans") == []


def test_transport_debug_logs_do_not_loop_back(tmp_path: Path):
    """With the root logger at DEBUG, the exporters' own HTTP chatter is not exported."""
    receiver = HttpReceiver()
    try:
        logging.getLogger().setLevel(logging.DEBUG)
        instrument.configure(
            version_set=VS,
            exporter="otlp",
            endpoint=receiver.endpoint,
            timeout=5,
            spill_dir=tmp_path,
        )
        instrument.setup_logging()
        logging.getLogger("app").info("the one line")
        for _ in range(3):
            instrument.force_flush()
        instrument.shutdown()
    finally:
        receiver.close()
    assert [r["body"] for r in receiver.received.logs] == ["the one line"]


def test_setup_logging_leaves_logger_levels_alone():
    """Adding the handler does not make the user's console print INFO lines."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    instrument.setup_logging()
    assert root.level == logging.WARNING


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


def test_header_values_are_url_decoded_as_in_the_variable(tmp_path: Path):
    """headers="k=v" as a string is read like OTEL_EXPORTER_OTLP_HEADERS (URL-encoded values)."""
    receiver = HttpReceiver()
    try:
        instrument.configure(
            version_set=VS,
            exporter="otlp",
            endpoint=receiver.endpoint,
            headers="Authorization=Basic%20dXNlcjpwdw%3D%3D",
            spill_dir=tmp_path,
        )
        op(1)
        instrument.shutdown()
    finally:
        receiver.close()
    assert receiver.received.headers[0]["authorization"] == "Basic dXNlcjpwdw=="


def test_grpc_with_an_http_endpoint_is_plaintext_without_extra_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """endpoint="http://host:port" over gRPC connects in plaintext (the scheme decides)."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_INSECURE", raising=False)
    receiver = GrpcReceiver()
    try:
        instrument.configure(
            version_set=VS,
            exporter="otlp",
            protocol="grpc",
            endpoint=receiver.endpoint + "/",
            timeout=5,
            spill_dir=tmp_path,
        )
        op(1)
        instrument.shutdown()
    finally:
        receiver.close()
    assert [s["name"] for s in receiver.received.spans] == ["op"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgres://admin:s3cr3tPass@10.0.0.5/db", "s3cr3tPass"),
        ("redis://:pw123@cache:6379", "pw123"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "eyJzdWIiOiIxMjM0In0"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
            "MIIEvQIBADANBg",
        ),
        ('{"api_key": "abcd1234efgh", "password": "hunter22"}', "hunter22"),
        ("mail a.b@mail.example.co.uk today", "a.b@mail.example.co.uk"),
        ("key sk-ant-api03-abcdefghijklmnopqrstuv", "abcdefghijklmnopqrstuv"),
    ],
)
def test_the_redactor_catches_secrets_in_awkward_shapes(text: str, secret: str):
    """Credentials in URLs, JWTs, basic auth, PEM keys, JSON pairs, e-mail, provider keys."""
    assert secret not in Redactor()(text)


@pytest.mark.parametrize(
    "text", ["logo@2x.png", "The bearer instrument", "Token: completion", "secret = consistency"]
)
def test_the_redactor_leaves_ordinary_text_alone(text: str):
    """Words that merely look like labels are not redacted."""
    assert Redactor()(text) == text


def test_the_redactor_is_fast_on_long_unbroken_text():
    """60 KB without spaces (an attachment) redacts in well under a second, not quadratically."""
    blob = ("ab.c-" * 12_000) + "@x"
    t0 = time.perf_counter()
    Redactor()(blob)
    assert time.perf_counter() - t0 < 0.5
