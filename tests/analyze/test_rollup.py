"""The request roll-up's span-tree rules (docs/rollup.md) on trace files as other tools write
them: each LLM call counted once however many spans describe it, which span is the request,
which traces are kept apart; and a property test holding the roll-up to the rules written out
as a plain recursive walk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blameset.analyze import open_spans, requests
from blameset.analyze._requests import traffic
from blameset.instrument import contract
from blameset.instrument.cost import Pricer, Usage

T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1e9)
MS = 1_000_000
VS = "code=3f2a91c;prompt=outline@v4"
RESOURCE = {"service.name": "outline-api", contract.VERSION_SET: VS}


class Trace:
    """Spans of one trace in the flat JSONL layout, added parent first."""

    _ids: Iterator[int] = count(1)

    def __init__(self) -> None:
        self.trace_id = f"{next(self._ids):032x}"
        self.spans: list[dict[str, Any]] = []

    def span(
        self,
        name: str,
        parent: dict[str, Any] | None = None,
        *,
        start_ms: float = 0,
        end_ms: float = 100,
        kind: str = "internal",
        resource: dict[str, Any] | None = None,
        **attributes: Any,
    ) -> dict[str, Any]:
        span = {
            "trace_id": self.trace_id,
            "span_id": f"{next(self._ids):016x}",
            "parent_span_id": None if parent is None else parent["span_id"],
            "name": name,
            "kind": kind,
            "start_time_unix_nano": T0 + int(start_ms * MS),
            "end_time_unix_nano": T0 + int(end_ms * MS),
            "status": "unset",
            "status_message": None,
            "resource": RESOURCE if resource is None else resource,
            "attributes": attributes,
            "events": [],
        }
        self.spans.append(span)
        return span

    def request(
        self, name: str = "outline", parent: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A blameset request span."""
        return self.span(
            name,
            parent,
            end_ms=1000,
            **{contract.SPAN_KIND: "request", contract.FINAL_STATUS: "success"},
        )

    def ours(self, parent: dict[str, Any], usage: tuple[int, int] | None, **more: Any) -> Any:
        """A ``traced.llm`` span, with the usage it recorded (or none)."""
        attrs: dict[str, Any] = {
            contract.SPAN_KIND: "llm",
            contract.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            contract.GEN_AI_PROVIDER_NAME: "openai",
            **more,
        }
        if usage is not None:
            attrs[contract.GEN_AI_USAGE_INPUT_TOKENS] = usage[0]
            attrs[contract.GEN_AI_USAGE_OUTPUT_TOKENS] = usage[1]
        return self.span("outline", parent, start_ms=10, end_ms=900, **attrs)

    def openai_v2(self, parent: dict[str, Any], usage: tuple[int, int], **more: Any) -> Any:
        """openai-v2's span of a chat call (its attribute names)."""
        return self.span(
            "chat gpt-4o-mini",
            parent,
            start_ms=20,
            end_ms=880,
            kind="client",
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": usage[0],
                "gen_ai.usage.output_tokens": usage[1],
                **more,
            },
        )

    def openinference(self, parent: dict[str, Any], usage: tuple[int, int], **more: Any) -> Any:
        """OpenInference's span of the same call (its attribute names)."""
        return self.span(
            "ChatCompletion",
            parent,
            start_ms=15,
            end_ms=890,
            **{
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini-2024-07-18",
                "llm.provider": "openai",
                "llm.token_count.prompt": usage[0],
                "llm.token_count.completion": usage[1],
                **more,
            },
        )


def _table(tmp_path: Path, *traces: Trace) -> pl.DataFrame:
    path = tmp_path / "spans.jsonl"
    lines = [json.dumps(s) for t in traces for s in t.spans]
    path.write_text("\n".join(lines) + "\n")
    return requests(open_spans([str(path)])).collect().sort("trace_id")


def _price(inp: int, out: int, cached: int | None = None) -> float:
    cost = Pricer(warn=False).price("gpt-4o-mini-2024-07-18", "openai", Usage(inp, out, cached))[0]
    assert cost is not None
    return cost


