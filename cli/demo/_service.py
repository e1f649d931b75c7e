"""The writing assistant, instrumented as a user instruments theirs: the book's three actions,
generate outline (``/v1/outline``), expand paragraph (``/v1/expand``) and export document
(``/v1/export``), over the stand-in LLM, two tools and a publish queue.

The functions are decorated once, at import, as in any service: ``@traced`` request spans, a
streaming ``@traced.llm`` call that records usage at the end as providers report it,
``@traced.tool`` tools, ``@retry`` by the error taxonomy, ``@degrade`` to a cheaper answer when
the tenant's budget says no, an ``@idempotent`` export, an audit log, and a work queue carrying
:func:`~blameset.instrument.stamp` to a worker that runs under
:func:`~blameset.instrument.dequeued`. What one run owns (budgets, stores, the audit log, the
clock, its random generators) is an :class:`AppState` the functions reach through
:func:`state`, the way a web service reaches its app state; the demo runs the service more than
once in a process (tests, notebooks), and each run starts from a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blameset.instrument import (
    QueueStamp,
    RetryBudget,
    dequeued,
    idempotent,
    record_usage,
    request_context,
    retry,
    stamp,
    traced,
)
from blameset.instrument.audit import AuditLog
from blameset.instrument.budget import Budget, degrade
from blameset.instrument.errors import InvalidInput, classify
from blameset.instrument.stores import Claim, MemoryStore, SQLiteStore, Store

from ._llm import MODELS, FinalUsage, StandInProvider, count_tokens
from ._traffic import GPT_4O, Request, request_rng

__all__ = ["BASE_VERSIONS", "PROMPTS", "PROVIDER", "AppState", "handle", "publish_worker", "state"]

PROVIDER = "openai"
BASE_VERSIONS = {"code": "3f2a91c", "model": GPT_4O, "prompt": "outline@v3", "config": "t0.7"}

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

llm = StandInProvider()


# ---------------------------------------------------------------------------------------------
# what one run of the service owns


@dataclass
class AppState:
    """The budgets per tier, the idempotency store, the audit log, the publish queue and the
    clock of one run; random generators of its own so that a seed fixes every span."""

    budgets: dict[str, Budget]
    idempotency: Store
    audit: AuditLog
    clock_s: Callable[[], float]
    jobs: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    retry_rng: random.Random = field(default_factory=lambda: random.Random(1))
    worker_rng: random.Random = field(default_factory=lambda: random.Random(0))

    @classmethod
    def open(
        cls, audit_log: Path, idempotency_db: Path, clock_s: Callable[[], float], free_usd: float
    ) -> AppState:
        """Budgets with the book's limits for paying tenants and ``free_usd`` a day for the free
        tier; the idempotency store in a SQLite file; the audit log."""
        # This run's own budget store ("memory" is one per process: a second run would see this
        # one's spend); a service on several hosts would give "sqlite:PATH" or "redis://...".
        ledger = MemoryStore()
        limits = {"pro": (1.0, 10.0), "team": (1.0, 10.0), "free": (0.10, free_usd)}
        return cls(
            budgets={
                tier: Budget(
                    ledger, tenant_per_minute_usd=minute, tenant_per_day_usd=day, clock=clock_s
                )
                for tier, (minute, day) in limits.items()
            },
            idempotency=SQLiteStore(idempotency_db),
            audit=AuditLog(audit_log),
            clock_s=clock_s,
        )


_state: contextvars.ContextVar[AppState] = contextvars.ContextVar("demo_app_state")


def state() -> AppState:
    """The state of the run being served (threads started by asyncio.to_thread see it too)."""
    return _state.get()


@contextlib.contextmanager
def serving(app: AppState) -> Iterator[AppState]:
    """Serve with ``app`` as the state the service functions reach, for a ``with`` block."""
    token = _state.set(app)
    try:
        yield app
    finally:
        _state.reset(token)
        app.idempotency.close()


class _RunRetryBudget(RetryBudget):
    """The retry budget ``@retry`` is given once, at import: it spends the serving run's own, so
    that each run starts with a full bucket as a freshly started service would."""

    def record_call(self) -> None:
        state().retry_budget.record_call()

    def try_spend(self) -> bool:
        return state().retry_budget.try_spend()


class _RunStore:
    """The store ``@idempotent`` is given once, at import: the serving run's SQLite file."""

    def begin(self, key: str, owner: str, lease_s: float, now: float) -> Claim:
        return state().idempotency.begin(key, owner, lease_s, now)

    def complete(self, key: str, owner: str, value: bytes, ttl_s: float, now: float) -> bool:
        return state().idempotency.complete(key, owner, value, ttl_s, now)

    def release(self, key: str, owner: str) -> None:
        state().idempotency.release(key, owner)

    def close(self) -> None:
        """Each run's store is closed when it stops serving."""


# ---------------------------------------------------------------------------------------------
# the LLM call: one traced streaming function per model (the model is fixed on the span)


