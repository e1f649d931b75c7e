"""Seeded traffic with injected causes of known size, component and time, as a span table.

Each scenario is a timeline over two days (or ``days``): a traffic mix per route, rollouts of
version components (cutover, canary, A/B; co-released components share one draw so they always
move together; optionally only to some tenants), effects tied to a component value (optionally on
some routes only), and drift tied to a time with no version change. Traffic may follow a daily and
a weekly load cycle (arrivals drawn from the load profile) with latency rising with load, and may
come from many tenants of Zipf-like sizes whose outputs grow longer the smaller the tenant, with
tenants that only arrive at some time. Requests become three-ish spans: the request, one LLM call
(two when it retried), and a tool call on the export route; all columns of
``analyze.SPAN_SCHEMA``, so the result can be written as an ingested dataset or handed straight to
``analyze.attribute``.

    .venv/bin/python bench/scenarios.py prompt_regression --requests 20000 --out /tmp/ds
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from blameset.analyze.table import SPAN_SCHEMA

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SPAN_NS = 2 * 86_400 * 1_000_000_000  # two days

ROUTES = {
    # route: (input tokens, output tokens, tool ms)
    "/v1/outline": (600.0, 250.0, 0.0),
    "/v1/expand": (1800.0, 700.0, 0.0),
    "/v1/export": (300.0, 60.0, 400.0),
}
MODELS = {
    # model: (ttft ms, ms per output token, usd per input token, usd per output token)
    "gpt-4o-2024-08-06": (450.0, 18.0, 2.5e-6, 10e-6),
    "gpt-4o-mini-2024-07-18": (300.0, 9.0, 0.15e-6, 0.6e-6),
    "claude-sonnet-4": (600.0, 15.0, 3e-6, 15e-6),
}
BASE = {
    "code": "3f2a91c",
    "model": "gpt-4o-2024-08-06",
    "prompt": "outline@v3",
    "config": "t0.7",
}
METRICS = (
    "input_tokens",
    "output_tokens",
    "ttft_ms",
    "tpot_ms",
    "tool_ms",
    "error_rate",
    "worker_tool_ms",
)
WORKER = {"code": "w1a2b3c", "index": "docs@2026-10"}
"""The worker service's version set in the cross-service scenarios."""
WORKER_TOOL_MS = 300.0


@dataclass(frozen=True)
class Rollout:
    """Components set to new values from ``start`` (a fraction of the timeline): all traffic
    (cutover), a ``share`` of it (canary / A/B), until ``end`` when given; on ``routes`` or all.
    Rollouts in one ``group`` draw together (co-released); without one, each draws its own."""

    changes: dict[str, str]
    start: float
    share: float = 1.0
    end: float | None = None
    routes: tuple[str, ...] | None = None
    group: int | None = None
    tenants: tuple[int, int] | None = None
    """Only tenants of these size ranks (``[from, to)``, 0 the largest) get the rollout."""


@dataclass(frozen=True)
class Effect:
    """Multiply ``metric`` by ``factor`` where component == value (on ``routes`` or all)."""

    component: str
    value: str
    metric: str
    factor: float
    routes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Drift:
    """Multiply ``metric`` by ``factor`` from ``start`` on: no version change behind it."""

    metric: str
    factor: float
    start: float


@dataclass(frozen=True)
class Scenario:
    name: str
    rollouts: tuple[Rollout, ...] = ()
    effects: tuple[Effect, ...] = ()
    drifts: tuple[Drift, ...] = ()
    mix: dict[str, float] = field(
        default_factory=lambda: {"/v1/outline": 0.5, "/v1/expand": 0.3, "/v1/export": 0.2}
    )
    mix_after: tuple[float, dict[str, float]] | None = None
    truth: tuple[tuple[str, tuple[str, ...], str], ...] = ()
    """Expected findings: (metric, components, verdict); empty = nothing to find."""
    null: bool = False
    """A null scenario: any finding naming a version is a false attribution."""
    days: float = 2.0
    daily: float = 1.0
    """Load at the daily peak (16:00 UTC) over load at the trough (04:00 UTC)."""
    weekly: float = 1.0
    """Load on a weekday over load on the weekend."""
    load_latency: float = 0.0
    """How much slower TTFT, generation, tools and queues are at the highest load than at the
    lowest (0.6: +60%), linearly in between."""
    tenants: int = 3
    """More than 3: tenants t00.. with Zipf sizes (t00 the largest)."""
    tenant_outputs: float = 0.0
    """The smallest tenant's outputs are this much longer than the largest's (linear in rank)."""
    new_tenants: tuple[float, int, float] | None = None
    """(from, how many, their share of traffic then): tenants that arrive at a time, with outputs
    twice as long as the others'."""
    worker: dict[str, str] | None = None
    """A worker service each request calls after its LLM call, with this version set of its own
    (its components ``worker.<c>`` in rollouts and effects): a request span and a tool span of
    service ``worker`` below the gateway's request span."""
    worker_share: float = 1.0
    """The share of requests that reach the worker (the others never cross it)."""