# --- each LLM call counted once -------------------------------------------------------------


def test_a_call_under_our_llm_span_and_an_instrumentations_counts_once(tmp_path: Path) -> None:
    """traced.llm around openai-v2's span, both with the usage: tokens, cost and calls once."""
    t = Trace()
    llm = t.ours(t.request(), (1000, 200), **{contract.COST_USD: 0.0123})
    t.openai_v2(llm, (1000, 200))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (1000, 200, 1)
    assert row["cost_usd"] == pytest.approx(0.0123)  # the outer span's own cost, once


def test_an_llm_span_without_usage_takes_the_usage_beneath_it(tmp_path: Path) -> None:
    """A traced.llm that recorded nothing: the instrumentation's span below it is the call."""
    t = Trace()
    t.openai_v2(t.ours(t.request(), None), (700, 50))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (700, 50, 1)
    assert row["cost_usd"] == pytest.approx(_price(700, 50))


def test_two_instrumentations_stacked_under_ours_count_once(tmp_path: Path) -> None:
    """traced.llm > OpenInference > openai-v2, all three with the usage: one call."""
    t = Trace()
    outer = t.openinference(t.ours(t.request(), (300, 30)), (300, 30))
    t.openai_v2(outer, (300, 30))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (300, 30, 1)


def test_the_rule_reaches_through_spans_between_llm_spans(tmp_path: Path) -> None:
    """An LLM span with usage, a step span, then the instrumentation's span: still one call."""
    t = Trace()
    step = t.span("prepare", t.ours(t.request(), (400, 40)), **{contract.SPAN_KIND: "step"})
    t.openai_v2(step, (400, 40))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["llm_calls"]) == (400, 1)


def test_usage_anywhere_above_wins_over_a_gap_without_usage(tmp_path: Path) -> None:
    """LLM span with usage > LLM span without > LLM span with: the outermost counts alone."""
    t = Trace()
    middle = t.ours(t.ours(t.request(), (500, 60)), None)
    t.openai_v2(middle, (500, 60))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (500, 60, 1)


def test_an_agent_span_without_usage_counts_each_call_beneath_it(tmp_path: Path) -> None:
    """An agent LLM span that records nothing, three separate calls below: three calls, summed."""
    t = Trace()
    agent = t.ours(t.request(), None)
    for i in range(3):
        t.openai_v2(agent, (100 * (i + 1), 10))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (600, 30, 3)


def test_an_agent_span_with_summed_usage_counts_it_once_and_each_call(tmp_path: Path) -> None:
    """An agent LLM span recording its calls' total, three calls below: the total once, three
    calls (each innermost LLM span is one call to a provider)."""
    t = Trace()
    agent = t.ours(t.request(), (600, 30))
    for i in range(3):
        t.openai_v2(agent, (100 * (i + 1), 10))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (600, 30, 3)


def test_sibling_calls_are_separate_calls(tmp_path: Path) -> None:
    """A retried call is two LLM spans side by side: both count."""
    t = Trace()
    request = t.request()
    t.openai_v2(request, (100, 0))
    t.openai_v2(request, (100, 20))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["llm_calls"]) == (200, 20, 2)


def test_usage_does_not_cross_a_request_span(tmp_path: Path) -> None:
    """An LLM span around a call into another service's request: that request's own LLM call
    counts too (usage never crosses a request span)."""
    t = Trace()
    gateway = t.ours(t.request("gateway"), (50, 5))
    worker = t.request("worker", gateway)
    worker["start_time_unix_nano"] += 30 * MS  # it starts inside the gateway's LLM span
    t.openai_v2(worker, (900, 90))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"], row["llm_calls"], row["name"]) == (950, 2, "gateway")


