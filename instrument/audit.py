"""A tamper-evident audit log: who did what, to what, with what result, under which trace and
version set; append-only JSONL where each record carries the hash of the one before.

    audit = AuditLog("audit.jsonl", key=os.environ["BLAMESET_AUDIT_KEY"])
    audit.record(actor="user-42", action="export_document", target="doc-1", result="ok")
    audit.close()                                    # seals what is not sealed yet

The hash chain alone catches an edit, a removal or a move that did not recompute the hashes; it
cannot catch one that did (anyone can recompute SHA-256). With a key (``key=``, else
``BLAMESET_AUDIT_KEY``, else the file named by ``BLAMESET_AUDIT_KEY_FILE``) the log is also
**sealed**, as AWS CloudTrail's digest files are: every ``seal_every`` records and at close a
digest line is appended, HMAC-SHA256-signed, naming the last record's seq and hash and chaining
to the digest before it; the newest digest is also kept next to the log in ``<log>.seal``.
``verify(path, key=...)`` (``blameset audit verify PATH --key FILE``) then detects edits,
deletions, reordering, a cut-off tail, removed digest periods and appended forgeries, and says
which. See docs/backend/guard-rails/audit.md. Records also go out as OTel log records (event
``blameset.audit``) when telemetry is configured; their details are scrubbed like every signal.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import hmac
import json
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from . import _runtime, contract, tracing
from ._context import current_context, resolve_versions
from .logs import emit_event

__all__ = [
    "AuditLog",
    "AuditLogDamaged",
    "Verification",
    "load_key",
    "record_error",
    "seal_path",
    "set_default",
    "verify",
]

GENESIS = "0" * 64
DIGEST = "digest"
DEFAULT_SEAL_EVERY = 100


def seal_path(path: str | Path) -> Path:
    """Where the newest digest of a log is kept: ``audit.jsonl`` -> ``audit.jsonl.seal``."""
    p = Path(path)
    return p.with_name(p.name + ".seal")


def load_key(spec: str) -> bytes:
    """A sealing key from ``env:NAME`` (the variable's text) or a file's path (its bytes, a
    trailing newline dropped). Raises ValueError when it is missing or empty."""
    if spec.startswith("env:"):
        text = os.environ.get(spec[4:], "")
        if not text:
            raise ValueError(f"the variable {spec[4:]} is not set or empty")
        return text.encode("utf-8")
    try:
        data = Path(spec).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read the key file {spec}: {exc.strerror}") from None
    if not data:
        raise ValueError(f"the key file {spec} is empty")
    return data


def _key_from_env() -> bytes | None:
    if os.environ.get("BLAMESET_AUDIT_KEY"):
        return os.environ["BLAMESET_AUDIT_KEY"].encode("utf-8")
    if os.environ.get("BLAMESET_AUDIT_KEY_FILE"):
        return load_key(os.environ["BLAMESET_AUDIT_KEY_FILE"])
    return None


def _key_id(key: bytes) -> str:
    """Names the key without revealing it (so verify can say "sealed with another key")."""
    return hashlib.sha256(b"blameset-audit-key-id:" + key).hexdigest()[:16]


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sign(key: bytes, body: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def _digest(prev_hash: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


class AuditLog:
    """Appends hash-chained records to a JSONL file; safe across threads and processes (the
    file is locked while the last hash is read and the new record written).

    With a key (``key=``; else ``BLAMESET_AUDIT_KEY``; else ``BLAMESET_AUDIT_KEY_FILE``) it
    seals the log every ``seal_every`` records and at :meth:`close` (also run at exit), so
    :func:`verify` with the same key can prove it untouched. ``key=False`` turns sealing off.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        emit: bool = True,
        key: bytes | str | bool | None = None,
        seal_every: int = DEFAULT_SEAL_EVERY,
    ) -> None:
        self.path = Path(path)
        self.emit = emit
        if key is False:
            self._key: bytes | None = None
        elif key is None or key is True:
            self._key = _key_from_env()
        else:
            self._key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        self.seal_every = max(1, seal_every)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._key is not None:
            _open_logs.add(self)

    @property
    def sealed(self) -> bool:
        """Whether this log signs digests (it has a key)."""
        return self._key is not None

    def seal(self) -> dict[str, Any] | None:
        """Append a digest over the records not sealed yet (none: nothing is written). Returns
        the digest, or None."""
        if self._key is None:
            return None
        with self._lock, self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                seq, last = _tail(handle)
                return self._seal_locked(handle, seq, last, force=True)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        """Seal what is not sealed yet (a log without a key: nothing to do)."""
        try:
            self.seal()
        finally:
            _open_logs.discard(self)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _seal_locked(
        self, handle: Any, seq: int, last_hash: str, *, force: bool
    ) -> dict[str, Any] | None:
        """With the file locked: write a digest if one is due (or ``force``) and records exist
        that the newest digest does not cover."""
        assert self._key is not None
        previous = _read_seal(self.path)
        through = int(previous["last_seq"]) if previous else 0
        if seq <= through or (not force and seq - through < self.seal_every):
            return None
        body: dict[str, Any] = {
            "type": DIGEST,
            "digest_seq": (int(previous["digest_seq"]) if previous else 0) + 1,
            "first_seq": through + 1,
            "last_seq": seq,
            "last_hash": last_hash,
            "prev_digest": str(previous["hmac"]) if previous else GENESIS,
            "time": datetime.fromtimestamp(_runtime.STATE.clock() / 1e9, UTC).isoformat(),
            "key_id": _key_id(self._key),
        }
        digest = {**body, "hmac": _sign(self._key, body)}
        line = json.dumps(digest, ensure_ascii=False) + "\n"
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
        _write_seal(self.path, line)
        return digest

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
                if self._key is not None:
                    self._seal_locked(handle, record["seq"], record["hash"], force=False)
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
        if record.get("type") == DIGEST:  # a digest names the record it sealed
            return int(record["last_seq"]), str(record["last_hash"])
        return int(record["seq"]), str(record["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        name = getattr(handle, "name", "the audit log")
        raise AuditLogDamaged(
            f"{name}: the last line is not a whole audit record ({exc}); repair or move the "
            "file before recording more"
        ) from None


def _read_seal(path: Path) -> dict[str, Any] | None:
    """The newest digest, from ``<log>.seal`` (None when there is none yet)."""
    try:
        data = seal_path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        seal = json.loads(data)
    except ValueError:
        raise AuditLogDamaged(f"{seal_path(path)}: not a digest; repair or move it") from None
    return seal if isinstance(seal, dict) else None


def _write_seal(path: Path, line: str) -> None:
    """Replace ``<log>.seal`` atomically (a reader sees the old digest or the new one)."""
    target = seal_path(path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)


class _OpenLogs:
    """Sealing logs still open at exit are sealed then (a digest over their last records)."""

    def __init__(self) -> None:
        self._logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()
        atexit.register(self._close_all)

    def add(self, log: AuditLog) -> None:
        self._logs.add(log)

    def discard(self, log: AuditLog) -> None:
        self._logs.discard(log)

    def _close_all(self) -> None:
        for log in list(self._logs):
            try:
                log.close()
            except Exception:
                logging.getLogger("blameset").exception("blameset: sealing %s failed", log.path)


_open_logs = _OpenLogs()


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of :func:`verify`: ``ok``, or the first bad ``line`` (1-based) and ``problem``.

    ``malformed``: the input is not an audit log (not JSON, a record without its fields, a seal
    made with another key): nothing is proven either way. ``tampering`` names what was proven:
    ``edited``, ``removed_or_reordered``, ``forged_digest``, ``digests_removed``,
    ``sealed_records_changed``, ``truncated``, ``seal_missing``, ``unsealed_tail``,
    ``cut_off``."""

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    last_hash: str | None = None
    """The last record's hash: keep it elsewhere and pass it as ``expect_last`` next time, so a
    log cut off after it (records removed from the end) is caught too."""
    tampering: str | None = None
    malformed: bool = False
    digests: int = 0
    keyed: bool = False
    """Checked against a key: forgery is ruled out, not only accidental damage."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        # JSON readers keep one of two equal keys: a second "result" could hide an edit.
        raise _DuplicateKey("a key appears twice")
    return dict(pairs)


class _DuplicateKey(ValueError):
    pass


_DIGEST_FIELDS = ("digest_seq", "first_seq", "last_seq", "last_hash", "prev_digest", "hmac")


def verify(
    path: str | Path, expect_last: str | None = None, key: bytes | str | None = None
) -> Verification:
    """Walk the chain (and, with ``key``, the signed digests and ``<log>.seal``); the first
    line whose content, order, link or seal is wrong is reported, and what it proves."""
    walk = _Walk(key.encode("utf-8") if isinstance(key, str) else key)
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                found = walk.line(number, raw)
                if found is not None:
                    return found
    if walk.secret is not None:
        found = walk.seal(Path(path), walk.secret)
        if found is not None:
            return found
    if expect_last is not None and walk.prev != expect_last:
        return walk.bad(None, "the log ends before the expected last record", "cut_off")
    return Verification(
        True, walk.count, last_hash=walk.prev, digests=walk.digests, keyed=walk.secret is not None
    )


class _Walk:
    """What :func:`verify` knows after the lines read so far. Each check returns None when the
    line (or the seal) is right, else the :class:`Verification` that says what is wrong."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret
        self.prev, self.seq, self.count = GENESIS, 0, 0  # the record chain
        self.digest_prev, self.digest_seq, self.digests = GENESIS, 0, 0  # the digest chain
        self.sealed_through = 0  # the last record seq a digest covers
        self.last_digest: dict[str, Any] | None = None

    def bad(self, number: int | None, problem: str, tampering: str) -> Verification:
        """Tampering proven at line ``number`` (None: at the end or in the seal file)."""
        return self._failed(number, problem, tampering=tampering)

    def malformed(self, number: int | None, problem: str) -> Verification:
        """Not an audit log there: nothing proven either way."""
        return self._failed(number, problem, malformed=True)

    def _failed(self, number: int | None, problem: str, **kind: Any) -> Verification:
        return Verification(
            False, self.count, number, problem, digests=self.digests, keyed=bool(self.secret),
            **kind,
        )  # fmt: skip

    def line(self, number: int, raw: bytes) -> Verification | None:
        try:
            record = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError:
            return self.malformed(number, "not UTF-8 text")
        except _DuplicateKey:
            return self.bad(
                number, "a key appears twice (an edit hidden from JSON readers)", "edited"
            )
        except ValueError as exc:
            return self.malformed(number, f"not a JSON record ({exc})")
        if isinstance(record, dict) and record.get("type") == DIGEST:
            return self.digest(number, record)
        return self.record(number, record)

    def record(self, number: int, record: Any) -> Verification | None:
        """One audit record: linked to the one before, its hash its content's, next in seq."""
        if not isinstance(record, dict) or "hash" not in record or "seq" not in record:
            return self.malformed(number, "not an audit record (no hash)")
        claimed = record.pop("hash")
        if record.get("prev_hash") != self.prev:
            problem = (
                f"seq {record.get('seq')} follows seq {self.seq}: a record before it was "
                "removed or the records were reordered"
                if record.get("seq") != self.seq + 1
                else "its prev_hash does not match the record before it"
            )
            return self.bad(number, problem, "removed_or_reordered")
        if _digest(self.prev, dict(record.items())) != claimed:
            return self.bad(number, "its content was edited (hash mismatch)", "edited")
        if record.get("seq") != self.seq + 1:
            return self.bad(
                number, f"seq {record.get('seq')} after {self.seq}", "removed_or_reordered"
            )
        self.prev, self.seq = claimed, int(record["seq"])
        self.count += 1
        return None

    def digest(self, number: int, record: dict[str, Any]) -> Verification | None:
        """One digest line: signed with the key, next in the digest chain, and covering exactly
        the records since the digest before."""
        if any(f not in record for f in _DIGEST_FIELDS):
            return self.malformed(number, "a digest without its fields")
        claimed = str(record.pop("hmac"))
        found = self._signed(number, record, claimed) or self._chained(number, record)
        if found is not None:
            return found
        self.digest_prev, self.digest_seq = claimed, int(record["digest_seq"])
        self.sealed_through, self.digests = self.seq, self.digests + 1
        self.last_digest = {**record, "hmac": claimed}
        return None

    def _signed(self, number: int, record: dict[str, Any], claimed: str) -> Verification | None:
        if self.secret is None:
            return None  # without the key a digest proves nothing, but its links still count
        if record.get("key_id") != _key_id(self.secret):
            return self.malformed(number, "sealed with another key (key ids differ): check --key")
        if not hmac.compare_digest(_sign(self.secret, record), claimed):
            return self.bad(
                number,
                f"digest {record['digest_seq']} does not verify: forged or edited",
                "forged_digest",
            )
        return None

    def _chained(self, number: int, record: dict[str, Any]) -> Verification | None:
        if record["digest_seq"] != self.digest_seq + 1 or record["prev_digest"] != self.digest_prev:
            return self.bad(
                number,
                f"digest {record['digest_seq']} does not follow digest {self.digest_seq}: "
                "whole digest periods were removed or reordered",
                "digests_removed",
            )
        if (
            record["first_seq"] != self.sealed_through + 1
            or record["last_seq"] != self.seq
            or record["last_hash"] != self.prev
        ):
            return self.bad(
                number,
                f"digest {record['digest_seq']} sealed records {record['first_seq']}.."
                f"{record['last_seq']}, and the records before it are not those: they "
                "were edited, removed or reordered (hashes recomputed) after sealing",
                "sealed_records_changed",
            )
        return None

    def seal(self, path: Path, secret: bytes) -> Verification | None:
        """With the key, after the last line: ``<log>.seal`` is there, signed, and names the
        log's last digest, and no record comes after that digest."""
        try:
            seal = _read_seal(path)
        except AuditLogDamaged as exc:
            return self.malformed(None, str(exc))
        found = self._seal_file(path, seal, secret)
        if found is not None:
            return found
        if self.seq > self.sealed_through:
            return self.bad(
                None,
                f"records {self.sealed_through + 1}..{self.seq} come after the last seal: "
                "appended without the key (forged), or by a writer that stopped before sealing "
                "(if so, `blameset audit seal` them)",
                "unsealed_tail",
            )
        return None

    def _seal_file(
        self, path: Path, seal: dict[str, Any] | None, secret: bytes
    ) -> Verification | None:
        if seal is None:
            if self.digests or self.count:
                return self.bad(
                    None,
                    f"{seal_path(path).name} is missing: the tail may have been cut off with "
                    "it (keep the seal file next to the log)",
                    "seal_missing",
                )
            return None
        if any(f not in seal for f in _DIGEST_FIELDS):
            return self.malformed(None, f"{seal_path(path).name} is not a digest")
        body = {k: v for k, v in seal.items() if k != "hmac"}
        if seal.get("key_id") != _key_id(secret):
            return self.malformed(None, "the seal was made with another key: check --key")
        if not hmac.compare_digest(_sign(secret, body), str(seal["hmac"])):
            return self.bad(
                None, "the seal file does not verify: forged or edited", "forged_digest"
            )
        if self.last_digest is None or int(seal["digest_seq"]) > self.digest_seq:
            return self.bad(
                None,
                f"the log ends after digest {self.digest_seq} but its seal names digest "
                f"{seal['digest_seq']} (through seq {seal['last_seq']}): the tail was cut off",
                "truncated",
            )
        if seal["hmac"] != self.last_digest["hmac"]:
            return self.bad(None, "the seal does not match the log's last digest", "forged_digest")
        return None


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
                _default.record(**fields, detail=str(exc))  # redacted by record()
            else:
                emit_event("blameset.audit", {f"blameset.audit.{k}": v for k, v in fields.items()})
        finally:
            if token is not None:
                otel_context.detach(token)
    except Exception:
        logging.getLogger("blameset").exception("blameset: auditing %s failed", operation)


tracing.on_audited_error(record_error)
