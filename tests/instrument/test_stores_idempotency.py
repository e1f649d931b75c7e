"""The stores (one suite, three backends) and idempotency keys, across threads and processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from blameset.instrument import request_context, traced
from blameset.instrument.errors import (
    DuplicateInProgress,
    Internal,
    InvalidInput,
    QuotaExceeded,
)
from blameset.instrument.idempotency import dedupe_key, idempotent
from blameset.instrument.stores import (
    Claim,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    StoreStateLost,
    open_store,
)
from blameset.instrument.testing import CapturedSpans

WORKER = Path(__file__).with_name("idem_worker.py")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'guard.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def store(store_spec: str) -> Store:
    if store_spec == "memory":
        return MemoryStore()  # a fresh one, not the process-wide default
    return open_store(store_spec)


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


def test_first_caller_acquires_later_ones_see_running_then_done(store: Store):
    """acquired -> running for others -> done with the stored value."""
    k = key()
    assert store.begin(k, "a", lease_s=10, now=1000).status == "acquired"
    assert store.begin(k, "b", lease_s=10, now=1001).status == "running"
    assert store.complete(k, "a", b'{"ok":1}', ttl_s=60, now=1002)
    claim = store.begin(k, "b", lease_s=10, now=1003)
    assert (claim.status, claim.value) == ("done", b'{"ok":1}')


def test_an_expired_lease_passes_the_key_on(store: Store):
    """A holder that never finished loses the key at its lease's end; its late result is refused."""
    k = key()
    assert store.begin(k, "crashed", lease_s=5, now=1000).status == "acquired"
    assert store.begin(k, "next", lease_s=5, now=1004.9).status == "running"
    assert store.begin(k, "next", lease_s=5, now=1005.1).status == "acquired"
    assert not store.complete(k, "crashed", b"late", ttl_s=60, now=1006)
    assert store.complete(k, "next", b"fresh", ttl_s=60, now=1006)
    assert store.begin(k, "third", lease_s=5, now=1007).value == b"fresh"


def test_release_frees_the_key_only_for_its_owner(store: Store):
    """release() by another owner does nothing; by the owner, the next caller acquires."""
    k = key()
    store.begin(k, "a", lease_s=10, now=1000)
    store.release(k, "intruder")
    assert store.begin(k, "b", lease_s=10, now=1001).status == "running"
    store.release(k, "a")
    assert store.begin(k, "b", lease_s=10, now=1002).status == "acquired"


def test_results_expire_after_their_ttl(store: Store):
    """A stored result is served until its TTL, then the key runs again."""
    k = key()
    store.begin(k, "a", lease_s=10, now=1000)
    store.complete(k, "a", b"1", ttl_s=100, now=1000)
    assert store.begin(k, "b", lease_s=10, now=1099).status == "done"
    assert store.begin(k, "b", lease_s=10, now=1101).status == "acquired"


def test_one_key_is_acquired_once_among_racing_threads(store: Store):
    """16 threads race for one key: exactly one acquires."""
    k = key()
    statuses: list[str] = []
    start = threading.Barrier(16)

    def race(i: int) -> None:
        start.wait()
        statuses.append(store.begin(k, f"t{i}", lease_s=10, now=1000).status)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["acquired"] + ["running"] * 15


def test_open_store_specs(tmp_path: Path, redis_url: str):
    """Spec strings choose the store; a typo is a clear error."""
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store(f"sqlite:{tmp_path / 'x.db'}"), SQLiteStore)
    assert isinstance(open_store(redis_url), RedisStore)
    with pytest.raises(ValueError, match="unknown store"):
        open_store("postgres://x")


# --- the decorator ---------------------------------------------------------------------------


