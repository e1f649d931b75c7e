"""Guard rails under the conditions a review found them wanting."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blameset.analyze.gate import check_design
from blameset.cli.app import app
from blameset.instrument import RetryBudget, errors, request_context, retry, traced
from blameset.instrument.audit import AuditLog, AuditLogDamaged, set_default, verify
from blameset.instrument.errors import Internal, PolicyViolation, QuotaExceeded
from blameset.instrument.idempotency import idempotent
from blameset.instrument.stores import MemoryStore, SQLiteStore
from blameset.instrument.testing import CapturedSpans


def test_a_result_that_cannot_be_stored_never_reruns_the_effect(caplog):
    """A non-JSON result: the first caller gets it; repeats get INTERNAL, the effect ran once."""
    effects = []

    @idempotent(key=lambda: "k", store=MemoryStore())
    def make() -> datetime:
        effects.append(1)
        return datetime(2026, 1, 1)

    with caplog.at_level(logging.ERROR, logger="blameset"):
        assert make() == datetime(2026, 1, 1)
    assert "cannot be serialised" in caplog.text
    with pytest.raises(Internal):
        make()
    assert effects == [1]


class BrokenStore(MemoryStore):
    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    def begin(self, *a, **k):
        if self.fail == "begin":
            raise ConnectionError("store down")
        return super().begin(*a, **k)

    def complete(self, *a, **k):
        if self.fail == "complete":
            raise ConnectionError("store down")
        return super().complete(*a, **k)

    def release(self, *a, **k):
        if self.fail == "release":
            raise ConnectionError("store down")
        return super().release(*a, **k)


def test_store_faults_fail_closed_before_and_never_mask_after(caplog):
    """Store down before the work: INTERNAL, the work does not run. After: the caller still gets
    its result, or its own exception, never the store's error."""
    ran = []

    @idempotent(key=lambda: "a", store=BrokenStore("begin"))
    def before() -> str:
        ran.append("before")
        return "x"

    with pytest.raises(Internal, match="store unavailable"):
        before()
    assert ran == []

    @idempotent(key=lambda: "b", store=BrokenStore("complete"))
    def after() -> str:
        return "result"

    with caplog.at_level(logging.ERROR, logger="blameset"):
        assert after() == "result"
    original = QuotaExceeded("own error")

    @idempotent(key=lambda: "c", store=BrokenStore("release"))
    def fails() -> None:
        raise original

    with pytest.raises(QuotaExceeded) as info:
        fails()
    assert info.value is original


def test_async_idempotency_does_not_block_the_event_loop(tmp_path: Path):
    """A SQLite file locked by another writer: the loop keeps ticking while the call waits."""
    store = SQLiteStore(tmp_path / "guard.db")
    blocker = SQLiteStore(tmp_path / "guard.db")
    db = blocker._connection()
    db.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = []

    @idempotent(key=lambda: "k", store=store)
    async def work() -> str:
        return "done"

    async def ticker() -> None:
        for _ in range(10):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def main() -> str:
        task = asyncio.create_task(work())
        await ticker()
        db.execute("COMMIT")  # the other writer lets go
        return await task

    assert asyncio.run(main()) == "done"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.5  # the loop was never stalled on the lock


def test_store_failures_replay_keeps_the_message():
    """A stored failure of an exception without a code replays as INTERNAL naming it."""

    @idempotent(key=lambda: "k", store=MemoryStore(), store_failures=True)
    def bad() -> None:
        raise ValueError("bad row 7")

    with pytest.raises(ValueError):
        bad()
    with pytest.raises(Internal, match="ValueError: bad row 7"):
        bad()


def test_an_alias_cannot_shadow_a_code():
    """Registering an alias that is already a code (or alias) is refused."""
    with pytest.raises(ValueError, match="already a code"):
        errors.register(
            "MY_CODE", http_status=400, message_en="x", message_zh="x", aliases=("INVALID_INPUT",)
        )
    assert "MY_CODE" not in errors.CODES
    assert errors.classify(errors.InvalidInput()).code == "INVALID_INPUT"


def test_the_retry_budget_bounds_retries_after_a_long_healthy_stretch():
    """1000 healthy calls, then a 200-call outage: retries <= burst of 10 + 10% of calls."""
    budget = RetryBudget()
    fail = False

    @retry(budget=budget, sleep=lambda s: None)
    def call() -> None:
        if fail:
            raise QuotaExceeded()

    for _ in range(1000):
        call()
    fail = True
    before = budget.retries
    for _ in range(200):
        with pytest.raises(QuotaExceeded):
            call()
    assert budget.retries - before <= 10 + 0.1 * 200 + 1