@pytest.mark.parametrize(
    "cache_attribute",
    [
        "gen_ai.usage.cache_read.input_tokens",  # OTel GenAI, openai-v2, Traceloop
        "gen_ai.usage.cache_read_input_tokens",  # Traceloop, older
        "llm.token_count.prompt_details.cache_read",  # OpenInference
    ],
)
def test_a_foreign_span_with_cache_reads_is_priced_at_the_cached_price(
    tmp_path: Path, cache_attribute: str
) -> None:
    """A foreign span's cache reads are billed at the cached price, not the full one."""
    t = Trace()
    t.openai_v2(t.request(), (10_000, 100), **{cache_attribute: 8_000})
    row = _table(tmp_path, t).row(0, named=True)
    assert row["cost_usd"] == pytest.approx(_price(10_000, 100, 8_000))
    assert row["cost_usd"] < 0.75 * _price(10_000, 100)


def test_only_streamed_calls_have_a_first_token_and_a_time_per_token(tmp_path: Path) -> None:
    """A whole answer has no TTFT; time per output token comes from the streamed call alone."""
    t = Trace()
    request = t.request()
    whole = t.ours(request, (100, 400))
    t.openai_v2(whole, (100, 400))
    stream = t.ours(request, (100, 200), **{contract.LATENCY_TTFT_MS: 90.0})
    t.openai_v2(stream, (100, 200))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in t.spans) + "\n")
    row = traffic(open_spans([str(path)])).requests.row(0, named=True)
    assert row["ttft_ms"] == pytest.approx(90.0)
    assert row["tpot_ms"] == pytest.approx((890 - 90) / 200)  # the stream's 800 ms over its 200


# --- what a request is -----------------------------------------------------------------------


def _server(t: Trace, route: str, method: str = "GET", **attrs: Any) -> dict[str, Any]:
    """A framework's server span (FastAPI's instrumentation names and attributes)."""
    return t.span(
        f"{method} {route}",
        kind="server",
        end_ms=1200,
        **{"http.route": route, "http.request.method": method, **attrs},
    )


def test_a_server_span_around_our_request_is_not_the_request(tmp_path: Path) -> None:
    """FastAPI's server span wraps our request span: one request, ours."""
    t = Trace()
    t.openai_v2(t.ours(t.request(parent=_server(t, "/v1/outline", "POST")), (10, 1)), (10, 1))
    table = _table(tmp_path, t)
    assert table.height == 1
    assert table.row(0, named=True)["name"] == "outline"
    assert table.row(0, named=True)["latency_ms"] == pytest.approx(1000)


def test_a_trace_without_our_spans_is_one_request_at_its_root(tmp_path: Path) -> None:
    """Only OTel instrumentations: the root (the server span) is the request."""
    t = Trace()
    t.openai_v2(_server(t, "/v1/chat", "POST"), (10, 1))
    table = _table(tmp_path, t)
    assert table.height == 1
    assert table.row(0, named=True)["route"] == "/v1/chat"
    assert not table.row(0, named=True)["apart"]


def test_orphans_of_one_trace_make_one_request(tmp_path: Path) -> None:
    """Two spans whose parent is outside the capture: one request (the first to start)."""
    t = Trace()
    missing = {"span_id": "feedfacefeedface"}
    first = t.span("first", missing, start_ms=5)
    t.span("second", missing, start_ms=50)
    t.openai_v2(first, (10, 1))
    table = _table(tmp_path, t)
    assert table.height == 1 and table.row(0, named=True)["name"] == "first"


@pytest.mark.parametrize("route", ["/health", "/docs", "/openapi.json", "/api/healthz", "/readyz"])
def test_probes_and_docs_pages_are_kept_apart(tmp_path: Path, route: str) -> None:
    """A health check or docs page, versioned by the process's resource: apart, not a request."""
    probe, real = Trace(), Trace()
    _server(probe, route)
    t = real
    t.openai_v2(t.ours(t.request(parent=_server(t, "/v1/outline", "POST")), (10, 1)), (10, 1))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in probe.spans + real.spans) + "\n")
    found = traffic(open_spans([str(path)]))
    assert found.requests.height == 1
    assert found.apart_summary() == {route: 1}