def test_the_work_runs_once_and_later_calls_get_the_stored_result(
    store_spec: str, spans: CapturedSpans
):
    """Same key: the effect runs once; the second call is a hit, marked on its span."""
    runs: list[str] = []
    ns = key()

    @traced("export_document")
    @idempotent(key=lambda doc: f"export:{doc}", store=store_spec, namespace=ns)
    def export(doc: str) -> dict:
        runs.append(doc)
        return {"doc": doc, "url": f"https://example.org/{doc}"}

    first = export("d1")
    second = export("d1")
    export("d2")
    assert first == second == {"doc": "d1", "url": "https://example.org/d1"}
    assert runs == ["d1", "d2"]
    hits = [s.attributes["blameset.idempotency.hit"] for s in spans.named("export_document")]
    assert hits == [False, True, False]


def test_action_id_in_context_is_the_default_key():
    """Without key=, the request's action_id keys the call; none at all is INVALID_INPUT."""
    runs = []

    @idempotent(store=MemoryStore())
    def generate_outline(topic: str) -> str:
        runs.append(topic)
        return topic.upper()

    with request_context(action_id="act-1"):
        assert generate_outline("a") == "A"
        assert generate_outline("a") == "A"
    assert runs == ["a"]
    with pytest.raises(InvalidInput, match="action_id"):
        generate_outline("b")


def test_failures_are_not_stored_unless_asked():
    """A failed first call leaves the key free; with store_failures the error is replayed."""
    attempts = []

    @idempotent(key=lambda: "k", store=MemoryStore())
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise QuotaExceeded("throttled")
        return "ok"

    with pytest.raises(QuotaExceeded):
        flaky()
    assert flaky() == "ok"
    assert len(attempts) == 2

    @idempotent(key=lambda: "k2", store=MemoryStore(), store_failures=True)
    def refused() -> str:
        attempts.append(2)
        raise QuotaExceeded("no")

    for _ in range(2):
        with pytest.raises(QuotaExceeded, match="no"):
            refused()
    assert attempts.count(2) == 1


def test_a_duplicate_during_the_first_call_gets_in_progress():
    """With wait_s=0, a duplicate arriving mid-call gets IN_PROGRESS (409) at once."""
    store = MemoryStore()
    inside = threading.Event()
    release = threading.Event()

    @idempotent(key=lambda: "busy", store=store, wait_s=0)
    def slow() -> str:
        inside.set()
        release.wait(10)
        return "done"

    first = threading.Thread(target=slow)
    first.start()
    assert inside.wait(10)
    with pytest.raises(DuplicateInProgress) as info:
        slow()
    assert info.value.to_response()["code"] == "IN_PROGRESS"
    assert info.value.http_status == 409
    release.set()
    first.join()
    assert slow() == "done"


