"""Per-call overhead of blameset's decorators against a bare call and a raw OpenTelemetry span.

Cases (all in one process, ns per call = median of several rounds of N calls): a bare function,
a raw OTel span with 6 attributes, ``@traced`` requests with the full contract, an LLM span with
``record_usage`` (genai-prices and a user price override), telemetry off, and async variants.
Spans go through a BatchSpanProcessor to an exporter that drops them.

Run by hand, not in CI:  .venv/bin/python bench/overhead.py [--rounds 7] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

# configure() builds its BatchSpanProcessor with the SDK default queue size, which this variable
# sets. The default (2048) fills up within a round; a full queue drops spans, which makes them
# cheaper and the comparison unfair. Must be set before any BatchSpanProcessor is built.
QUEUE_SIZE = 2**16
os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(QUEUE_SIZE)

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from blameset import instrument  # noqa: E402
from blameset.instrument import VersionSet, traced  # noqa: E402

MODEL = "gpt-4o-2024-08-06"
NULL = contextlib.nullcontext()
Runner = Callable[[int], int]  # runs n calls, returns the elapsed ns of the timed part


class DropExporter(SpanExporter):
    """Drops every span; only counts them, to check that the queue never overflowed."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def loop(fn: Callable[[], Any], request: bool = False) -> Runner:
    """Time n calls of fn; ``request`` runs them inside one request_context (tenant, action)."""

    def run(n: int) -> int:
        with instrument.request_context(tenant="acme", action_id="a-1") if request else NULL:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fn()
            return time.perf_counter_ns() - t0

    return run


def async_loop(afn: Callable[[], Any]) -> Runner:
    """Time n ``await afn()`` inside one asyncio.run, within a request_context."""

    async def body(n: int) -> int:
        with instrument.request_context(tenant="acme", action_id="a-1"):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                await afn()
            return time.perf_counter_ns() - t0

    return lambda n: asyncio.run(body(n))


