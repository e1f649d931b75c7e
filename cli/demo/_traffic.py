"""The demo's traffic plan: two days of seeded requests on a diurnal curve, eight tenants on
three tiers, a prompt cutover in the middle, a model canary on day one, and double-clicked
exports (client retries with the same action id).
"""

from __future__ import annotations

import contextvars
import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime

__all__ = [
    "CANARY_H",
    "CANARY_SHARE",
    "CUTOVER_H",
    "DAYS",
    "GPT_4O",
    "GPT_4O_MINI",
    "T0",
    "Request",
    "plan_traffic",
    "request_rng",
]

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday; fixed, so a seed gives the same spans
DAYS = 2
CUTOVER_H = 24.0  # prompt outline@v3 -> outline@v4
CANARY_H = (6.0, 18.0)  # gpt-4o-mini on CANARY_SHARE of the traffic
CANARY_SHARE = 0.10
GPT_4O = "gpt-4o-2024-08-06"
GPT_4O_MINI = "gpt-4o-mini-2024-07-18"

request_rng: contextvars.ContextVar[random.Random] = contextvars.ContextVar("demo_rng")
"""The randomness of the simulated request being served (set by the traffic driver): the
stand-in LLM and tools draw from it, so each request's timings and failures follow its seed."""

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