_PEAK = 34 / 48  # day 2, 10:00 UTC: the load is climbing into the daily peak
_TROUGH = 28 / 48  # day 2, 04:00 UTC: the quietest hour
_SMALL = (20, 60)  # the 40 smallest of 60 tenants (a fifth of the traffic)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "prompt_regression",
            rollouts=(Rollout({"prompt": "outline@v4"}, 0.5),),
            effects=(Effect("prompt", "outline@v4", "input_tokens", 1.38),),
            truth=(
                ("input_tokens", ("prompt",), "regression"),
                ("cost_usd", ("prompt",), "regression"),
            ),
        ),
        Scenario(
            "model_canary",
            rollouts=(Rollout({"model": "claude-sonnet-4"}, 0.4, share=0.1, end=0.8),),
            truth=(
                ("ttft_ms", ("model",), "regression"),
                ("cost_usd", ("model",), "regression"),
            ),
        ),
        Scenario(
            "config_one_route",
            rollouts=(Rollout({"config": "t0.9"}, 0.5),),
            effects=(Effect("config", "t0.9", "output_tokens", 1.3, routes=("/v1/expand",)),),
            truth=(("output_tokens", ("config",), "regression"),),
        ),
        Scenario(
            "code_errors",
            rollouts=(Rollout({"code": "9c1e0b4"}, 0.5),),
            effects=(Effect("code", "9c1e0b4", "error_rate", 4.0),),
            truth=(("error_rate", ("code",), "regression"),),
        ),
        Scenario(
            "co_release",
            rollouts=(Rollout({"prompt": "outline@v5", "config": "t0.2"}, 0.5),),
            effects=(Effect("prompt", "outline@v5", "output_tokens", 1.25),),
            truth=(("output_tokens", ("config", "prompt"), "confounded"),),
        ),
        Scenario(
            "provider_drift",
            rollouts=(Rollout({"code": "77aa01d"}, 0.3),),
            drifts=(Drift("ttft_ms", 1.4, 0.65),),
            truth=(("ttft_ms", (), "external"),),
        ),
        Scenario(
            "mix_shift",
            rollouts=(Rollout({"code": "5d0c2e9"}, 0.5),),
            mix={"/v1/outline": 0.75, "/v1/expand": 0.1, "/v1/export": 0.15},
            mix_after=(0.5, {"/v1/outline": 0.3, "/v1/expand": 0.55, "/v1/export": 0.15}),
            null=True,
        ),
        Scenario(
            "aa",
            rollouts=(Rollout({"config": "t0.7b"}, 0.0, share=0.5),),
            null=True,
        ),
        Scenario(
            "subtle",
            rollouts=(Rollout({"prompt": "outline@v3.1"}, 0.5),),
            effects=(Effect("prompt", "outline@v3.1", "input_tokens", 1.08),),
            truth=(("input_tokens", ("prompt",), "regression"),),
        ),
        Scenario(
            "rollback",
            rollouts=(Rollout({"prompt": "outline@v4"}, 0.3, end=0.6),),
            effects=(Effect("prompt", "outline@v4", "input_tokens", 1.3),),
            truth=(
                ("input_tokens", ("prompt",), "regression"),
                ("input_tokens", ("prompt",), "improvement"),
            ),
        ),
        Scenario(
            "overlapping",
            rollouts=(
                Rollout({"prompt": "outline@v4"}, 0.25),
                Rollout({"model": "gpt-4o-mini-2024-07-18"}, 0.45, share=0.2, end=0.75, group=1),
                Rollout({"code": "a1b2c3d"}, 0.6, group=2),
            ),
            effects=(Effect("prompt", "outline@v4", "input_tokens", 1.3),),
            truth=(
                ("input_tokens", ("prompt",), "regression"),
                ("ttft_ms", ("model",), "improvement"),
                ("cost_usd", ("model",), "improvement"),
            ),
        ),
        Scenario(
            "daily_peak_null",  # a harmless cutover as the load climbs 5.5x into the peak
            rollouts=(Rollout({"code": "d41c0de"}, _PEAK),),
            daily=5.5,
            load_latency=0.6,
            null=True,
        ),
        Scenario(
            "daily_peak_regression",  # the same moment, with a real +25% in generation time
            rollouts=(Rollout({"code": "d41c0df"}, _PEAK),),
            effects=(Effect("code", "d41c0df", "tpot_ms", 1.25),),
            daily=5.5,
            load_latency=0.6,
            truth=(("tpot_ms", ("code",), "regression"),),
        ),
        Scenario(
            "daily_trough_null",  # a harmless cutover at the quietest hour
            rollouts=(Rollout({"code": "d41c0e0"}, _TROUGH),),
            daily=5.5,
            load_latency=0.6,
            null=True,
        ),
        Scenario(
            "weekly_null",  # two weeks; a harmless cutover on the second Monday at 09:00
            rollouts=(Rollout({"code": "7e1c0de"}, (7 * 24 + 24 + 9) / (14 * 24)),),
            days=14.0,
            daily=4.0,
            weekly=2.5,
            load_latency=0.6,
            null=True,
        ),
        Scenario(
            "tenant_simpson",  # -10% output tokens in every tenant, rolled out to small ones first
            rollouts=(
                Rollout({"config": "t0.5"}, 0.3, share=0.75, end=0.65, tenants=_SMALL, group=1),
                Rollout({"config": "t0.5"}, 0.3, share=0.25, end=0.65, tenants=(0, 20), group=1),
                Rollout({"config": "t0.5"}, 0.65),
            ),
            effects=(Effect("config", "t0.5", "output_tokens", 0.9),),
            tenants=60,
            tenant_outputs=1.5,
            truth=(("output_tokens", ("config",), "improvement"),),
        ),
        Scenario(
            "tenant_rollout_null",  # a harmless config taken by the small tenants first, then all
            rollouts=(
                Rollout({"config": "t0.6"}, 0.3, tenants=_SMALL),
                Rollout({"config": "t0.6"}, 0.6),
            ),
            tenants=60,
            tenant_outputs=1.5,
            null=True,
        ),
        Scenario(
            "new_tenants_null",  # a harmless cutover as ten tenants with long outputs arrive
            rollouts=(Rollout({"code": "ae3f00d"}, 0.5),),
            tenants=40,
            new_tenants=(0.5, 10, 0.3),
            null=True,
        ),
        Scenario(
            "worker_regression",  # the worker's cutover under an unchanged gateway: +40% tool time
            rollouts=(Rollout({"worker.code": "w9f8e7d"}, 0.5),),
            effects=(Effect("worker.code", "w9f8e7d", "worker_tool_ms", 1.4),),
            worker=WORKER,
            truth=(
                ("worker.tool_ms", ("worker.code",), "regression"),
                ("worker.service_ms", ("worker.code",), "regression"),
            ),
        ),
        Scenario(
            "worker_partial_regression",  # half the requests reach the worker; its cutover +40%
            rollouts=(Rollout({"worker.code": "w7a7a7a"}, 0.5),),
            effects=(Effect("worker.code", "w7a7a7a", "worker_tool_ms", 1.4),),
            worker=WORKER,
            worker_share=0.5,
            truth=(
                ("worker.tool_ms", ("worker.code",), "regression"),
                ("worker.service_ms", ("worker.code",), "regression"),
            ),
        ),
        Scenario(
            "worker_partial_null",  # half reach the worker, which is slow; nothing ships
            rollouts=(Rollout({"code": "aa11bb2"}, 0.5),),
            worker=WORKER,
            worker_share=0.5,
            null=True,
        ),
        Scenario(
            "worker_null",  # a harmless worker index rebuild, the gateway unchanged
            rollouts=(Rollout({"worker.index": "docs@2026-11"}, 0.5),),
            worker=WORKER,
            null=True,
        ),
        Scenario(
            "worker_canary_improvement",  # a worker canary with -30% tool time beside the incumbent
            rollouts=(Rollout({"worker.code": "w0c0ffe"}, 0.35, share=0.2, end=0.85),),
            effects=(Effect("worker.code", "w0c0ffe", "worker_tool_ms", 0.7),),
            worker=WORKER,
            truth=(
                ("worker.tool_ms", ("worker.code",), "improvement"),
                ("worker.service_ms", ("worker.code",), "improvement"),
            ),
        ),
        Scenario(
            "cross_service_co_release",  # gateway prompt and worker code shipped in one go
            rollouts=(Rollout({"prompt": "outline@v6", "worker.code": "w5e5e5e"}, 0.5),),
            effects=(Effect("worker.code", "w5e5e5e", "worker_tool_ms", 1.4),),
            worker=WORKER,
            truth=(
                ("worker.tool_ms", ("prompt", "worker.code"), "confounded"),
                ("worker.service_ms", ("prompt", "worker.code"), "confounded"),
            ),
        ),
        Scenario(
            "daily_tenant_improvement",  # a cycle and a tenant mix shift at once, a real -15%
            rollouts=(
                Rollout({"prompt": "outline@v3s"}, _PEAK, tenants=_SMALL),
                Rollout({"prompt": "outline@v3s"}, _PEAK + 0.1),
            ),
            effects=(Effect("prompt", "outline@v3s", "input_tokens", 0.85),),
            daily=5.5,
            load_latency=0.6,
            tenants=60,
            tenant_outputs=1.5,
            truth=(("input_tokens", ("prompt",), "improvement"),),
        ),
    ]
}


