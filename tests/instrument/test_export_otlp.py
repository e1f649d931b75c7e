"""OTLP export to real receivers, logs beside spans, spill when the collector is down, sampling,
and content redaction."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import SpanProcessor

from blameset import instrument
from blameset.instrument import record_usage, request_context, traced
from blameset.instrument._spill import SpillWriter
from tests.conftest import VS
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, closed_port

pytestmark = pytest.mark.usefixtures("restore_configuration")


@traced.tool("search_web")
def search(q: str) -> str:
    return q


@traced.llm(model="gpt-4o-2024-08-06", provider="openai")
def complete(prompt: str) -> str:
    record_usage(input_tokens=1000, output_tokens=500)
    return "answer"


@traced("generate_outline", route="/v1/outline")
def handler(topic: str) -> str:
    logging.getLogger("app").warning("outlining %s", topic)
    search(topic)
    return complete(topic)


class SpanIds(SpanProcessor):
    """Remembers the id of every span that ended, to check that none went missing."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_end(self, span) -> None:
        self.ids.append(f"{span.context.span_id:016x}")


def spilled(folder: Path, signal: str = "spans") -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.glob(f"{signal}-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_and_logs_reach_a_real_receiver(protocol: str, tmp_path: Path):
    """Spans and log records arrive with the contract attributes, headers passed through."""
    receiver = HttpReceiver() if protocol == "http/protobuf" else GrpcReceiver()
    try:
        instrument.configure(
            service="writer-api",
            version_set=VS,
            environment="staging",
            exporter="otlp",
            endpoint=receiver.endpoint,
            protocol=protocol,
            headers={"x-api-key": "k-123"},
            timeout=5,
            spill_dir=tmp_path,
        )
        instrument.setup_logging(logger="app")
        with request_context(tenant="acme"):
            handler("observability")
        instrument.shutdown()
    finally:
        receiver.close()
    got = receiver.received
    by_name = {s["name"]: s for s in got.spans}
    assert set(by_name) == {"generate_outline", "execute_tool search_web", "chat gpt-4o-2024-08-06"}
    req = by_name["generate_outline"]
    assert req["resource"]["service.name"] == "writer-api"
    assert req["resource"]["service.version"] == "3f2a91c"
    assert req["resource"]["deployment.environment.name"] == "staging"
    assert req["resource"]["blameset.version.prompt"] == "outline@v4"
    assert req["attributes"]["blameset.version_set.id"] == VS.id
    assert req["attributes"]["blameset.final_status"] == "success"
    assert req["attributes"]["blameset.tenant.id"] == "acme"
    assert req["attributes"]["blameset.cost.usd"] == pytest.approx(0.0075)
    assert req["attributes"]["http.route"] == "/v1/outline"
    (log,) = got.logs
    assert log["body"] == "outlining observability"
    assert log["severity_text"] == "WARN"
    assert log["trace_id"] == req["trace_id"]
    assert log["span_id"] == req["span_id"]
    assert log["attributes"]["blameset.version_set.id"] == VS.id
    assert log["attributes"]["blameset.tenant.id"] == "acme"
    assert all(h.get("x-api-key") == "k-123" for h in got.headers)
    assert len(got.headers) >= 2  # one traces request, one logs request at least
    assert list(tmp_path.iterdir()) == []  # nothing spilled when the collector answers


def test_standard_environment_variables_choose_and_address_otlp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """OTEL_EXPORTER_OTLP_ENDPOINT/_PROTOCOL/_HEADERS drive a configure() given no exporter."""
    receiver = GrpcReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=writers")
    try:
        instrument.configure(service="svc", version_set=VS, spill_dir=tmp_path)
        handler("env")
        instrument.shutdown()
    finally:
        receiver.close()
    assert len(receiver.received.spans) == 3
    assert all(h.get("x-team") == "writers" for h in receiver.received.headers)


@pytest.mark.parametrize("outage", ["closed_port", "hanging_receiver", "failing_receiver"])
def test_an_outage_neither_fails_the_service_nor_loses_a_span(outage: str, tmp_path: Path):
    """220 calls during an outage all return, shutdown returns, and every span is spilled.

    How long the calls and the shutdown take during an outage is measured by bench/export.py
    (a timed assertion here flaked on a loaded machine)."""
    modes = {"hanging_receiver": "hang", "failing_receiver": "fail"}  # fail: HTTP 503, retried
    hanging = HttpReceiver(mode=modes[outage]) if outage in modes else None
    endpoint = hanging.endpoint if hanging else f"http://127.0.0.1:{closed_port()}"
    ids = SpanIds()
    try:
        instrument.configure(
            service="svc",
            version_set=VS,
            exporter="otlp",
            endpoint=endpoint,
            timeout=1.0,
            spill_dir=tmp_path,
            processors=(ids,),
        )

        @traced("op")
        def op(i: int) -> int:
            return i

        assert [op(i) for i in range(220)] == list(range(220))
        instrument.shutdown()
    finally:
        if hanging:
            hanging.close()
    if hanging:
        assert hanging.received.headers, "the exporter never reached the receiver"
    spans = spilled(tmp_path)
    assert sorted(s["span_id"] for s in spans) == sorted(ids.ids)
    assert len(spans) == 220
    assert all(s["attributes"]["blameset.version_set.id"] == VS.id for s in spans)
    assert spans[0]["resource"]["service.name"] == "svc"


def test_log_records_spill_too(tmp_path: Path):
    """Log records that cannot be exported are spilled beside the spans."""
    instrument.configure(
        version_set=VS,
        exporter="otlp",
        endpoint=f"http://127.0.0.1:{closed_port()}",
        timeout=0.5,
        spill_dir=tmp_path,
    )
    instrument.setup_logging(logger="app")
    with request_context(tenant="acme"):
        handler("down")
    instrument.shutdown()
    (log,) = spilled(tmp_path, "logs")
    assert log["body"] == "outlining down"
    assert log["attributes"]["blameset.tenant.id"] == "acme"
    span_ids = {s["span_id"] for s in spilled(tmp_path)}
    assert log["span_id"] in span_ids


def test_the_spill_folder_is_capped_and_says_what_it_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Past the size cap, spans are counted and dropped, with a warning and a summary."""
    instrument.configure(
        version_set=VS,
        exporter="otlp",
        endpoint=f"http://127.0.0.1:{closed_port()}",
        timeout=0.5,
        spill_dir=tmp_path,
        spill_max_bytes=5_000,
    )

    @traced("op")
    def op() -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="blameset"):
        for _ in range(100):
            op()
        instrument.shutdown()
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert 0 < size <= 5_000
    kept = len(spilled(tmp_path))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"telemetry dropped: {100 - kept} spans (spill folder full" in messages
    assert "spilling them to" in messages and str(tmp_path) in messages


def test_jsonl_mode_writes_logs_to_a_sibling_file(tmp_path: Path):
    """In JSONL mode log records go to spans.logs.jsonl, correlated with their span."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")
    instrument.setup_logging(logger="app")
    logging.getLogger("app").setLevel(logging.INFO)  # the logger's level decides what goes out
    with request_context(tenant="acme", versions={"prompt": "outline@v5"}):
        handler("files")
    logging.getLogger("app").info("outside any span")
    instrument.shutdown()
    spans = {json.loads(x)["name"]: json.loads(x) for x in out.read_text().splitlines()}
    logs = [json.loads(x) for x in (tmp_path / "spans.logs.jsonl").read_text().splitlines()]
    inside, outside = logs
    req = spans["generate_outline"]
    assert inside["trace_id"] == req["trace_id"]
    assert inside["span_id"] == req["span_id"]
    assert inside["attributes"]["blameset.version_set.id"] == VS.replace(prompt="outline@v5").id
    assert inside["attributes"]["blameset.tenant.id"] == "acme"
    assert outside["trace_id"] is None
    assert outside["severity_text"] == "INFO"


