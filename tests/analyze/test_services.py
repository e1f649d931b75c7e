"""Requests that cross services (docs/rollup.md): a gateway and a worker, each with its own
version set, joined in one trace by W3C trace context. The request is rolled up with the
worker's version set qualified by its name, the worker's own time gets columns of its own, and
a change in the worker under an unchanged gateway is attributed to the worker's component."""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bench.scenarios import generate
from blameset.analyze import attribute, open_spans, requests
from blameset.analyze._requests import traffic
from blameset.instrument import VersionSet, _config, _runtime, traced
from blameset.instrument.testing import CapturedSpans, FakeClock

GATEWAY = VersionSet(code="9a8b7c6", prompt="answer@v2")
WORKER_V1 = VersionSet(code="w1a2b3c", index="docs@2026-10")
WORKER_V2 = VersionSet(code="w9f8e7d", index="docs@2026-10")


class Services:
    """A gateway and a worker as two configured blameset processes would be (one State each,
    in force while that service runs), calling each other through a W3C traceparent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.captured: list[CapturedSpans] = []
        self.gateway = self._state("gateway", GATEWAY)
        self.workers = {WORKER_V1: self._state("worker", WORKER_V1)}
        self.workers[WORKER_V2] = self._state("worker", WORKER_V2)

    def _state(self, service: str, versions: VersionSet) -> _runtime.State:
        captured = CapturedSpans()
        self.captured.append(captured)
        options = _config.Options(
            service=service, versions=versions, exporter=captured, batch=False, clock=self.clock
        )
        return _config.build_state(options)

    def run(self, state: _runtime.State, work: Callable[[], None], carrier: dict[str, str]) -> None:
        """Run ``work`` as ``state``'s service would on receiving ``carrier``: in a context of
        its own (no span or recorder of the caller's process), the caller's trace continued."""

        def serve() -> None:
            previous = _runtime.install(state)
            token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
            try:
                work()
            finally:
                otel_context.detach(token)
                _runtime.install(previous)

        contextvars.Context().run(serve)

    def close(self) -> None:
        for state in (self.gateway, *self.workers.values()):
            state.shutdown()

    def dump(self, path: Path) -> Path:
        spans = [s for c in self.captured for s in c.as_dicts()]
        path.write_text("".join(json.dumps(s, default=str) + "\n" for s in spans))
        return path


@pytest.fixture
def services() -> Iterator[Services]:
    made = Services(FakeClock())
    yield made
    made.close()


def _serve(
    services: Services, requests: int, tool_ms: Callable[[int], tuple[VersionSet, float]]
) -> None:
    """``requests`` gateway requests a minute apart; request ``i`` reaches the worker running
    the version set and taking the tool time ``tool_ms(i)`` says."""
    clock = services.clock
    worker_version = {"vs": WORKER_V1, "ms": 0.0}

    @traced.tool("vector_search")
    def search() -> None:
        clock.advance(worker_version["ms"])  # type: ignore[arg-type]

    @traced("retrieve", route="/internal/retrieve")
    def retrieve() -> None:
        clock.advance(2)
        search()

    @traced("answer", route="/v1/answer")
    def answer() -> None:
        clock.advance(5)
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        services.run(services.workers[worker_version["vs"]], retrieve, carrier)  # type: ignore[index]
        clock.advance(20)

    for i in range(requests):
        worker_version["vs"], worker_version["ms"] = tool_ms(i)
        services.run(services.gateway, answer, {})
        clock.advance(60_000)


def test_a_request_carries_the_worker_version_set_qualified(
    services: Services, tmp_path: Path
) -> None:
    """The gateway's request holds the worker's components as worker.<c>, a version set id of
    the extended set, and the worker's own time and tool time."""
    _serve(services, 3, lambda i: (WORKER_V1, 100.0))
    table = traffic(open_spans([str(services.dump(tmp_path / "spans.jsonl"))])).requests
    assert table.height == 3
    row = table.row(0, named=True)
    expected = ";".join(
        sorted(
            [
                *GATEWAY.canonical.split(";"),
                *(f"worker.{p}" for p in WORKER_V1.canonical.split(";")),
            ]
        )
    )
    assert row["version_set"] == expected
    assert row["version_set_id"] == hashlib.sha256(expected.encode()).hexdigest()[:12]
    assert (row["version.code"], row["version.worker.code"]) == ("9a8b7c6", "w1a2b3c")
    assert row["worker.tool_ms"] == pytest.approx(100.0)
    assert row["worker.service_ms"] == pytest.approx(102.0)  # the worker's request span
    assert row["worker.error_rate"] == 0.0
    assert row["route"] == "/v1/answer"


def test_a_worker_cutover_under_an_unchanged_gateway_is_the_workers(
    services: Services, tmp_path: Path
) -> None:
    """The worker's new code makes its tool 40% slower: attribution names worker.code, in
    the worker's own tool time, and nothing of the gateway's."""
    rng = np.random.default_rng(5)
    noise = rng.lognormal(0, 0.2, 600)

    def worker(i: int) -> tuple[VersionSet, float]:
        if i < 300:
            return WORKER_V1, 100.0 * noise[i]
        return WORKER_V2, 140.0 * noise[i]

    _serve(services, 600, worker)
    result = attribute(open_spans([str(services.dump(tmp_path / "spans.jsonl"))]), seed=1)
    (episode,) = result.episodes
    assert episode.components == ["worker.code"]
    assert episode.changes == {"worker.code": ("w1a2b3c", "w9f8e7d")}
    found = {f.metric: f for f in result.findings}
    assert found["worker.tool_ms.mean"].components == ["worker.code"]
    assert found["worker.tool_ms.mean"].verdict == "regression"
    assert found["worker.tool_ms.mean"].effect == pytest.approx(1.4, rel=0.1)
    assert all(f.components == ["worker.code"] for f in result.findings)


def _findings(name: str, n: int = 8000) -> list[tuple[str, list[str], str]]:
    result = attribute(generate(name, n, seed=2), seed=2)
    return [(f.metric, f.components, f.verdict) for f in result.findings]


def test_the_bench_worker_regression_is_found_on_the_worker() -> None:
    """Seeded gateway/worker traffic, the worker's cutover +40% tool time: found, on worker.code."""
    found = _findings("worker_regression")
    assert ("worker.tool_ms.mean", ["worker.code"], "regression") in found
    assert all(components == ["worker.code"] for _, components, _ in found)


def test_requests_that_do_not_reach_the_worker_are_not_a_version_change() -> None:
    """Half the requests reach a slow worker, half not: a gateway cutover finds nothing, and
    reaching the worker or not is never compared as a version change."""
    assert _findings("worker_partial_null") == []


def test_a_gateway_and_worker_shipped_together_are_confounded() -> None:
    """The gateway's prompt and the worker's code in one release: confounded, both named."""
    found = _findings("cross_service_co_release")
    assert ("worker.tool_ms.mean", ["prompt", "worker.code"], "confounded") in found


def test_one_service_data_is_rolled_up_as_before() -> None:
    """A single service adds no qualified columns and keeps its version set ids."""
    spans = generate("prompt_regression", 500, seed=1)
    table = requests(spans.lazy()).collect()
    assert not [c for c in table.columns if c.startswith(("version.worker", "worker."))]
    ids = set(spans.filter(pl.col("span_kind") == "request")["version_set_id"])
    assert set(table["version_set_id"]) == ids