def _times(scenario: Scenario, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival times in [0, 1) of the timeline: uniform, or drawn from the load profile."""
    if scenario.daily == 1.0 and scenario.weekly == 1.0:
        return np.sort(rng.random(n))
    grid = np.linspace(0.0, 1.0, int(scenario.days * 24 * 60) + 1)
    load = _load(scenario, grid)
    cdf = np.concatenate([[0.0], np.cumsum((load[1:] + load[:-1]) / 2)])
    return np.sort(np.interp(rng.random(n) * cdf[-1], cdf, grid))


def _load(scenario: Scenario, t: np.ndarray) -> np.ndarray:
    """The load profile at timeline fractions ``t`` (1 at the weekend's trough)."""
    hours = t * scenario.days * 24
    hour, day = hours % 24, (hours // 24).astype(np.int64)
    daily = 1 + (scenario.daily - 1) * (0.5 - 0.5 * np.cos(2 * np.pi * (hour - 4) / 24))
    weekday = (T0.weekday() + day) % 7 < 5
    return np.asarray(daily * np.where(weekday, scenario.weekly, 1.0), dtype=np.float64)


def _tenants(scenario: Scenario, t: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Many tenants: each request's tenant name and size rank (new tenants rank after the rest),
    from a generator of their own so the other draws stay as they were."""
    if scenario.tenants <= 3:
        return None
    rng = np.random.default_rng([seed, 7])
    n, k = len(t), scenario.tenants
    sizes = 1 / np.arange(1, k + 1) ** 1.1
    rank = rng.choice(k, size=n, p=sizes / sizes.sum())
    if scenario.new_tenants is not None:
        at, count, share = scenario.new_tenants
        late = (t >= at) & (rng.random(n) < share)
        rank[late] = k + rng.integers(0, count, size=int(late.sum()))
    return np.array([f"t{r:02d}" for r in range(k + 100)])[rank], rank


def _versions(
    scenario: Scenario,
    t: np.ndarray,
    route: np.ndarray,
    rng: np.random.Generator,
    rank: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    n = len(t)
    base = {**BASE, **{f"worker.{c}": v for c, v in (scenario.worker or {}).items()}}
    values = {c: np.full(n, v, dtype=object) for c, v in base.items()}
    draws: dict[int, np.ndarray] = {}
    routes = np.array(list(ROUTES))
    for r in scenario.rollouts:
        u = draws.setdefault(r.group, rng.random(n)) if r.group is not None else rng.random(n)
        live = (t >= r.start) & (u < r.share)
        if r.end is not None:
            live &= t < r.end
        if r.routes is not None:
            live &= np.isin(routes[route], r.routes)
        if r.tenants is not None and rank is not None:
            live &= (rank >= r.tenants[0]) & (rank < r.tenants[1])
        for component, value in r.changes.items():
            values.setdefault(component, np.full(n, base.get(component), dtype=object))
            values[component][live] = value
    return values


def generate(scenario: Scenario | str, requests: int = 20_000, seed: int = 0) -> pl.DataFrame:
    """The span table of ``requests`` requests of ``scenario`` (seeded)."""
    if isinstance(scenario, str):
        scenario = SCENARIOS[scenario]
    rng = np.random.default_rng(seed)
    n = requests
    t = _times(scenario, n, rng)
    many = _tenants(scenario, t, seed)
    names = list(ROUTES)
    p_before = np.array([scenario.mix[r] for r in names])
    route = rng.choice(len(names), size=n, p=p_before / p_before.sum())
    if scenario.mix_after is not None:
        at, mix = scenario.mix_after
        p_after = np.array([mix[r] for r in names])
        late = t >= at
        route[late] = rng.choice(len(names), size=int(late.sum()), p=p_after / p_after.sum())
    versions = _versions(scenario, t, route, rng, None if many is None else many[1])
    route_names = np.array(names)[route]
    tenant = rng.choice(np.array(["acme", "globex", "initech"]), size=n, p=[0.5, 0.3, 0.2])
    out_mult = np.ones(n)
    if many is not None:
        tenant, rank = many
        k = scenario.tenants
        out_mult = np.where(rank < k, 1 + scenario.tenant_outputs * rank / max(k - 1, 1), 2.0)

    factor = {m: np.ones(n) for m in METRICS}
    for e in scenario.effects:
        hit = versions[e.component] == e.value
        if e.routes is not None:
            hit &= np.isin(route_names, e.routes)
        factor[e.metric][hit] *= e.factor
    for d in scenario.drifts:
        factor[d.metric][t >= d.start] *= d.factor
    slow = np.ones(n)
    if scenario.load_latency:
        load = _load(scenario, t)
        lo, hi = float(load.min()), float(load.max())
        slow = 1 + scenario.load_latency * (load - lo) / max(hi - lo, 1e-9)
        for metric in ("ttft_ms", "tpot_ms", "tool_ms"):
            factor[metric] *= slow

    base_in = np.array([ROUTES[r][0] for r in names])[route]
    base_out = np.array([ROUTES[r][1] for r in names])[route] * out_mult
    base_tool = np.array([ROUTES[r][2] for r in names])[route]
    model = versions["model"]
    params = np.array([MODELS[m] for m in model])
    ttft0, tpot0, p_in, p_out = params.T
    input_tokens = np.maximum(
        1, np.round(base_in * factor["input_tokens"] * rng.lognormal(0, 0.35, n))
    ).astype(np.int64)
    output_tokens = np.maximum(
        1, np.round(base_out * factor["output_tokens"] * rng.lognormal(0, 0.4, n))
    ).astype(np.int64)
    ttft = ttft0 * factor["ttft_ms"] * rng.lognormal(0, 0.3, n)
    gen = output_tokens * tpot0 * factor["tpot_ms"] * rng.lognormal(0, 0.15, n)
    tool = base_tool * factor["tool_ms"] * rng.lognormal(0, 0.3, n)
    queue = rng.exponential(15.0, n) * slow
    retried = rng.random(n) < 0.03
    error_p = np.clip(0.01 * factor["error_rate"], 0, 1)
    failed = rng.random(n) < error_p
    cost = input_tokens * p_in + output_tokens * p_out
    llm_ms = ttft + gen
    llm_all = llm_ms * np.where(retried, 2.0, 1.0)
    worker_tool = np.zeros(n)
    if scenario.worker is not None:  # its own draws: the other scenarios' stay as they were
        worker_rng = np.random.default_rng([seed, 11])
        worker_tool = WORKER_TOOL_MS * factor["worker_tool_ms"] * slow
        worker_tool = worker_tool * worker_rng.lognormal(0, 0.3, n)
        worker_tool[worker_rng.random(n) >= scenario.worker_share] = 0.0
    worker_ms = np.where(worker_tool > 0, worker_tool + 5.0, 0.0)
    latency = queue + tool + llm_all + worker_ms + 5.0

    start_ns = T0.timestamp() * 1e9 + t * (scenario.days * 86_400 * 1_000_000_000)
    start = start_ns.astype(np.int64)
    gateway = {c: v for c, v in versions.items() if not c.startswith("worker.")}
    canon, canonical, vs_id = _stamped(gateway)

    trace = pl.int_range(0, n, eager=True).cast(pl.String).str.zfill(32)
    request = pl.DataFrame(
        {
            "trace_id": trace,
            "span_id": pl.Series([f"{i:016x}" for i in range(n)]),
            "parent_span_id": pl.Series([None] * n, dtype=pl.String),
            "name": route_names,
            "span_kind": "request",
            "start": start,
            "end": (start + latency * 1e6).astype(np.int64),
            "route": route_names,
            "tenant_id": tenant,
            "total_ms": latency,
            "ttft_ms": queue + tool + ttft,
            "tool_ms": tool,
            "queue_ms": queue,
            "final_status": np.where(failed, "failure", "success"),
            "error_code": pl.Series(np.where(failed, "UPSTREAM_TIMEOUT", "")).replace("", None),
            "status": np.where(failed, "error", "unset"),
        }
    )
    llm_start = start + ((queue + tool) * 1e6).astype(np.int64)
    llm = pl.DataFrame(
        {
            "trace_id": trace,
            "span_id": pl.Series([f"{i + n:016x}" for i in range(n)]),
            "parent_span_id": request["span_id"],
            "name": "chat",
            "span_kind": "llm",
            "operation": "chat",
            "start": llm_start,
            "end": llm_start + (llm_ms * 1e6).astype(np.int64),
            "model": model.astype(str),
            "provider": "openai",
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": cost,
            "cost_source": "genai-prices",
            "ttft_ms": ttft,
            "tenant_id": tenant,
            "status": "unset",
        }
    )
    parts = [request, llm]
    if retried.any():
        idx = np.flatnonzero(retried)
        parts.append(llm[idx].with_columns(span_id=pl.col("span_id").str.replace("^0", "r")))
    tools = np.flatnonzero(base_tool > 0)
    if len(tools):
        parts.append(
            pl.DataFrame(
                {
                    "trace_id": trace.gather(tools),
                    "span_id": pl.Series([f"t{i:015x}" for i in tools]),
                    "parent_span_id": request["span_id"].gather(tools),
                    "name": "render_pdf",
                    "span_kind": "tool",
                    "operation": "execute_tool",
                    "start": start[tools] + (queue[tools] * 1e6).astype(np.int64),
                    "end": start[tools] + ((queue[tools] + tool[tools]) * 1e6).astype(np.int64),
                    "tenant_id": tenant[tools],
                    "status": "unset",
                }
            )
        )
    version_columns = {f"version.{c}": v.astype(str) for c, v in canon.items()}
    stamp = pl.DataFrame(
        {
            "trace_id": trace,
            "version_set": canonical.astype(str),
            "version_set_id": vs_id.astype(str),
            **version_columns,
        }
    )
    spans = pl.concat(parts, how="diagonal_relaxed").join(stamp, on="trace_id", how="left")
    if scenario.worker is not None:
        worker = {
            c.removeprefix("worker."): v for c, v in versions.items() if c.startswith("worker.")
        }
        at = llm_start + (llm_all * 1e6).astype(np.int64)
        reached = np.flatnonzero(worker_tool > 0)
        worker_spans = _worker_spans(
            trace.gather(reached),
            request["span_id"].gather(reached),
            at[reached],
            worker_tool[reached],
            tenant[reached],
            {c: v[reached] for c, v in worker.items()},
        )
        spans = pl.concat([spans, worker_spans], how="diagonal_relaxed")
    schema = {**SPAN_SCHEMA, **{c: pl.String() for c in spans.columns if c.startswith("version.")}}
    return (
        spans.with_columns(
            start=pl.col("start").cast(pl.Datetime("ns", "UTC")),
            end=pl.col("end").cast(pl.Datetime("ns", "UTC")),
            service=pl.coalesce("service", pl.lit("writer-api"))
            if "service" in spans.columns
            else pl.lit("writer-api"),
            kind=pl.when(pl.col("span_kind") == "request")
            .then(pl.lit("server"))
            .otherwise(pl.lit("internal")),
        )
        .with_columns(
            duration_ms=(pl.col("end").cast(pl.Int64) - pl.col("start").cast(pl.Int64)) / 1e6,
            is_root=pl.col("parent_span_id").is_null(),
        )
        .select(
            [
                pl.col(c).cast(dtype)
                if c in spans.columns
                or c in ("service", "kind", "duration_ms", "is_root", "start", "end")
                else pl.lit(None, dtype).alias(c)
                for c, dtype in schema.items()
            ]
        )
    )


def _stamped(
    versions: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per request: the components as text, the canonical version set string and its id."""
    canon = {c: np.asarray(v, dtype=str) for c, v in sorted(versions.items())}
    n = len(next(iter(canon.values())))
    canonical = np.full(n, "", dtype=object)
    for i, (c, v) in enumerate(canon.items()):
        canonical = canonical + ((";" if i else "") + c + "=") + v.astype(object)
    ids = {s: hashlib.sha256(s.encode()).hexdigest()[:12] for s in set(canonical.tolist())}
    return canon, canonical, np.array([ids[s] for s in canonical], dtype=object)


def _worker_spans(
    trace: pl.Series,
    parent: pl.Series,
    at: np.ndarray,
    tool_ms: np.ndarray,
    tenant: np.ndarray,
    versions: dict[str, np.ndarray],
) -> pl.DataFrame:
    """The worker service's spans of each request: its request span (the gateway's call into
    it, 5 ms beyond its tool) and its tool span, stamped with the worker's own version set."""
    n = len(at)
    canon, canonical, vs_id = _stamped(versions)
    stamp = {
        "version_set": canonical.astype(str),
        "version_set_id": vs_id.astype(str),
        **{f"version.{c}": v for c, v in canon.items()},
    }
    served = pl.DataFrame(
        {
            "trace_id": trace,
            "span_id": pl.Series([f"w{i:015x}" for i in range(n)]),
            "parent_span_id": parent,
            "name": "retrieve",
            "span_kind": "request",
            "start": at,
            "end": at + ((tool_ms + 5.0) * 1e6).astype(np.int64),
            "route": "/internal/retrieve",
            "tenant_id": tenant,
            "final_status": "success",
            "status": "unset",
            **stamp,
        }
    )
    tools = pl.DataFrame(
        {
            "trace_id": trace,
            "span_id": pl.Series([f"x{i:015x}" for i in range(n)]),
            "parent_span_id": served["span_id"],
            "name": "vector_search",
            "span_kind": "tool",
            "operation": "execute_tool",
            "start": at + 2_000_000,
            "end": at + 2_000_000 + (tool_ms * 1e6).astype(np.int64),
            "tenant_id": tenant,
            "status": "unset",
            **stamp,
        }
    )
    return pl.concat([served, tools], how="diagonal").with_columns(service=pl.lit("worker"))


def write_dataset(spans: pl.DataFrame, out: Path) -> None:
    """Write spans as ``blameset ingest`` lays them out (day=YYYY-MM-DD/part.parquet)."""
    for (day,), part in (
        spans.with_columns(day=pl.col("start").dt.strftime("%Y-%m-%d"))
        .partition_by("day", as_dict=True)
        .items()
    ):
        folder = out / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        part.drop("day").write_parquet(folder / "part-0.parquet", compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spans = generate(args.scenario, args.requests, args.seed)
    write_dataset(spans, args.out)
    print(f"{spans.height} spans of {args.scenario} -> {args.out}")


if __name__ == "__main__":
    main()
