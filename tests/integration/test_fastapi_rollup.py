"""A FastAPI service with FastAPI's own OpenTelemetry instrumentation and openai-v2 on beside
blameset, served by uvicorn on 127.0.0.1 with the real openai client against the local stand-in:
what the roll-up of its span file counts. FastAPI's server spans wrap our request spans and
openai-v2's spans sit inside our LLM spans; each request and each call must count once, and the
health check and docs pages be kept apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blameset.cli.app import app as cli
from blameset.instrument import _runtime, traced
from blameset.instrument.cost import Pricer, Usage
from blameset.instrument.testing import CapturedSpans, capture_spans
from tests.conftest import VS
from tests.integration import standins
from tests.integration.serve_example import serving

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
fastapi_otel = pytest.importorskip("opentelemetry.instrumentation.fastapi")
openai_v2 = pytest.importorskip("opentelemetry.instrumentation.openai_v2")

REQUESTS = 5
MODEL = "gpt-4o-mini"
runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """The service's span file after REQUESTS chat requests (a whole answer and a stream each),
    /health, /docs and /openapi.json; and the calls the stand-in answered."""
    import httpx

    standin = standins.start()
    out = tmp_path_factory.mktemp("fastapi") / "spans.jsonl"
    try:
        with capture_spans(version_set=VS, service="chat-api") as spans:
            _serve(spans, standin, out, httpx)
    finally:
        standin.close()
    assert len(standin.served) == 2 * REQUESTS
    return out, standin.served


def _serve(spans: CapturedSpans, standin: standins.StandIn, out: Path, httpx: Any) -> None:
    provider = _runtime.current_state().provider
    instrumentor = openai_v2.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        web = _app(openai.AsyncOpenAI(base_url=standin.url + "/v1", api_key="t", max_retries=0))
        fastapi_otel.FastAPIInstrumentor.instrument_app(web, tracer_provider=provider)
        with serving(web) as url, httpx.Client(base_url=url, timeout=30) as http:
            for path in ("/health", "/docs", "/openapi.json"):
                assert http.get(path).status_code == 200
            for i in range(REQUESTS):
                reply = http.post("/v1/chat", json={"q": f"question {i}"})
                assert reply.status_code == 200, reply.text
        # uvicorn has shut down: every request finished, every span ended and was exported
    finally:
        instrumentor.uninstrument()
    out.write_text("".join(json.dumps(s, default=str) + "\n" for s in spans.as_dicts()))


def _app(client: Any) -> Any:
    @traced.llm(model=MODEL, provider="openai")
    async def title(q: str) -> Any:
        return await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}]
        )

    @traced.llm(model=MODEL, provider="openai")
    async def body(q: str) -> Any:
        return await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": q}],
            stream=True,
            stream_options={"include_usage": True},
        )

    @traced("chat", route="/v1/chat")
    async def answer(q: str) -> str:
        text = (await title(q)).choices[0].message.content or ""
        async for chunk in await body(q):
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        return text

    web = fastapi.FastAPI()

    @web.post("/v1/chat")
    async def chat(ask: dict[str, str]) -> dict[str, str]:
        return {"text": await answer(ask["q"])}

    @web.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return web


def test_the_file_holds_fastapi_server_spans_around_our_requests(
    served: tuple[Path, list[Any]],
) -> None:
    """The set-up is the one the rules are for: FastAPI's server spans are the traces' roots,
    each chat trace has our request span below one, and openai-v2's spans below our LLM spans."""
    spans = [json.loads(line) for line in served[0].read_text().splitlines()]
    by_id = {s["span_id"]: s for s in spans}
    ours = [s for s in spans if s["attributes"].get("blameset.span.kind") == "request"]
    assert len(ours) == REQUESTS
    for request in ours:
        parent = by_id[request["parent_span_id"]]
        while parent.get("parent_span_id"):
            parent = by_id[parent["parent_span_id"]]
        assert parent["kind"] == "server" and parent["name"] == "POST /v1/chat"
    genai = [
        s
        for s in spans
        if "gen_ai.operation.name" in s["attributes"]
        and "blameset.span.kind" not in s["attributes"]
    ]
    assert len(genai) == 2 * REQUESTS
    assert all(
        by_id[s["parent_span_id"]]["attributes"]["blameset.span.kind"] == "llm" for s in genai
    )


def test_report_counts_each_request_and_call_once(served: tuple[Path, list[Any]]) -> None:
    """blameset report counts the requests served, not the server spans or the probes, with
    the stand-in's tokens exactly and its cost (cache reads at their price) within 1%."""
    out, calls = served
    result = runner.invoke(cli, ["report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output)["totals"]
    assert totals["requests"] == REQUESTS
    assert totals["input_tokens"] == sum(c.input_tokens for c in calls)
    assert totals["output_tokens"] == sum(c.output_tokens for c in calls)
    pricer = Pricer(warn=False)
    truth = sum(
        pricer.price(
            c.model, "openai", Usage(c.input_tokens, c.output_tokens, c.cache_read_tokens)
        )[0]
        or 0.0
        for c in calls
    )
    assert totals["cost_usd"] == pytest.approx(truth, rel=0.01)


def test_the_probes_are_counted_apart_by_route(served: tuple[Path, list[Any]]) -> None:
    """/health, /docs and /openapi.json are no requests: counted apart, each by its route."""
    from blameset.analyze import open_spans, requests
    from blameset.analyze._requests import traffic

    spans = open_spans([str(served[0])])
    rolled = traffic(spans)
    assert rolled.apart_summary() == {"/docs": 1, "/health": 1, "/openapi.json": 1}
    table = requests(spans).collect()
    kept = table.filter(~table["apart"])
    assert kept["llm_calls"].sum() == 2 * REQUESTS
    assert set(kept["name"]) == {"chat"}


def test_check_passes_on_the_service(served: tuple[Path, list[Any]]) -> None:
    """blameset check finds no gap: server spans and probes are not asked for request fields."""
    result = runner.invoke(cli, ["check", str(served[0])])
    assert result.exit_code == 0, result.output
