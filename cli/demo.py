"""`blameset demo`: a small AI writing assistant, instrumented the way a user instruments theirs,
serves two days of seeded traffic in simulated time; then the spans are ingested, reported and
attributed, and the HTML report is written. A newcomer's first run, and the notebooks' data.

The service (:class:`WriterService`) has the book's three actions: generate outline
(``/v1/outline``), expand paragraph (``/v1/expand``) and export document (``/v1/export``). It uses
the instrument package as documented: ``@traced`` request spans, a streaming ``@traced.llm`` call
that records usage at the end as providers report it, ``@traced.tool`` tools, ``@retry`` by the
error taxonomy, a per-tenant :class:`~instrument.budget.Budget` with a degraded fallback, an
``@idempotent`` export (SQLite store), an :class:`~instrument.audit.AuditLog`, and an asyncio work
queue carrying :func:`~instrument.stamp` to a worker that runs under :func:`~instrument.dequeued`.

Time is simulated: the event loop runs on a virtual clock (:class:`SimulatedLoop`) that jumps to
the next timer instead of waiting, and the same clock is given to ``instrument.configure``, the
budgets and the idempotency store. ``asyncio.sleep(0.4)`` in the stand-in LLM is 0.4 simulated
seconds and no real time, so two days of traffic take seconds, and a seed fixes every span.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import random
import selectors
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from blameset.analyze.attribute import Attribution, Finding
    from blameset.analyze.ingest import IngestSummary
    from blameset.analyze.report import Report

__all__ = [
    "DEFAULT_OUT",
    "DemoResult",
    "SimulatedLoop",
    "WriterService",
    "describe_finding",
    "headline",
    "main",
    "plan_traffic",
    "run",
]

T = TypeVar("T")

DEFAULT_OUT = Path("blameset-demo")
T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday; fixed, so a seed gives the same spans
DAYS = 2
CUTOVER_H = 24.0  # prompt outline@v3 -> outline@v4
CANARY_H = (6.0, 18.0)  # gpt-4o-mini on CANARY_SHARE of the traffic
CANARY_SHARE = 0.10
GPT_4O = "gpt-4o-2024-08-06"
GPT_4O_MINI = "gpt-4o-mini-2024-07-18"
PROVIDER = "openai"
BASE_VERSIONS = {"code": "3f2a91c", "model": GPT_4O, "prompt": "outline@v3", "config": "t0.7"}

# The demo's own files in OUT (replaced on a rerun; nothing else there is touched).
SPANS_FILE = "spans.jsonl"
LOGS_FILE = "spans.logs.jsonl"
DATASET_DIR = "dataset"
HTML_FILE = "report.html"
AUDIT_FILE = "audit.jsonl"
IDEMPOTENCY_FILE = "idempotency.db"
SPILL_DIR = "spill"
_OWN = (SPANS_FILE, LOGS_FILE, DATASET_DIR, HTML_FILE, AUDIT_FILE, SPILL_DIR)
_OWN_DB = (IDEMPOTENCY_FILE,)


# ---------------------------------------------------------------------------------------------
# simulated time


class _SimulatedSelector(selectors.BaseSelector):
    """A real selector (the loop's self-pipe, thread hand-offs) whose waits for timers take no
    real time: with nothing ready, ``select(timeout)`` moves the simulated clock to the timer."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0  # simulated seconds since the start
        self.threads = 0  # executor calls in flight (the idempotency store runs in threads)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.threads:
            # Work in a thread takes no simulated time: wait for it for real before any timer
            # fires, so what runs next never depends on how fast a thread was.
            return self._real.select(0 if timeout == 0 else None)
        if timeout is None:  # no timer and nothing ready: only the outside world can wake us
            return self._real.select(None)
        # Only executor threads write to the loop here (their count is zero now, and the loop
        # read their wake-up before their result): nothing to poll, jump to the next timer.
        self.now += timeout
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class SimulatedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on simulated time: ``loop.time()`` is simulated seconds, timers fire in
    order without waiting, and calls run in threads (``asyncio.to_thread``) take no simulated time.

    ``clock_ns()`` (for ``instrument.configure(clock=...)``) and ``clock_s()`` (budgets,
    idempotency) read the same clock as epoch time from ``start``."""

    def __init__(self, start: datetime = T0) -> None:
        self._sim = _SimulatedSelector()
        super().__init__(self._sim)
        self._start_ns = int(start.timestamp()) * 1_000_000_000

    def time(self) -> float:
        return self._sim.now

    def clock_ns(self) -> int:
        return self._start_ns + round(self._sim.now * 1e9)

    def clock_s(self) -> float:
        return self._start_ns / 1e9 + self._sim.now

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._sim.threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self._sim.threads -= 1


def _now() -> float:
    """Simulated seconds since the start of the demo's traffic."""
    return asyncio.get_running_loop().time()


# ---------------------------------------------------------------------------------------------
# the traffic plan

_TENANTS = (  # tenant, tier, share of traffic
    ("acme", "pro", 0.22),
    ("globex", "pro", 0.17),
    ("initech", "pro", 0.13),
    ("umbrella", "team", 0.12),
    ("hooli", "team", 0.10),
    ("stark", "team", 0.08),
    ("free-trial-1", "free", 0.10),
    ("free-trial-2", "free", 0.08),
)
_ACTIONS = (("outline", 0.32), ("expand", 0.52), ("export", 0.16))
_TOPICS = (
    "observability for LLM apps",
    "cost attribution in AI backends",
    "idempotency keys in practice",
    "retry budgets and backoff",
    "prompt versioning",
    "streaming UX for chat",
    "evaluating RAG pipelines",
    "budget guard rails",
    "tracing async workers",
    "canary releases for models",
)


@dataclass(frozen=True, slots=True)
class Request:
    """One simulated client request: who, what, when, and the seed of its own randomness."""

    index: int
    at: float  # simulated seconds since T0
    action: str
    tenant: str
    tier: str
    user: str
    action_id: str
    doc_id: str
    topic: str
    prompt: str
    model: str
    seed: int


def plan_traffic(requests: int, seed: int) -> list[Request]:
    """Arrival times (a diurnal curve over two days), actions, tenants, the prompt cutover in the
    middle, the model canary on day one, and a few client retries of exports (same action_id)."""
    rng = random.Random(seed)
    span_s = DAYS * 86_400.0
    times: list[float] = []
    while len(times) < requests:  # thinning: busy afternoons (UTC), quiet nights
        t = rng.random() * span_s
        hour = (t / 3600.0) % 24
        if rng.random() * 1.8 < 1.0 + 0.8 * math.sin(2 * math.pi * (hour - 8.0) / 24.0):
            times.append(t)
    times.sort()
    tenants, tenant_w = [t[:2] for t in _TENANTS], [t[2] for t in _TENANTS]
    actions, action_w = [a[0] for a in _ACTIONS], [a[1] for a in _ACTIONS]
    plan: list[Request] = []
    for t in times:
        (tenant, tier), action = (
            rng.choices(tenants, tenant_w)[0],
            rng.choices(actions, action_w)[0],
        )
        hour = t / 3600.0
        canary = CANARY_H[0] <= hour < CANARY_H[1] and rng.random() < CANARY_SHARE
        request = Request(
            index=len(plan),
            at=t,
            action=action,
            tenant=tenant,
            tier=tier,
            user=f"{tenant}-u{rng.randrange(12)}",
            action_id=f"act-{rng.getrandbits(64):016x}",
            doc_id=f"doc-{rng.randrange(100_000):05d}",
            topic="" if action == "outline" and rng.random() < 0.008 else rng.choice(_TOPICS),
            prompt="outline@v4" if hour >= CUTOVER_H else "outline@v3",
            model=GPT_4O_MINI if canary else GPT_4O,
            seed=rng.getrandbits(63),
        )
        plan.append(request)
        if action == "export" and rng.random() < 0.06:  # the client retries: a double click
            plan.append(replace(request, at=t + rng.uniform(0.3, 2.5)))
    plan.sort(key=lambda r: r.at)
    return [replace(r, index=i) for i, r in enumerate(plan)]


# ---------------------------------------------------------------------------------------------
# the stand-in provider: streams tokens with realistic timing, reports usage at the end


@dataclass(frozen=True, slots=True)
class Delta:
    """A streamed piece of text."""

    text: str


@dataclass(frozen=True, slots=True)
class FinalUsage:
    """The last chunk of a stream: the provider's usage report."""

    input_tokens: int
    output_tokens: int
    model: str


_MODELS = {
    # model: (median TTFT s, ms per output token range)
    GPT_4O: (0.42, (14.0, 20.0)),
    GPT_4O_MINI: (0.28, (8.0, 12.0)),
}
_PREFILL_S_PER_TOKEN = 0.00004  # a longer prompt takes longer to the first token
_CHUNK_TOKENS = 16  # tokens per streamed delta after the first (keeps the event loop light)

_sim_rng: contextvars.ContextVar[random.Random] = contextvars.ContextVar("demo_rng")
"""The randomness of the simulated request being served (set by the traffic driver)."""


def count_tokens(text: str) -> int:
    """The usual rule of thumb: four characters a token."""
    return max(1, len(text) // 4)


class StandInProvider:
    """A chat-completions API stand-in. ``stream`` sleeps (simulated) for time to first token,
    then streams deltas at the model's speed, then reports usage; or fails as upstreams do."""

    async def stream(
        self, model: str, messages: list[dict[str, str]], max_tokens: int
    ) -> AsyncIterator[Delta | FinalUsage]:
        from blameset.instrument.errors import QuotaExceeded, SafetyViolation, UpstreamTimeout

        rng = _sim_rng.get()
        input_tokens = sum(count_tokens(m["content"]) for m in messages)
        ttft_median, tpot_range = _MODELS[model]
        fault = rng.random()
        if fault < 0.012:
            await asyncio.sleep(10.0)  # the client's read timeout
            raise UpstreamTimeout(f"{model}: no first token within 10 s")
        if fault < 0.018:
            await asyncio.sleep(0.05)
            raise QuotaExceeded(f"{model}: 429 rate limited", retry_after_s=1.0)
        kind = messages[-1].get("name", "")
        if kind == "expand" and fault > 0.997:
            await asyncio.sleep(0.3)
            raise SafetyViolation(f"{model}: content filter tripped on the paragraph")
        wanted = {"outline": (350, 80), "expand": (650, 150), "summary": (60, 15)}[kind]
        output_tokens = int(min(max_tokens, max(8, rng.gauss(*wanted))))
        ttft = ttft_median * rng.lognormvariate(0.0, 0.35) + _PREFILL_S_PER_TOKEN * input_tokens
        tpot = rng.uniform(*tpot_range) / 1000.0
        await asyncio.sleep(ttft)
        yield Delta("The ")
        sent = 1
        while sent < output_tokens:
            n = min(_CHUNK_TOKENS, output_tokens - sent)
            await asyncio.sleep(n * tpot * rng.uniform(0.8, 1.25))
            yield Delta("lorem " * n)
            sent += n
        yield FinalUsage(input_tokens, output_tokens, model)


# ---------------------------------------------------------------------------------------------
# the service, as a user writes it


_SYSTEM_V3 = (
    "You are a writing assistant for technical authors. Answer in the author's language. "
    "Prefer short sentences, concrete examples and active voice. Cite the sources you are given "
    "by their number; never invent a source. Keep headings under eight words. "
) * 16  # ~900 tokens
_STYLE_GUIDE_V4 = (
    "Style guide, section by section, with three worked examples of good and bad outlines, "
    "paragraph expansions and summaries, each annotated with why it works for the reader. "
) * 33  # v4 adds ~1,360 tokens
PROMPTS = {"outline@v3": _SYSTEM_V3, "outline@v4": _SYSTEM_V3 + _STYLE_GUIDE_V4}


class WriterService:
    """The writing assistant: three actions over a stand-in LLM, two tools, a publish queue.

    Everything is decorated when the service is built (decoration does its work once), with the
    stores and files of ``out``."""

    def __init__(
        self, out: Path, clock_s: Callable[[], float], free_usd_per_day: float = 1.6
    ) -> None:
        from blameset.instrument import (
            QueueStamp,
            RetryBudget,
            dequeued,
            idempotent,
            record_usage,
            retry,
            stamp,
            traced,
        )
        from blameset.instrument.audit import AuditLog
        from blameset.instrument.budget import Budget, degrade
        from blameset.instrument.stores import MemoryStore

        self.provider = StandInProvider()
        self.audit = AuditLog(out / AUDIT_FILE)
        # This run's own store ("memory" is one per process: a second run would see this one's
        # spend); a service on several hosts would give "sqlite:PATH" or "redis://...".
        budget_store = MemoryStore()
        self.budgets = {  # per tier; the book's limits for paying tenants
            "pro": Budget(
                budget_store, tenant_per_minute_usd=1.0, tenant_per_day_usd=10.0, clock=clock_s
            ),
            "team": Budget(
                budget_store, tenant_per_minute_usd=1.0, tenant_per_day_usd=10.0, clock=clock_s
            ),
            "free": Budget(
                budget_store,
                tenant_per_minute_usd=0.10,
                tenant_per_day_usd=free_usd_per_day,
                clock=clock_s,
            ),
        }
        self.jobs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker_rng = random.Random(0)

        # -- the LLM call: one traced streaming function per model (the model is fixed on the span)
        def llm_call(model: str) -> Callable[..., AsyncIterator[str | float]]:
            @traced.llm(model=model, provider=PROVIDER)
            async def stream_completion(
                messages: list[dict[str, str]], max_tokens: int
            ) -> AsyncIterator[str | float]:
                async for chunk in self.provider.stream(model, messages, max_tokens):
                    if isinstance(chunk, FinalUsage):
                        cost = record_usage(
                            input_tokens=chunk.input_tokens,
                            output_tokens=chunk.output_tokens,
                            model=chunk.model,
                        )
                        yield cost or 0.0
                    else:
                        yield chunk.text

            return stream_completion

        streams = {model: llm_call(model) for model in _MODELS}
        retry_rng = random.Random(1)

        @retry(budget=RetryBudget(), rng=retry_rng.random)
        async def complete(
            model: str, messages: list[dict[str, str]], max_tokens: int
        ) -> tuple[str, float]:
            """Stream a completion to the end (the client would render it as it arrives)."""
            parts: list[str] = []
            cost = 0.0
            async for item in streams[model](messages, max_tokens):
                if isinstance(item, str):
                    parts.append(item)
                else:
                    cost = item
            return "".join(parts), cost

        async def generate(req: Request, kind: str, context: str, max_tokens: int) -> str:
            """Reserve the call's upper cost for the tenant, call the model, settle the actual."""
            messages = [
                {"role": "system", "content": PROMPTS[req.prompt]},
                {"role": "user", "content": context, "name": kind},
            ]
            budget = self.budgets[req.tier]
            estimate = budget.estimate(
                req.model, sum(count_tokens(m["content"]) for m in messages), max_tokens, PROVIDER
            )
            with budget.reserve(tenant=req.tenant, estimate_usd=estimate) as hold:
                text, cost = await complete(req.model, messages, max_tokens)
                hold.settle(actual_usd=cost)
            return text

        # -- tools
        @traced.tool("search_sources")
        async def search_sources(query: str, k: int) -> list[str]:
            rng = _sim_rng.get()
            await asyncio.sleep(0.06 + rng.lognormvariate(-2.0, 0.6))
            return [f"[{i + 1}] {query}: " + "finding " * rng.randint(60, 140) for i in range(k)]

        @traced.tool("render_document")
        async def render_document(doc_id: str, summary: str) -> int:
            rng = _sim_rng.get()
            await asyncio.sleep(0.25 + rng.lognormvariate(-0.7, 0.5))
            return rng.randint(2, 40)  # pages

        # -- degraded paths: answer without the model when the budget says no
        async def template_outline(req: Request) -> str:
            sources = await search_sources(req.topic, 3)
            return f"Outline (template): intro, {len(sources)} sources, conclusion"

        async def quote_sources(req: Request) -> str:
            sources = await search_sources(req.topic, 2)
            return "Relevant sources (no generation today): " + " ".join(s[:40] for s in sources)

        @degrade(template_outline)
        async def write_outline(req: Request) -> str:
            sources = await search_sources(req.topic, 4)
            return await generate(req, "outline", f"Topic: {req.topic}\n" + "\n".join(sources), 600)

        @degrade(quote_sources)
        async def write_paragraph(req: Request) -> str:
            rng = _sim_rng.get()
            sources = await search_sources(req.topic, 2)
            draft = "draft " * rng.randint(300, 900)
            return await generate(req, "expand", draft + "\n".join(sources), 1200)

        # -- the three actions (request spans)
        @traced("generate_outline", route="/v1/outline")
        async def generate_outline(req: Request) -> str:
            from blameset.instrument.errors import InvalidInput

            if not req.topic.strip():
                raise InvalidInput("topic is empty")
            with self.budgets[req.tier].request():  # tool calls and tokens of this request
                return await write_outline(req)

        @traced("expand_paragraph", route="/v1/expand")
        async def expand_paragraph(req: Request) -> str:
            with self.budgets[req.tier].request():
                return await write_paragraph(req)

        @idempotent(store=f"sqlite:{out / IDEMPOTENCY_FILE}", clock=clock_s, namespace="export")
        async def export_once(req: Request) -> dict[str, Any]:
            """The side effects (a rendered file, a published link) happen once per action_id."""
            summary = await generate(req, "summary", f"Summarise {req.doc_id} for its cover", 120)
            pages = await render_document(req.doc_id, summary)
            done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            await self.jobs.put({"stamp": stamp().to_dict(), "doc_id": req.doc_id, "done": done})
            url = await done
            return {"doc_id": req.doc_id, "pages": pages, "url": url}

        @traced("export_document", route="/v1/export")
        async def export_document(req: Request) -> dict[str, Any]:
            with self.budgets[req.tier].request():
                result: dict[str, Any] = await export_once(req)
            self.audit.record(
                actor=req.user,
                action="export_document",
                target=req.doc_id,
                result="ok",
                url=result["url"],
            )
            return result

        # -- the worker behind the publish queue
        @traced("publish_document")
        async def publish(doc_id: str) -> str:
            await asyncio.sleep(self._worker_rng.lognormvariate(1.1, 0.8))  # upload, notify
            return f"https://docs.example.com/{doc_id}.pdf"

        async def publish_worker() -> None:
            while True:
                job = await self.jobs.get()
                with dequeued(QueueStamp.from_dict(job["stamp"]), "publish"):
                    try:
                        job["done"].set_result(await publish(job["doc_id"]))
                    except Exception as exc:
                        job["done"].set_exception(exc)
                self.jobs.task_done()

        self.publish_worker = publish_worker
        self.actions: dict[str, Callable[[Request], Awaitable[Any]]] = {
            "outline": generate_outline,
            "expand": expand_paragraph,
            "export": export_document,
        }

    async def handle(self, req: Request) -> str:
        """Serve one request as the API gateway would (tenant, actor, action id, and the version
        overrides of the prompt registry and the canary router); returns the client's outcome."""
        from blameset.instrument import request_context
        from blameset.instrument.errors import classify

        overrides: dict[str, str | None] = {}
        if req.prompt != BASE_VERSIONS["prompt"]:
            overrides["prompt"] = req.prompt
        if req.model != BASE_VERSIONS["model"]:
            overrides["model"] = req.model
        _sim_rng.set(random.Random(req.seed))
        with request_context(
            tenant=req.tenant,
            user=req.user,
            actor=f"user:{req.user}",
            action_id=req.action_id,
            versions=overrides or None,
        ):
            try:
                await self.actions[req.action](req)
            except Exception as exc:
                return classify(exc).code
        return "ok"


# ---------------------------------------------------------------------------------------------
# running it


def _seeded_ids(seed: int) -> Any:
    """Trace and span ids from a seeded generator: the same seed writes the same spans."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class SeededIds(IdGenerator):
        def __init__(self) -> None:
            self._rng = random.Random(seed ^ 0x5EED)

        def generate_span_id(self) -> int:
            return self._rng.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            return self._rng.getrandbits(128) or 1

    return SeededIds()


@dataclass
class DemoResult:
    """What a demo run produced: its files, the analysis, and how long it took (real seconds)."""

    out: Path
    spans_file: Path
    dataset: Path
    html: Path
    audit_log: Path
    requests: int
    statuses: dict[str, int]
    ingest: IngestSummary
    report: Report
    attribution: Attribution
    seconds: dict[str, float]

    @property
    def files(self) -> dict[str, Path]:
        return {
            "spans (JSONL)": self.spans_file,
            "log records": self.spans_file.with_name(LOGS_FILE),
            "dataset (Parquet)": self.dataset,
            "HTML report": self.html,
            "audit log": self.audit_log,
            "idempotency store": self.out / IDEMPOTENCY_FILE,
        }


Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is "serving", "ingesting", "attributing", "writing"."""


MARKER = ".blameset-demo"
"""Written into every folder the demo fills, so a rerun knows the files there are its own."""


class NotADemoFolder(ValueError):
    """``--out`` names a folder with other files in it, or a file."""


def _claim(out: Path) -> None:
    """Make ``out`` the demo's: a new or empty folder, or one an earlier demo run marked.
    Anything else is refused, since a rerun replaces spans.jsonl, audit.jsonl and dataset/,
    the very names a real service writes."""
    if out.exists() and not out.is_dir():
        raise NotADemoFolder(f"{out} is a file; --out needs a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise NotADemoFolder(
            f"{out} is not empty and was not written by blameset demo; "
            "choose a new or empty folder with --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `blameset demo`; a rerun replaces its files here\n")


def _clean(out: Path) -> None:
    """Remove the files an earlier demo run left in ``out`` (only the demo's own)."""
    for name in _OWN:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name in _OWN_DB:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (out / (name + suffix)).unlink(missing_ok=True)


def simulate(
    out: Path, requests: int, seed: int, progress: Progress | None = None
) -> list[Request]:
    """Serve the planned traffic through the instrumented service in simulated time, exporting
    spans to ``out/spans.jsonl``. Telemetry is off again afterwards (the previous configuration,
    if it was off, is back in force)."""
    from blameset import instrument
    from blameset.instrument import VersionSet, _runtime
    from blameset.instrument.audit import set_default

    plan = plan_traffic(requests, seed)
    served = 0
    loop = SimulatedLoop(T0)
    previous = _runtime.current_state()
    instrument.configure(
        service="writer-api",
        version_set=VersionSet(**BASE_VERSIONS),
        exporter=f"jsonl:{out / SPANS_FILE}",
        environment="demo",
        resource_attributes={"service.instance.id": "writer-api-demo-0"},  # else a random uuid
        clock=loop.clock_ns,
        id_generator=_seeded_ids(seed),
        spill_dir=out / SPILL_DIR,
    )
    try:
        # The free tier's daily allowance follows the traffic volume: v3 stays inside it, v4's
        # dearer requests run free tenants out of it on day two (degraded answers).
        service = WriterService(out, loop.clock_s, free_usd_per_day=1.6 * requests / 3000)
        set_default(service.audit)  # audited error codes (SAFETY_VIOLATION) land in it too

        async def serve() -> None:
            worker = asyncio.create_task(service.publish_worker())
            tasks: set[asyncio.Task[None]] = set()

            async def one(req: Request) -> None:
                nonlocal served
                await service.handle(req)
                served += 1
                if progress is not None:
                    progress("serving", served, len(plan))
                if served % 1000 == 0:
                    instrument.force_flush()  # keep the export queue short: nothing spills

            for req in plan:
                wait = req.at - _now()
                if wait > 0:
                    await asyncio.sleep(wait)
                task = asyncio.create_task(one(req))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*tasks)
            worker.cancel()

        try:
            loop.run_until_complete(serve())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    finally:
        set_default(None)
        instrument.shutdown()
        if previous.off:
            _runtime.install(previous)
    return plan


def run(
    out: Path = DEFAULT_OUT,
    *,
    requests: int = 3000,
    seed: int = 7,
    progress: Progress | None = None,
) -> DemoResult:
    """The whole demo: simulate, then ingest, report, attribute and write the HTML report."""
    from blameset.analyze import attribute, ingest, load, report, request_table
    from blameset.analyze.html import write_html

    if requests < 1:
        raise ValueError("requests must be at least 1")
    _claim(out)
    _clean(out)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    plan = simulate(out, requests, seed, progress)
    seconds["serve"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress("ingesting", 0, 1)
    inputs = [out / SPANS_FILE]
    spill = out / SPILL_DIR
    inputs += sorted(spill.glob("spans-*.jsonl")) if spill.is_dir() else []
    summary = ingest(inputs, out / DATASET_DIR)
    spans = load(out / DATASET_DIR)
    seconds["ingest"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress("attributing", 0, 1)
    table = request_table(spans)
    statuses = dict(table["final_status"].cast(str).value_counts().iter_rows())
    grouped = report(spans, by=["version_set"], requests=table)
    found = attribute(spans, requests=table)  # defaults: `blameset attribute` agrees with it
    seconds["attribute"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress("writing", 0, 1)
    html = write_html(out / HTML_FILE, spans, attribution=found, requests=table)
    seconds["html"] = time.perf_counter() - t
    return DemoResult(
        out=out,
        spans_file=out / SPANS_FILE,
        dataset=out / DATASET_DIR,
        html=html,
        audit_log=out / AUDIT_FILE,
        requests=len(plan),
        statuses=statuses,
        ingest=summary,
        report=grouped,
        attribution=found,
        seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------
# what the newcomer reads


def describe_finding(finding: Finding) -> str:
    """One sentence: ``prompt outline@v3 -> outline@v4 raised cost_usd.mean by 38% [35%, 41%]``."""
    changes: dict[str, list[str | None]] = finding.scope.get("changes", {})
    moved = "; ".join(
        f"{name} {old or '-'} -> {new or '-'}"
        for name, (old, new) in changes.items()
        if not finding.components or name in finding.components
    )
    pct, lo, hi = ((x - 1.0) * 100 for x in (finding.effect, *finding.ci))
    size = f"by {abs(pct):.0f}% [{lo:+.0f}%, {hi:+.0f}%]"
    verb = "raised" if finding.effect > 1 else "lowered"
    routes = ", ".join(finding.scope.get("routes", []))
    where = f" on {routes}" if routes else ""
    if finding.verdict == "external":
        since = str(finding.scope.get("since", "?"))[:16].replace("T", " ")
        tenants = finding.scope.get("tenants", [])
        who = f" for {', '.join(tenants)}" if 0 < len(tenants) <= 3 else ""
        return (
            f"{finding.metric} shifted {size}{where}{who} from {since} UTC with no version "
            "change behind it (external)"
        )
    if finding.verdict == "confounded":
        return f"{moved} moved together and {verb} {finding.metric} {size}{where} (confounded)"
    return f"{moved} {verb} {finding.metric} {size}{where} ({finding.verdict})"


def headline(attribution: Attribution) -> Finding | None:
    """The finding a newcomer should read first: the largest cost regression, else the first."""
    cost = [
        f
        for f in attribution.findings
        if f.metric == "cost_usd.mean" and f.verdict in ("regression", "confounded")
    ]
    if cost:
        return max(cost, key=lambda f: f.effect)
    return attribution.findings[0] if attribution.findings else None


def print_result(result: DemoResult, console: Console, limit: int = 12) -> None:
    """The headline finding, the version sets side by side, the rollout, every finding, and
    where the files are."""
    from rich.table import Table

    att = result.attribution
    say = functools.partial(console.print, highlight=False, soft_wrap=True)
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(result.statuses.items()))
    say(
        f"Served {result.requests:,} simulated requests ({DAYS} days of traffic: {outcomes}) in "
        f"{result.seconds['serve']:.1f} s; {result.ingest.spans:,} spans ingested."
    )
    table = Table(title="Requests by version_set")
    columns = ("prompt", "model", "id", "requests", "cost_usd.mean", "latency_ms.p95")
    for column in (*columns, "error_rate"):
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    frame: pl.DataFrame = result.report.frame
    for row in frame.sort("requests", descending=True).iter_rows(named=True):
        versions = dict(
            part.partition("=")[::2] for part in str(row.get("version_set") or "").split(";")
        )
        table.add_row(
            versions.get("prompt", "-"),
            versions.get("model", "-"),
            str(row.get("version_set_id") or "-"),
            f"{row['requests']:,}",
            f"${row['cost_usd.mean']:.5f}",
            f"{row['latency_ms.p95']:,.0f} ms",
            f"{row['error_rate']:.2%}",
        )
    console.print(table)
    say(f"Rollout episodes ({len(att.episodes)}):")
    for e in att.episodes:
        changed = "; ".join(f"{k} {v[0]} -> {v[1]}" for k, v in e.changes.items())
        say(f"  {e.at:%Y-%m-%d %H:%M} UTC {e.kind}: {changed}")
    first = headline(att)
    if first is not None:
        say(f"Headline: {describe_finding(first)}", style="bold")
    say(f"Findings ({len(att.findings)}; mix-adjusted effect [95% CI]):")
    for finding in att.findings[:limit]:
        say(f"  - {describe_finding(finding)}")
    if len(att.findings) > limit:
        say(f"  ... and {len(att.findings) - limit} more (blameset attribute shows them all)")
    if not att.findings:
        say("  none")
    say("Files:")
    for label, path in result.files.items():
        say(f"  {label:<18} {path}")
    dataset = result.dataset
    say(
        "Next: open the HTML report in a browser, or try\n"
        f"  blameset report {dataset} --by prompt,route\n"
        f"  blameset attribute {dataset}"
    )


def main(out: Path | None, requests: int, seed: int) -> int:
    """`blameset demo`: run with a progress bar on a terminal, print the result; exit code."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    if not console.is_terminal:  # a pipe or a file: no terminal width to fit, so no wrapping
        console = Console(width=120)
    target = out if out is not None else DEFAULT_OUT
    bar: Progress | None = None
    if sys.stderr.isatty():
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    task: Any = None

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal task
        if bar is None:
            return
        if task is None:
            bar.start()
            task = bar.add_task(stage, total=total)
        label = {
            "serving": "serving simulated traffic",
            "ingesting": "ingesting spans",
            "attributing": "attributing",
            "writing": "writing the HTML report",
        }[stage]
        bar.update(task, description=label, completed=done, total=total)

    started = time.perf_counter()
    try:
        result = run(target, requests=requests, seed=seed, progress=progress)
    except NotADemoFolder as exc:
        Console(stderr=True).print(f"blameset demo: {exc}")
        return 2
    finally:
        if bar is not None and task is not None:
            bar.stop()
    print_result(result, console)
    console.print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0