class WatchedStore(MemoryStore):
    """A real memory store that also says when a caller was told the key is running (and so
    went to wait for it)."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.waiting = threading.Event()

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        claim = super().begin(key, owner, lease_s, now)
        if claim.status == "running":
            self.running += 1
            self.waiting.set()
        return claim


def test_a_duplicate_waits_for_the_first_call_when_allowed():
    """With wait_s, the duplicate blocks until the first finishes and returns its result."""
    store = WatchedStore()
    inside = threading.Event()
    release = threading.Event()
    runs = []

    @idempotent(key=lambda: "w", store=store, wait_s=10, poll_s=0.005)
    def slow() -> str:
        runs.append(1)
        inside.set()  # the claim is ours by now: the effect runs only once it is acquired
        release.wait(10)
        return "done"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(slow()))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=lambda: results.append(slow()))
    second.start()
    # Let the first finish only once the second was told the key is running: it is waiting.
    assert store.waiting.wait(10), "the duplicate never found the first call running"
    release.set()
    first.join()
    second.join()
    assert results == ["done", "done"]
    assert runs == [1]
    assert store.running >= 1  # the waiting path was taken, not a late read of the result


def test_dedupe_key_is_stable_and_sensitive():
    """The model-call key ignores config key order and changes with prompt, config or action."""
    a = dedupe_key("outline X", {"model": "gpt-4o", "temperature": 0.7}, "act-1")
    assert a == dedupe_key("outline X", {"temperature": 0.7, "model": "gpt-4o"}, "act-1")
    assert a != dedupe_key("outline Y", {"model": "gpt-4o", "temperature": 0.7}, "act-1")
    assert a != dedupe_key("outline X", {"model": "gpt-4o", "temperature": 0.2}, "act-1")
    assert a != dedupe_key("outline X", {"model": "gpt-4o", "temperature": 0.7}, "act-2")
    assert len(a) == 64


# --- across processes --------------------------------------------------------------------------


def _spec(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'guard.db'}"
    return str(request.getfixturevalue("redis_url"))


def _workers(
    spec: str,
    k: str,
    out: Path,
    procs: int,
    threads: int,
    lease_s: float,
    mode: str,
    overlap: int = 0,
):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    args = [spec, k, str(out), str(threads), str(lease_s), mode, str(overlap)]
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_four_processes_of_eight_threads_run_the_effect_once(backend: str, tmp_path: Path, request):
    """4 processes x 8 threads, one key: the side effect's file gets exactly one line, while
    the 31 duplicates were all waiting on the first call (it holds its claim until they are)."""
    spec = _spec(backend, tmp_path, request)
    out = tmp_path / "effects.txt"
    procs = _workers(spec, key(), out, procs=4, threads=8, lease_s=30, mode="work", overlap=31)
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert out.read_text().splitlines() == ["ran"]
    assert len(set((tmp_path / "effects.txt.waiting").read_text().split())) == 31


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_killed_holder_loses_its_lease_and_one_later_call_runs(
    backend: str, tmp_path: Path, request
):
    """SIGKILL the holder mid-call; after its lease runs out exactly one later call runs."""
    spec = _spec(backend, tmp_path, request)
    out = tmp_path / "effects.txt"
    k = key()
    (holder,) = _workers(spec, k, out, procs=1, threads=1, lease_s=1.0, mode="hang")
    # The holder prints "started" once inside the effect; end-of-file means it died first.
    said = holder.stdout.readline() if holder.stdout else ""
    assert said == "started\n", holder.stderr.read() if holder.stderr else ""
    assert out.read_text() == "started\n"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    later = _workers(spec, k, out, procs=4, threads=2, lease_s=30, mode="work")
    for p in later:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert out.read_text().splitlines() == ["started", "ran"]


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


class WatchedSQLiteStore(SQLiteStore):
    """A real SQLite store that says when a claim is asked of it, so a test can wait for that."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.asked = threading.Event()

    def begin(self, *args, **kwargs) -> Claim:
        self.asked.set()
        return super().begin(*args, **kwargs)


def test_async_idempotency_does_not_block_the_event_loop(tmp_path: Path):
    """A SQLite file locked by another writer: while the call waits for the lock, another task
    on the loop runs to completion; the call finishes once the writer lets go."""
    store = WatchedSQLiteStore(tmp_path / "guard.db")
    blocker = SQLiteStore(tmp_path / "guard.db")
    db = blocker._connection()
    db.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    @idempotent(key=lambda: "k", store=store)
    async def work() -> str:
        return "done"

    async def other() -> str:
        await asyncio.sleep(0)  # a real suspension: it needs the loop back to finish
        return "other ran"

    async def main() -> tuple[str, bool, str]:
        task = asyncio.create_task(work())
        assert await asyncio.to_thread(store.asked.wait, 30), "the call never asked for a claim"
        # The claim cannot be granted before the COMMIT below, so the call is still waiting.
        progress = await asyncio.create_task(other())
        still_waiting = not task.done()
        db.execute("COMMIT")  # the other writer lets go
        return progress, still_waiting, await task

    progress, still_waiting, result = asyncio.run(main())
    assert progress == "other ran"
    assert still_waiting, "the loop ran again only after the call had given up on the lock"
    assert result == "done"


def test_store_failures_replay_keeps_the_message():
    """A stored failure of an exception without a code replays as INTERNAL naming it."""

    @idempotent(key=lambda: "k", store=MemoryStore(), store_failures=True)
    def bad() -> None:
        raise ValueError("bad row 7")

    with pytest.raises(ValueError):
        bad()
    with pytest.raises(Internal, match="ValueError: bad row 7"):
        bad()


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