def test_events_go_out_as_log_records(tmp_path: Path):
    """emit_event() sends a structured event (audit records use it) with the current trace."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")
    with traced("export_document"):
        instrument.emit_event("audit", {"blameset.actor": "u1", "result": "ok"})
    instrument.shutdown()
    (event,) = [json.loads(x) for x in (tmp_path / "spans.logs.jsonl").read_text().splitlines()]
    assert event["event_name"] == "audit"
    assert event["attributes"]["blameset.actor"] == "u1"
    assert event["trace_id"] is not None


@pytest.mark.parametrize("how", ["argument_ratio", "argument_name", "environment"], ids=lambda h: h)
def test_sampling_drops_spans_not_money(how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A sampler that keeps nothing records no span; the call is still priced."""
    sampler: object = None
    if how == "argument_ratio":
        sampler = 0.0
    elif how == "argument_name":
        sampler = "parentbased_traceidratio:0"
    else:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}", sampler=sampler)  # type: ignore[arg-type]

    @traced("req")
    def req() -> float | None:
        @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
        def llm() -> float | None:
            return record_usage(input_tokens=1000, output_tokens=500)

        return llm()

    assert req() == pytest.approx(0.0075)
    instrument.shutdown()
    assert not out.exists() or out.read_text() == ""


def test_a_ratio_sampler_keeps_about_its_share(tmp_path: Path):
    """parentbased_traceidratio:0.5 keeps roughly half of 400 root spans, whole traces."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(
        version_set=VS, exporter=f"jsonl:{out}", sampler="parentbased_traceidratio:0.5"
    )
    for _ in range(400):
        handler("x")
    instrument.shutdown()
    spans = [json.loads(x) for x in out.read_text().splitlines()]
    roots = [s for s in spans if s["parent_span_id"] is None]
    assert 120 < len(roots) < 280
    assert len(spans) == 3 * len(roots)  # children follow their parent's decision


def test_unknown_sampler_is_a_clear_error():
    """A typo in the sampler name fails at configure time, listing the choices."""
    with pytest.raises(ValueError, match="parentbased_traceidratio"):
        instrument.configure(version_set=VS, exporter="console", sampler="sometimes")


SECRET_PROMPT = (
    "Summarise the ticket from bob.smith@example.com. Use key sk-proj-abcdefghijklmnop1234 "
    "and header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig, customer C-99812."
)


def test_content_is_off_by_default(tmp_path: Path):
    """Without capture_content, record_content records nothing."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(version_set=VS, exporter=f"jsonl:{out}")

    @traced.llm(model="m")
    def llm() -> bool:
        return instrument.record_content(input=SECRET_PROMPT, output="done")

    assert llm() is False
    instrument.shutdown()
    text = out.read_text()
    assert "gen_ai.input.messages" not in text
    assert "bob.smith" not in text