def test_unversioned_traces_without_ai_work_are_apart(tmp_path: Path) -> None:
    """No blameset span, no LLM call, no version set anywhere: apart, whatever the route."""
    t = Trace()
    _server(t, "/v1/users", resource={"service.name": "crud"})
    assert _table(tmp_path, t).row(0, named=True)["apart"]


def test_a_plain_route_of_a_versioned_service_is_a_request(tmp_path: Path) -> None:
    """A versioned service's route that is no probe stays traffic, AI or not."""
    t = Trace()
    _server(t, "/v1/users")
    assert not _table(tmp_path, t).row(0, named=True)["apart"]


def test_a_docs_route_with_our_request_span_is_a_request(tmp_path: Path) -> None:
    """A route named like a probe that runs our request span is traffic: the rule reads the
    trace, not the name alone."""
    t = Trace()
    t.request("docs", parent=_server(t, "/docs"))
    assert not _table(tmp_path, t).row(0, named=True)["apart"]


# --- the rules as a recursive walk, against the roll-up ----------------------------------------

_KINDS = st.sampled_from(["llm", "llm_bare", "foreign", "step", "request"])


@st.composite
def _trees(draw: st.DrawFn) -> list[tuple[int | None, str, int]]:
    """A tree of up to 14 spans under one request: (parent index, kind, input tokens)."""
    n = draw(st.integers(1, 14))
    nodes: list[tuple[int | None, str, int]] = [(None, "request", 0)]
    for i in range(1, n + 1):
        parent = draw(st.integers(0, i - 1))
        nodes.append((parent, draw(_KINDS), draw(st.integers(1, 1000))))
    return nodes


def _expected(nodes: list[tuple[int | None, str, int]]) -> tuple[int, int]:
    """(input tokens, calls) by the rules written as a walk over the tree."""
    children: dict[int, list[int]] = {}
    for i, (parent, _, _) in enumerate(nodes):
        if parent is not None:
            children.setdefault(parent, []).append(i)

    def llm(i: int) -> bool:
        return nodes[i][1] in ("llm", "llm_bare", "foreign")

    def usage(i: int) -> bool:
        return nodes[i][1] in ("llm", "foreign")

    def llm_below(i: int) -> bool:  # an LLM span beneath, not crossing a request span
        return any(
            llm(c) or (nodes[c][1] != "request" and llm_below(c)) for c in children.get(i, [])
        )

    tokens, calls = 0, 0

    def walk(i: int, covered: bool) -> None:
        nonlocal tokens, calls
        kind = nodes[i][1]
        if kind == "request":
            covered = False
        if llm(i):
            if usage(i) and not covered:
                tokens += nodes[i][2]
            calls += not llm_below(i)
            covered = covered or usage(i)
        for c in children.get(i, []):
            walk(c, covered)

    walk(0, False)
    return tokens, calls


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(nodes=_trees())
def test_the_roll_up_follows_the_rules_on_any_tree(
    tmp_path: Path, nodes: list[tuple[int | None, str, int]]
) -> None:
    """Tokens and calls of random span trees equal the rules' walk over the same tree."""
    t = Trace()
    made: list[dict[str, Any]] = []
    for parent, kind, tokens in nodes:
        up = None if parent is None else made[parent]
        if kind == "request":
            made.append(t.request(parent=up))
        elif kind == "llm":
            made.append(t.ours(up, (tokens, 1)))  # type: ignore[arg-type]
        elif kind == "llm_bare":
            made.append(t.ours(up, None))  # type: ignore[arg-type]
        elif kind == "foreign":
            made.append(t.openai_v2(up, (tokens, 1)))  # type: ignore[arg-type]
        else:
            made.append(t.span("step", up, **{contract.SPAN_KIND: "step"}))
    row = _table(tmp_path, t).row(0, named=True)
    assert (row["input_tokens"] or 0, row["llm_calls"]) == _expected(nodes)