# --- a Redis that lost its data ---------------------------------------------------------------


@pytest.fixture
def flushable_redis(redis_url: str):
    """A database of the test Redis for this test alone (15, or 14 when the suite's is 15), so
    flushing it loses no other test's keys; with a client to flush it."""
    from urllib.parse import urlsplit, urlunsplit

    import redis

    parts = urlsplit(redis_url)
    db = "14" if parts.path.strip("/") == "15" else "15"
    url = urlunsplit(parts._replace(path=f"/{db}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def test_a_flushed_redis_fails_closed_instead_of_running_the_effect_again(flushable_redis):
    """After FLUSHDB every key would look new: the next call raises StoreStateLost (INTERNAL),
    saying what happened and what Redis needs, and the side effect does not run again."""
    url, client = flushable_redis
    ran: list[str] = []

    @idempotent(key=lambda doc: f"export:{doc}", store=url)
    def export(doc: str) -> str:
        ran.append(doc)
        return f"link-{doc}"

    assert export("d1") == "link-d1"
    assert export("d1") == "link-d1"  # stored
    client.flushdb()  # what a restart without persistence leaves
    with pytest.raises(StoreStateLost) as info:
        export("d1")
    assert info.value.error_code == "INTERNAL"
    assert isinstance(info.value, Internal)
    assert "lost its records" in str(info.value) and "appendonly yes" in str(info.value)
    with pytest.raises(StoreStateLost):
        export("d2")  # no key is trusted once the store has lost its state
    assert ran == ["d1"]


def test_a_store_that_kept_the_old_epoch_refuses_after_a_new_one_is_written(flushable_redis):
    """A process started after the loss writes a new epoch (it cannot know what was lost); one
    that was running before refuses, naming the changed epoch, rather than follow it."""
    url, client = flushable_redis
    before = RedisStore(url)
    assert before.begin(key(), "a", 30, 0.0).status == "acquired"
    client.flushdb()
    after = RedisStore(url)
    assert after.begin(key(), "b", 30, 0.0).status == "acquired"
    assert after.epoch != before.epoch
    with pytest.raises(StoreStateLost, match="epoch changed"):
        before.begin(key(), "a", 30, 0.0)


def test_a_flush_during_the_work_keeps_its_result_unstored_and_later_calls_refused(
    flushable_redis, caplog
):
    """Redis emptied while the work runs: the caller still gets its result, the loss is logged,
    and the repeat is refused instead of running the work a second time."""
    url, client = flushable_redis
    ran: list[int] = []

    @idempotent(key=lambda: "charge", store=url)
    def charge() -> str:
        ran.append(1)
        client.flushdb()
        return "charged"

    with caplog.at_level(logging.ERROR, logger="blameset"):
        assert charge() == "charged"
    assert "the work ran but its result was not stored" in caplog.text
    with pytest.raises(StoreStateLost):
        charge()
    assert ran == [1]


def test_a_lost_epoch_key_alone_is_enough_to_refuse(flushable_redis):
    """Losing only the epoch key (an evicting maxmemory policy) is treated as a loss too."""
    url, client = flushable_redis
    store = RedisStore(url)
    k = key()
    assert store.begin(k, "a", 30, 0.0).status == "acquired"
    client.delete(store.epoch_key)
    with pytest.raises(StoreStateLost, match="is gone"):
        store.complete(k, "a", b"1", 60, 1.0)


def test_the_lost_state_message_names_the_server_but_not_its_password():
    """The error names the Redis it is about without the password in its URL."""
    from blameset.instrument.stores import _without_password

    assert _without_password("redis://:hunter2@cache:6379/0") == "redis://cache:6379/0"
    assert _without_password("rediss://u:p@h/1") == "rediss://h/1"
    assert _without_password("redis://h:6379/0") == "redis://h:6379/0"
