"""Shared fixtures: an in-memory span pipeline with a hand-moved clock and sequential ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from blameset.instrument import VersionSet
from blameset.instrument.testing import CapturedSpans, FakeClock, SequentialIds, capture_spans

VS = VersionSet(code="3f2a91c", model="gpt-4o-2024-08-06", prompt="outline@v4", config="t0.7")


@pytest.fixture(autouse=True, scope="session")
def _spill_dir_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing a test spills may land in the user's cache folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BLAMESET_SPILL_DIR", str(tmp_path_factory.mktemp("spill")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_context_leaks() -> Iterator[None]:
    """Every test must leave no span current behind it: a leak would parent the next test's."""
    yield
    from opentelemetry import trace

    from blameset.instrument import tracing

    assert not trace.get_current_span().get_span_context().is_valid, "a span was left current"
    assert tracing.current_recorder() is None, "a blameset recorder was left current"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spans(clock: FakeClock) -> Iterator[CapturedSpans]:
    with capture_spans(version_set=VS, clock=clock, id_generator=SequentialIds()) as captured:
        yield captured


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server: BLAMESET_TEST_REDIS_URL (.ci/run starts one), else one started here
    from Debian's redis-server on a free port; skipped only outside CI when neither exists."""
    import os
    import shutil
    import socket
    import subprocess

    url = os.environ.get("BLAMESET_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide redis-server (see .ci/run)")
        pytest.skip("no redis-server here; .ci/run installs it")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    # Redis says when it listens: read its log up to that line (EOF means it exited at start),
    # then keep draining it on a thread so a full pipe never stalls the server.
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    else:
        proc.wait(10)
        pytest.fail(f"redis-server exited at start (code {proc.returncode})")
    import threading

    threading.Thread(target=proc.stdout.read, name="redis-log", daemon=True).start()
    import redis

    redis.Redis(port=port).ping()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def restore_configuration() -> Iterator[None]:
    """Put back the telemetry configuration, the log handlers and the root level a test changed.

    The test runs inside ``configured()`` (telemetry off until it configures its own), which shuts
    down whatever the test configured and puts the previous configuration back, still open."""
    import logging

    from blameset import instrument

    root_level = logging.getLogger().level
    with instrument.configured(exporter="none"):
        yield
    for name in ("app", None):
        target = logging.getLogger(name)
        for handler in list(target.handlers):
            if isinstance(handler, instrument.logs.BlamesetLogHandler):
                target.removeHandler(handler)
    logging.getLogger("app").setLevel(logging.NOTSET)
    logging.getLogger().setLevel(root_level)


NOON = 1_772_366_400.0  # 2026-03-01 12:00:00 UTC


class HandClock:
    """Seconds since the epoch, moved by hand (budgets and idempotency take float seconds)."""

    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["memory", "sqlite", "redis"])
def ledger_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The same budget tests against each store: a fresh memory store, a SQLite file, Redis."""
    from blameset.instrument.stores import MemoryStore

    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return f"sqlite:{tmp_path_factory.mktemp('ledger') / 'budget.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One `blameset demo` run (1200 requests, seed 7) shared by the demo tests and the notebooks,
    which explore the demo's dataset as a newcomer would."""
    from blameset.cli.demo import run
    from blameset.instrument import _runtime  # only to check that the run leaked nothing

    before = _runtime.current_state()
    result = run(tmp_path_factory.mktemp("demo"), requests=1200, seed=7)
    assert _runtime.current_state() is before, "the demo left its telemetry configuration behind"
    return result