def test_captured_content_is_redacted(tmp_path: Path):
    """With capture on, keys, bearer tokens, e-mail addresses and user patterns are scrubbed."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(
        version_set=VS, exporter=f"jsonl:{out}", capture_content=True, redact=[r"\bC-\d{5}\b"]
    )

    @traced.llm(model="m")
    def llm() -> bool:
        return instrument.record_content(
            input=[{"role": "user", "content": SECRET_PROMPT}],
            output="Reply sent to alice@example.org",
            system="api_key=supersecret123",
        )

    @traced("fails")
    def fails() -> None:
        raise ValueError(f"provider rejected: {SECRET_PROMPT}")

    assert llm() is True
    with pytest.raises(ValueError, match=r"bob\.smith"):  # the caller's exception is untouched
        fails()
    instrument.shutdown()
    text = out.read_text()
    for secret in (
        "bob.smith@example.com",
        "sk-proj-abcdefghijklmnop1234",
        "eyJhbGciOiJIUzI1NiJ9",
        "alice@example.org",
        "supersecret123",
        "C-99812",
    ):
        assert secret not in text, secret
    spans = {json.loads(x)["name"]: json.loads(x) for x in out.read_text().splitlines()}
    attrs = spans["chat m"]["attributes"]
    messages = json.loads(attrs["gen_ai.input.messages"])
    assert "[REDACTED:email]" in messages[0]["content"]
    assert "[REDACTED:api_key]" in messages[0]["content"]
    assert "[REDACTED:bearer]" in messages[0]["content"]
    assert "[REDACTED:custom]" in messages[0]["content"]
    assert attrs["gen_ai.output.messages"] == "Reply sent to [REDACTED:email]"
    failed = spans["fails"]
    assert "[REDACTED:email]" in failed["status_message"]
    assert "[REDACTED:email]" in failed["events"][0]["attributes"]["exception.message"]


@traced("op")
def op(i: int) -> int:
    logging.getLogger("app").warning("op %d", i)
    return i


class HeldRequests:
    """Stands in for a hanging receiver's release event: holds each request until the test lets
    go, and counts the requests it holds and those it has answered."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._released = False
        self.holding = 0
        self.answered = 0

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            self.holding += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._released, timeout)
            self.holding -= 1
            self.answered += 1
            return self._released

    def set(self) -> None:
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def until_holding(self, n: int) -> bool:
        """True once ``n`` requests are held (bounded, for a broken exporter)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.holding >= n, 30)


def test_shutdown_is_bounded_with_many_batches_and_both_signals_hanging(tmp_path: Path):
    """1500 spans and 1500 log records (several batches each) against a collector that holds
    every request: shutdown returns at its one deadline while the span and the log exports are
    both still held (it waits for neither, batch after batch), and everything is spilled."""
    hanging = HttpReceiver(mode="hang")
    held = HeldRequests()
    hanging.release = held  # type: ignore[assignment]
    try:
        instrument.configure(
            version_set=VS,
            exporter="otlp",
            endpoint=hanging.endpoint,
            timeout=60,  # the exporters would wait a minute: only shutdown's deadline ends this
            spill_dir=tmp_path,
        )
        instrument.setup_logging(logger="app")
        for i in range(1500):
            op(i)
        # One batch of each signal is in the collector's hands (one request per worker at a time).
        assert held.until_holding(2), "the span and log exports never reached the collector"
        instrument.shutdown(timeout_millis=0)  # the deadline: the 0.5 s margin alone
        answered_before_shutdown_returned = held.answered
    finally:
        hanging.close()
    assert answered_before_shutdown_returned == 0, "shutdown waited for the collector"
    assert len(spilled(tmp_path, "spans")) == 1500
    assert len(spilled(tmp_path, "logs")) == 1500


def test_a_slow_spill_disk_is_counted_not_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A disk that does not take the spill in time: close() returns while the disk still holds
    a batch, and says what it dropped and what is unconfirmed."""
    writer = SpillWriter(tmp_path)
    writing = threading.Event()
    disk_free = threading.Event()
    written = threading.Event()
    original = writer._write_locked

    def slow_write(batch):
        writing.set()
        disk_free.wait(30)  # the disk hangs until the test lets go
        original(batch)
        written.set()

    writer._write_locked = slow_write  # type: ignore[method-assign]
    writer.spill("spans", [{"a": 1}], lambda x: x, "export failed")
    assert writing.wait(30), "the writer thread never took the first batch"
    writer.spill("spans", [{"a": 2}, {"a": 3}], lambda x: x, "export failed")
    with caplog.at_level(logging.WARNING, logger="blameset"):
        writer.close(timeout_s=0.05)
    returned_while_disk_held = not written.is_set()
    disk_free.set()
    assert written.wait(30)
    assert returned_while_disk_held, "close() waited for the disk"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "2 spans (spill disk too slow at shutdown)" in messages
    assert "still being written" in messages
    assert writer.dropped == {("spans", "spill disk too slow at shutdown"): 2}
    assert writer.spilled == {"spans": 1}  # the held batch did reach the disk in the end


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