def test_retry_after_is_honoured_or_the_retry_given_up():
    """A Retry-After under the cap becomes the wait; one over the cap is not retried at all."""
    waits: list[float] = []
    errs = [QuotaExceeded(retry_after_s=2.0), QuotaExceeded(retry_after_s=60.0)]

    @retry(budget=RetryBudget(), sleep=waits.append, rng=lambda: 0.0, max_delay_s=5)
    def call() -> None:
        raise errs.pop(0)

    with pytest.raises(QuotaExceeded) as info:
        call()
    assert waits == [2.0]
    assert info.value.retry_after_s == 60.0


def test_an_edit_hidden_behind_a_duplicate_key_is_caught(tmp_path: Path):
    """A second "result" key placed before the real one would be ignored by JSON readers."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, emit=False)
    for i in range(3):
        log.record(actor="u", action="a", target=str(i), result="denied")
    lines = path.read_text().splitlines()
    lines[1] = '{"result":"ok",' + lines[1][1:]
    path.write_text("\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok
    assert result.line == 2


def test_a_partial_last_line_stops_appends_with_a_clear_error(tmp_path: Path):
    """After a crash mid-write, record() refuses with a message naming the file."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, emit=False)
    log.record(actor="u", action="a", target="t", result="ok")
    with path.open("a") as handle:
        handle.write('{"seq": 2, "actor": "u"')
    with pytest.raises(AuditLogDamaged, match=r"audit\.jsonl"):
        log.record(actor="u", action="a", target="t", result="ok")


def test_audit_failures_never_cost_the_span_its_outcome(tmp_path: Path, spans: CapturedSpans):
    """A broken audit log: the span still records the error; the violation audits once."""
    path = tmp_path / "audit.jsonl"
    path.write_text('{"broken')
    set_default(AuditLog(path, emit=False))
    try:

        @traced("inner")
        def inner() -> None:
            raise PolicyViolation("nope")

        @traced("outer")
        def outer() -> None:
            inner()

        with pytest.raises(PolicyViolation):
            outer()
    finally:
        set_default(None)
    assert spans.attributes("inner")["error.type"] == "SAFETY_VIOLATION"
    assert spans.attributes("outer")["blameset.final_status"] == "blocked"


def test_violations_are_audited_once_through_nested_spans(tmp_path: Path, spans: CapturedSpans):
    """One violation passing through three spans makes one audit record."""
    log = AuditLog(tmp_path / "audit.jsonl", emit=False)
    set_default(log)
    try:

        @traced.step("c")
        def c() -> None:
            raise PolicyViolation("x")

        @traced.step("b")
        def b() -> None:
            c()

        @traced("a")
        def a() -> None:
            b()

        with request_context(actor="u1"), pytest.raises(PolicyViolation):
            a()
    finally:
        set_default(None)
    records = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert [r["action"] for r in records] == ["c"]


def test_audit_verify_names_a_line_that_is_not_utf8(tmp_path: Path):
    """Invalid bytes: exit 1 naming the line, no traceback."""
    path = tmp_path / "audit.jsonl"
    AuditLog(path, emit=False).record(actor="u", action="a", target="t", result="ok")
    with path.open("ab") as handle:
        handle.write(b"\xff\xfe not text\n")
    result = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == 1
    assert "line 2" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "text",
    [
        "每次写操作都要幂等键；日志记录trace_id和version_set；重试预算为3次。",
        "Writes carry idempotency keys; logs carry trace IDs and the version sets; retry budgets.",
        "幂等 key 由 action_id 构成；trace_id；version_set；重试次数预算 2。",
    ],
)
def test_the_gate_passes_realistic_documents(tmp_path: Path, text: str):
    """Terms run into Chinese text, plurals, and common Chinese phrasings all count."""
    doc = tmp_path / "design.md"
    doc.write_text(text, encoding="utf-8")
    assert check_design(doc).ok, [r.name for r in check_design(doc).missing]


def test_memory_store_forgets_expired_records():
    """Expired idempotency records are swept, so the store does not grow without bound."""
    store = MemoryStore()
    for i in range(5000):
        store.begin(f"k{i}", "o", lease_s=1, now=1000.0 + i * 0.001)
    store.begin("late", "o", lease_s=1, now=10_000.0)
    for i in range(4096):
        store.begin(f"m{i}", "o", lease_s=1, now=10_000.0)
    assert len(store._records) < 5000


def test_sqlite_in_memory_is_refused_with_a_reason():
    """ ":memory:" cannot be shared between threads or processes: say so."""
    with pytest.raises(ValueError, match="'memory' store"):
        SQLiteStore(":memory:")


def test_retry_budget_and_threads_with_a_real_lock():
    """The bucket is safe across threads: spent tokens never exceed what was deposited."""
    budget = RetryBudget(ratio=0.5, min_tokens=0, max_tokens=1000)

    def worker() -> None:
        for _ in range(1000):
            budget.record_call()
            budget.try_spend()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.retries <= 0.5 * budget.calls