def measure(
    name: str,
    run: Runner,
    *,
    rounds: int,
    target_s: float,
    flush: Callable[[], object] = lambda: None,
    exporter: DropExporter | None = None,
    spans_per_call: int = 1,
) -> float:
    """Median ns/call over ``rounds`` rounds of N calls, N sized so a round takes ~target_s."""
    run(16)  # first-call costs (lazy imports, caches) stay out of the calibration
    n = 64
    while (elapsed := run(n)) < 20_000_000:
        n *= 4
    n = max(1, int(n * target_s * 1e9 / elapsed))
    if exporter is not None:  # never let more spans pile up in one round than the queue holds
        n = min(n, QUEUE_SIZE // (2 * spans_per_call))
    flush()
    run(n)  # warm-up round
    flush()
    before = exporter.count if exporter is not None else 0
    samples: list[float] = []
    for _ in range(rounds):
        samples.append(run(n) / n)
        flush()  # empty the queue between rounds, outside the timed part
    median = statistics.median(samples)
    spread = (max(samples) - min(samples)) / median * 100
    print(f"  {name:<28} {median:>10.0f} ns  (N={n}, min {min(samples):.0f}, spread {spread:.0f}%)")
    expected = rounds * n * spans_per_call
    if exporter is not None and exporter.count - before != expected:
        print(f"  WARNING {name}: {exporter.count - before} of {expected} spans exported (drops?)")
    return median


def paired(
    run_a: Runner,
    flush_a: Callable[[], object],
    run_b: Runner,
    flush_b: Callable[[], object],
    rounds: int,
) -> tuple[float, float]:
    """Medians over rounds of (b / a): the caller's time of the timed part, and the process's
    CPU time of the part and its flush (every thread: the export thread's scrubbing included,
    which the caller's time sees only as it contends for the GIL), the two cases run back to
    back in each round.

    Which of the two runs first alternates from round to round: the one that runs second meets
    the first's garbage and its export thread still draining (the flush returns when the queue
    is empty, not when the collector and the allocator have settled), and always putting the
    same case second moved this ratio by up to 0.3x between runs of the same build. Each run
    starts from a collected heap: where the cyclic collector's full passes fell (they scan the
    whole heap, genai-prices' tables and the SDK included) decided single rounds, whose ratios
    spread from 0.97x to 1.5x for one build without it and 1.15x to 1.35x with it."""
    n = 4000

    def one(run: Runner, flush: Callable[[], object]) -> tuple[int, int]:
        gc.collect()
        cpu = time.process_time_ns()
        timed = run(n)
        flush()
        return timed, time.process_time_ns() - cpu

    walls, cpus = [], []
    for i in range(max(rounds, 5) * 4):
        if i % 2 == 0:
            a, b = one(run_a, flush_a), one(run_b, flush_b)
        else:
            b = one(run_b, flush_b)
            a = one(run_a, flush_a)
        walls.append(b[0] / a[0])
        cpus.append(b[1] / a[1])
    return statistics.median(walls), statistics.median(cpus)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per case")
    parser.add_argument("--quick", action="store_true", help="3 short rounds per case")
    args = parser.parse_args(argv)
    rounds, target_s = (3, 0.05) if args.quick else (args.rounds, 0.3)
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}, {os.cpu_count()} cpus; {rounds} rounds of ~{target_s}s per case"
    )
    print("note: this machine is noisy; compare ratios of medians, not absolute ns.")
    res: dict[str, float] = {}

    def case(name: str, run: Runner, **opts: Any) -> None:
        res[name] = measure(name, run, rounds=rounds, target_s=target_s, **opts)

    def f() -> int:
        return 1

    case("bare", loop(f))

    raw_exporter = DropExporter()
    provider = TracerProvider()
    # Same batch settings as configure(), with an explicit large queue (see QUEUE_SIZE).
    bsp = BatchSpanProcessor(raw_exporter, max_queue_size=QUEUE_SIZE, schedule_delay_millis=1000)
    provider.add_span_processor(bsp)
    tracer = provider.get_tracer("bench")

    def raw() -> int:
        with tracer.start_as_current_span("op") as s:
            s.set_attribute("app.tenant", "acme")
            s.set_attribute("app.action", "a-1")
            s.set_attribute("app.tokens", 1200)
            s.set_attribute("app.retries", 0)
            s.set_attribute("app.temperature", 0.7)
            s.set_attribute("app.cached", False)
            return 1

    case("raw_otel", loop(raw), flush=provider.force_flush, exporter=raw_exporter)

    def setup(**prices: Any) -> dict[str, Any]:
        """configure() the full contract to a dropping exporter; the kwargs measure() needs."""
        versions = VersionSet(code="3f2a91c", model=MODEL, prompt="outline@v4", config="t0.7")
        exporter = DropExporter()
        instrument.configure(service="bench", version_set=versions, exporter=exporter, **prices)
        # configure() imports genai-prices on a background thread (~0.2 s); wait for it here so
        # it does not compete for the GIL with the first measured case.
        import genai_prices  # noqa: F401

        return {"flush": instrument.force_flush, "exporter": exporter}

    pipeline = setup()

    @traced("op")
    def op() -> int:
        return 1

    @traced.llm(model=MODEL, provider="openai")
    def chat() -> int:
        instrument.record_usage(input_tokens=1200, output_tokens=300)
        return 1

    @traced("req")
    def req() -> int:
        return chat()

    async def abare() -> int:
        return 1

    aop = traced("op")(abare)

    case("traced_request", loop(op, request=True), **pipeline)
    # The ratio that has a target, measured again with the two cases in alternating rounds, so
    # a noisy stretch of the machine hits both sides alike: median of the per-round ratios.
    paired_ratio, paired_cpu = paired(
        loop(raw), provider.force_flush, loop(op, request=True), instrument.force_flush, rounds
    )
    provider.shutdown()
    case("async_bare", async_loop(abare))
    case("traced_async", async_loop(aop), **pipeline)
    case("traced_llm_usage", loop(req, request=True), spans_per_call=2, **pipeline)
    pipeline = setup(prices={MODEL: {"input_mtok": 2.5, "output_mtok": 10.0}})
    case("traced_llm_usage[override]", loop(req, request=True), spans_per_call=2, **pipeline)
    # Sampled out: the span is a no-op, but roll-ups and pricing still run (sampling drops
    # spans, not money); this is the cheap path a 1% sampler puts most calls on.
    instrument.configure(
        service="bench",
        version_set=VersionSet(code="3f2a91c"),
        exporter=DropExporter(),
        sampler="always_off",
    )
    case("traced_sampled_out", loop(op, request=True))
    instrument.configure(exporter="none")
    case("telemetry_off", loop(op))

    print(f"\n{'case':<28} {'ns/call (median)':>16}")
    for name, ns in res.items():
        print(f"{name:<28} {ns:>16.0f}")
    ratio = res["traced_request"] / res["raw_otel"]
    off = res["telemetry_off"] - res["bare"]
    llm, llm_override = res["traced_llm_usage"], res["traced_llm_usage[override]"]
    print(f"\ntraced_request / raw_otel   {ratio:9.2f} x   (medians of separate runs)")
    print(
        f"  same, alternating rounds  {paired_ratio:9.2f} x   target <= 1.25  "
        f"{verdict(paired_ratio <= 1.25)}"
    )
    print(f"  CPU, all threads, flushed {paired_cpu:9.2f} x   (info: with the export thread)")
    print(f"telemetry_off - bare        {off:9.0f} ns  target <= 1000  {verdict(off <= 1000)}")
    print(f"traced_llm_usage / raw_otel {llm / res['raw_otel']:9.2f} x   (info)")
    print(
        f"sampled out / raw_otel      {res['traced_sampled_out'] / res['raw_otel']:9.2f} x   (info)"
    )
    print(f"LLM span + genai-prices     {llm - res['traced_request']:9.0f} ns  (llm - request)")
    print(f"LLM span + price override   {llm_override - res['traced_request']:9.0f} ns")
    print(f"genai-prices pricing alone  {llm - llm_override:9.0f} ns  (llm - override)")
    print(f"traced_async - async_bare   {res['traced_async'] - res['async_bare']:9.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
