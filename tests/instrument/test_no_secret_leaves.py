"""End to end: a corpus of secrets put through every path a service uses, with content capture on
and off, exported to JSONL, to a real OTLP/HTTP receiver (raw request bytes kept), to the spill
folder and to the audit log: not one secret appears in any byte that left the process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from blameset import instrument
from blameset.instrument import traced
from blameset.instrument.audit import AuditLog, set_default
from blameset.instrument.errors import SafetyViolation
from blameset.instrument.logs import emit_event, setup_logging
from tests.conftest import VS

from .secrets_corpus import CUSTOM_PATTERNS, SECRETS


class RawReceiver:
    """OTLP/HTTP on 127.0.0.1 keeping each request body as it arrived (uncompressed)."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[RawReceiver]:
    r = RawReceiver()
    yield r
    r.close()


def _exercise(audit: AuditLog) -> None:
    """Every path of item 1, each carrying every secret of the corpus."""
    log = logging.getLogger("svc.leaks")
    log.setLevel(logging.INFO)
    set_default(audit)
    try:
        for name, text, _ in SECRETS:

            @traced.llm(model="gpt-4o")
            def call(text: str = text) -> None:
                instrument.record_content(
                    input=[{"role": "user", "content": text}], output=text, system=text
                )
                log.info("calling provider with %s", text, extra={"payload": text, "note": text})
                try:
                    raise RuntimeError(f"provider said: {text}")
                except RuntimeError:
                    log.exception("failed with %s", text)
                emit_event("svc.event", {"detail": text}, body=text)
                raise RuntimeError(f"upstream rejected {text}")

            with pytest.raises(RuntimeError):
                call()

            @traced(f"guard {name}")
            def guard(text: str = text) -> None:
                raise SafetyViolation(f"blocked prompt containing {text}")

            with pytest.raises(SafetyViolation):
                guard()
            audit.record(actor="svc", action="check", target=text, result="ok", payload=text)
    finally:
        set_default(None)


def _assert_clean(where: str, data: bytes) -> None:
    leaked = [name for name, _, secret in SECRETS if secret.encode() in data]
    assert not leaked, f"{where}: {leaked}"


@pytest.mark.parametrize("capture", [True, False])
def test_no_secret_reaches_jsonl_spill_or_audit(tmp_path: Path, capture: bool):
    """JSONL spans and logs, the audit log: none of the 47 secrets, capture on or off."""
    out = tmp_path / "spans.jsonl"
    instrument.configure(
        version_set=VS, exporter=f"jsonl:{out}", capture_content=capture, redact=CUSTOM_PATTERNS
    )
    handler = setup_logging(logging.INFO, "svc.leaks")
    try:
        _exercise(AuditLog(tmp_path / "audit.jsonl"))
    finally:
        instrument.shutdown()
        logging.getLogger("svc.leaks").removeHandler(handler)
    logs = out.with_name("spans.logs.jsonl")
    assert out.stat().st_size > 0 and logs.stat().st_size > 0
    for path in (out, logs, tmp_path / "audit.jsonl"):
        _assert_clean(path.name, path.read_bytes())
    assert b"[REDACTED:github_token]" in logs.read_bytes()


@pytest.mark.parametrize("capture", [True, False])
def test_no_secret_reaches_a_real_otlp_receiver(
    tmp_path: Path, receiver: RawReceiver, capture: bool
):
    """/v1/traces and /v1/logs request bodies as they arrived: none of the secrets."""
    instrument.configure(
        version_set=VS,
        exporter="otlp",
        endpoint=receiver.endpoint,
        protocol="http/protobuf",
        capture_content=capture,
        redact=CUSTOM_PATTERNS,
        spill_dir=tmp_path / "spill",
    )
    handler = setup_logging(logging.INFO, "svc.leaks")
    try:
        _exercise(AuditLog(tmp_path / "audit.jsonl"))
    finally:
        instrument.shutdown()
        logging.getLogger("svc.leaks").removeHandler(handler)
    paths = {path for path, _ in receiver.bodies}
    assert paths == {"/v1/traces", "/v1/logs"}
    for path, body in receiver.bodies:
        _assert_clean(path, body)
    for signal in ("/v1/traces", "/v1/logs"):
        assert any(b"[REDACTED:password]" in b for p, b in receiver.bodies if p == signal)
    _assert_clean("audit", (tmp_path / "audit.jsonl").read_bytes())


def test_no_secret_reaches_the_spill_folder(tmp_path: Path):
    """With the collector down, what is spilled (spans and logs) is scrubbed too."""
    spill = tmp_path / "spill"
    instrument.configure(
        version_set=VS,
        exporter="otlp",
        endpoint="http://127.0.0.1:9",  # nothing listens: every export fails and spills
        protocol="http/protobuf",
        timeout=0.2,
        capture_content=True,
        redact=CUSTOM_PATTERNS,
        spill_dir=spill,
    )
    handler = setup_logging(logging.INFO, "svc.leaks")
    try:
        _exercise(AuditLog(tmp_path / "audit.jsonl"))
    finally:
        instrument.shutdown()
        logging.getLogger("svc.leaks").removeHandler(handler)
    files = sorted(spill.glob("*.jsonl"))
    assert {f.name.split("-")[0] for f in files} == {"spans", "logs"}
    for f in files:
        _assert_clean(f.name, f.read_bytes())
