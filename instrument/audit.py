"""A tamper-evident audit log: who did what, to what, with what result, under which trace and
version set; append-only JSONL where each record carries the hash of the one before.

    audit = AuditLog("audit.jsonl")
    audit.record(actor="user-42", action="export_document", target="doc-1", result="ok")

``verify(path)`` (and ``blameset audit verify PATH``) recomputes the chain and names the first
line that was edited, removed or moved. Removing records from the end cannot be told from a
shorter log by the chain alone: keep the last hash elsewhere (``AuditLog.last_hash``) and pass it
as ``expect_last`` to catch that too. Records also go out as OTel log records (event
``blameset.audit``) when telemetry is configured.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from . import _runtime, contract, tracing
from ._context import current_context, resolve_versions
from .logs import emit_event

__all__ = ["AuditLog", "AuditLogDamaged", "Verification", "record_error", "set_default", "verify"]

GENESIS = "0" * 64


def _digest(prev_hash: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


class AuditLog:
    """Appends hash-chained records to a JSONL file; safe across threads and processes (the
    file is locked while the last hash is read and the new record written)."""

    def __init__(self, path: str | Path, *, emit: bool = True) -> None:
        self.path = Path(path)
        self.emit = emit
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def last_hash(self) -> str:
        """Hash of the newest record (the genesis hash for an empty log)."""
        with self.path.open("a+b") as handle:
            return _tail(handle)[1]

    def record(
        self, *, actor: str, action: str, target: str, result: str, **details: Any
    ) -> dict[str, Any]:
        """Append one record and return it (with its ``hash``)."""
        state = _runtime.STATE
        ctx = current_context()
        versions = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
        vs = versions or state.version_set
        span_ctx = trace.get_current_span().get_span_context()
        now_ns = state.clock()
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(now_ns / 1e9, UTC).isoformat(),
            "actor": actor,
            "action": action,
            "target": target,
            "result": result,
            "trace_id": f"{span_ctx.trace_id:032x}" if span_ctx.is_valid else None,
            "span_id": f"{span_ctx.span_id:016x}" if span_ctx.is_valid else None,
            "version_set": vs.canonical,
            "version_set_id": vs.id,
            "tenant": ctx.tenant,
            "action_id": ctx.action_id,
            # Details quote payloads and exception text: they go through the same redactor as
            # every exported signal before they are written (the actor is kept: it is the who).
            "details": state.redactor.mapping(details),
        }
        body["target"] = state.redactor(target)
        with self._lock, self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                seq, prev = _tail(handle)
                body["seq"] = seq + 1
                body["prev_hash"] = prev
                record = {**body, "hash": _digest(prev, body)}
                line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
                handle.write(line.encode("utf-8"))  # O_APPEND: always at the end
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if self.emit:
            emit_event(
                "blameset.audit",
                {
                    contract.ACTOR: actor,
                    "blameset.audit.action": action,
                    "blameset.audit.target": target,
                    "blameset.audit.result": result,
                    "blameset.audit.seq": record["seq"],
                    "blameset.audit.hash": record["hash"],
                },
            )
        return record


class AuditLogDamaged(ValueError):
    """The log's last line is not a whole record (a crash mid-write?): nothing more is appended
    until someone repairs it, since a record after it could not chain to it."""


def _tail(handle: Any) -> tuple[int, str]:
    """(seq, hash) of the last record in an open file, or (0, genesis)."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    if end == 0:
        return 0, GENESIS
    # Read backwards in chunks until the start of the last non-empty line.
    raw = handle
    chunk = 4096
    pos = end
    data = b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        raw.seek(pos)
        data = raw.read(step) + data
        if data.rstrip(b"\n").count(b"\n") >= 1:
            break
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record = json.loads(last)
        return int(record["seq"]), str(record["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        name = getattr(handle, "name", "the audit log")
        raise AuditLogDamaged(
            f"{name}: the last line is not a whole audit record ({exc}); repair or move the "
            "file before recording more"
        ) from None


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of :func:`verify`: ``ok``, or the first bad ``line`` (1-based) and ``problem``."""

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    last_hash: str | None = None
    """The last record's hash: keep it elsewhere and pass it as ``expect_last`` next time, so a
    log cut off after it (records removed from the end) is caught too."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        # JSON readers keep one of two equal keys: a second "result" could hide an edit.
        raise ValueError("a key appears twice")
    return dict(pairs)


def verify(path: str | Path, expect_last: str | None = None) -> Verification:
    """Walk the chain; the first line whose content, order or link is wrong is reported."""
    prev = GENESIS
    seq = 0
    count = 0
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
            except UnicodeDecodeError:
                return Verification(False, count, number, "not UTF-8 text")
            except ValueError as exc:
                return Verification(False, count, number, f"not a JSON record ({exc})")
            if not isinstance(record, dict) or "hash" not in record:
                return Verification(False, count, number, "not an audit record (no hash)")
            claimed = record.pop("hash")
            if record.get("prev_hash") != prev:
                problem = (
                    f"seq {record.get('seq')} follows seq {seq}: a record before it was removed "
                    "or the records were reordered"
                    if record.get("seq") != seq + 1
                    else "its prev_hash does not match the record before it"
                )
                return Verification(False, count, number, problem)
            if _digest(prev, {k: v for k, v in record.items()}) != claimed:
                return Verification(False, count, number, "its content was edited (hash mismatch)")
            if record.get("seq") != seq + 1:
                return Verification(False, count, number, f"seq {record.get('seq')} after {seq}")
            prev, seq = claimed, int(record["seq"])
            count += 1
    if expect_last is not None and prev != expect_last:
        return Verification(False, count, None, "the log ends before the expected last record")
    return Verification(True, count, last_hash=prev)


_default: AuditLog | None = None


def set_default(log: AuditLog | None) -> None:
    """The log that audited error codes (SAFETY_VIOLATION) are recorded in when raised inside a
    traced call; None (the default) records them only as ``blameset.audit`` events."""
    global _default
    _default = log


def record_error(exc: BaseException, operation: str, span: Any = None) -> None:
    """Audit an error whose code says so, once, at the span it was raised in (the decorators
    call it through :func:`tracing.on_audited_error`; never raises: a broken audit log is
    logged, the span is still written)."""
    if getattr(exc, "_blameset_audited", False):
        return
    try:
        exc._blameset_audited = True  # type: ignore[attr-defined]
        code = getattr(exc, "error_code", type(exc).__name__)
        ctx = current_context()
        fields = {
            "actor": ctx.actor or ctx.user or "unknown",
            "action": operation,
            "target": ctx.action_id or "",
            "result": str(code),
        }
        # The span has ended and left the context: put it back so the record carries its trace.
        token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        try:
            if _default is not None:
                _default.record(**fields, detail=str(exc))
            else:
                emit_event("blameset.audit", {f"blameset.audit.{k}": v for k, v in fields.items()})
        finally:
            if token is not None:
                otel_context.detach(token)
    except Exception:
        logging.getLogger("blameset").exception("blameset: auditing %s failed", operation)


tracing.on_audited_error(record_error)