def _llm_call(model: str) -> Callable[..., AsyncIterator[str | float]]:
    @traced.llm(model=model, provider=PROVIDER)
    async def stream_completion(
        messages: list[dict[str, str]], max_tokens: int
    ) -> AsyncIterator[str | float]:
        async for chunk in llm.stream(model, messages, max_tokens):
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


_streams = {model: _llm_call(model) for model in MODELS}


@retry(budget=_RunRetryBudget(), rng=lambda: state().retry_rng.random())
async def complete(
    model: str, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, float]:
    """Stream a completion to the end (the client would render it as it arrives)."""
    parts: list[str] = []
    cost = 0.0
    async for item in _streams[model](messages, max_tokens):
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
    budget = state().budgets[req.tier]
    estimate = budget.estimate(
        req.model, sum(count_tokens(m["content"]) for m in messages), max_tokens, PROVIDER
    )
    with budget.reserve(tenant=req.tenant, estimate_usd=estimate) as hold:
        text, cost = await complete(req.model, messages, max_tokens)
        hold.settle(actual_usd=cost)
    return text


# ---------------------------------------------------------------------------------------------
# tools


@traced.tool("search_sources")
async def search_sources(query: str, k: int) -> list[str]:
    rng = request_rng.get()
    await asyncio.sleep(0.06 + rng.lognormvariate(-2.0, 0.6))
    return [f"[{i + 1}] {query}: " + "finding " * rng.randint(60, 140) for i in range(k)]


@traced.tool("render_document")
async def render_document(doc_id: str, summary: str) -> int:
    rng = request_rng.get()
    await asyncio.sleep(0.25 + rng.lognormvariate(-0.7, 0.5))
    return rng.randint(2, 40)  # pages


# ---------------------------------------------------------------------------------------------
# degraded paths: answer without the model when the budget says no


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
    rng = request_rng.get()
    sources = await search_sources(req.topic, 2)
    draft = "draft " * rng.randint(300, 900)
    return await generate(req, "expand", draft + "\n".join(sources), 1200)


# ---------------------------------------------------------------------------------------------
# the three actions (request spans)


@traced("generate_outline", route="/v1/outline")
async def generate_outline(req: Request) -> str:
    if not req.topic.strip():
        raise InvalidInput("topic is empty")
    with state().budgets[req.tier].request():  # tool calls and tokens of this request
        return await write_outline(req)


@traced("expand_paragraph", route="/v1/expand")
async def expand_paragraph(req: Request) -> str:
    with state().budgets[req.tier].request():
        return await write_paragraph(req)


@idempotent(store=_RunStore(), clock=lambda: state().clock_s(), namespace="export")
async def export_once(req: Request) -> dict[str, Any]:
    """The side effects (a rendered file, a published link) happen once per action_id."""
    summary = await generate(req, "summary", f"Summarise {req.doc_id} for its cover", 120)
    pages = await render_document(req.doc_id, summary)
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    await state().jobs.put({"stamp": stamp().to_dict(), "doc_id": req.doc_id, "done": done})
    url = await done
    return {"doc_id": req.doc_id, "pages": pages, "url": url}


@traced("export_document", route="/v1/export")
async def export_document(req: Request) -> dict[str, Any]:
    with state().budgets[req.tier].request():
        result: dict[str, Any] = await export_once(req)
    state().audit.record(
        actor=req.user,
        action="export_document",
        target=req.doc_id,
        result="ok",
        url=result["url"],
    )
    return result


ACTIONS: dict[str, Callable[[Request], Awaitable[Any]]] = {
    "outline": generate_outline,
    "expand": expand_paragraph,
    "export": export_document,
}


async def handle(req: Request) -> str:
    """Serve one request as the API gateway would (tenant, actor, action id, and the version
    overrides of the prompt registry and the canary router); returns the client's outcome."""
    overrides: dict[str, str | None] = {}
    if req.prompt != BASE_VERSIONS["prompt"]:
        overrides["prompt"] = req.prompt
    if req.model != BASE_VERSIONS["model"]:
        overrides["model"] = req.model
    request_rng.set(random.Random(req.seed))
    with request_context(
        tenant=req.tenant,
        user=req.user,
        actor=f"user:{req.user}",
        action_id=req.action_id,
        versions=overrides or None,
    ):
        try:
            await ACTIONS[req.action](req)
        except Exception as exc:
            return classify(exc).code
    return "ok"


# ---------------------------------------------------------------------------------------------
# the worker behind the publish queue


@traced("publish_document")
async def publish(doc_id: str) -> str:
    await asyncio.sleep(state().worker_rng.lognormvariate(1.1, 0.8))  # upload, notify
    return f"https://docs.example.com/{doc_id}.pdf"


async def publish_worker() -> None:
    """Publish each queued export under the stamp it was queued with (the queue-time span)."""
    jobs = state().jobs
    while True:
        job = await jobs.get()
        with dequeued(QueueStamp.from_dict(job["stamp"]), "publish"):
            try:
                job["done"].set_result(await publish(job["doc_id"]))
            except Exception as exc:
                job["done"].set_exception(exc)
        jobs.task_done()
