"""FastAPI with the real openai client and OpenTelemetry's OpenAI instrumentations, served on
127.0.0.1 against the local stand-in: whose spans land where, what ingest and report count, and a
client hanging up in the middle of a streamed answer."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blameset.instrument import contract, traced
from blameset.instrument.cost import Pricer, Usage
from blameset.instrument.testing import CapturedSpans, capture_spans
from tests.conftest import VS
from tests.integration import standins
from tests.integration.serve_example import serving

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 6
MODEL = "gpt-4o-mini"


@pytest.fixture
def standin() -> Iterator[standins.StandIn]:
    server = standins.start()
    yield server
    server.close()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "blameset.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


INSTRUMENTORS = {
    "openai-v2": "opentelemetry.instrumentation.openai_v2",
    "openinference": "openinference.instrumentation.openai",
    "traceloop": "opentelemetry.instrumentation.openai",
}


@dataclass
class Served:
    """One run of the example service: its span file and what the stand-in served."""

    out: Path
    calls: list[standins.Served]
    tmp: Path


@pytest.fixture(scope="module", params=list(INSTRUMENTORS))
def service_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """The example service with one OpenAI instrumentation on, in a fresh process, serving
    REQUESTS requests (each a whole answer and a stream) plus /health and /docs."""
    pytest.importorskip(INSTRUMENTORS[request.param])
    tmp = tmp_path_factory.mktemp(request.param)
    out = tmp / "spans.jsonl"
    server = standins.start()
    try:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.url + "/v1",
            "OPENAI_API_KEY": "test",
            "BLAMESET_EXPORTER": f"jsonl:{out}",
            "BLAMESET_INSTRUMENTOR": request.param,
            "BLAMESET_SPILL_DIR": str(tmp / "spill"),
            "TRACELOOP_TRACE_CONTENT": "false",
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.integration.serve_example", str(REQUESTS)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            check=False,
            timeout=240,
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-4000:]
    assert len(server.served) == 2 * REQUESTS
    return Served(out, server.served, tmp)


def test_instrumentation_spans_are_in_blameset_traces(service_run: Served):
    """Every instrumentation's GenAI spans are exported in blameset's traces, each with the
    version set and the tenant; each request rolled up its two calls once, cache reads included."""
    spans = _read_jsonl(service_run.out)
    requests = [s for s in spans if s["attributes"].get(contract.SPAN_KIND) == "request"]
    assert len(requests) == REQUESTS
    request_traces = {s["trace_id"] for s in requests}
    foreign = [s for s in spans if contract.SPAN_KIND not in s["attributes"]]
    genai = [s for s in foreign if any(k.startswith(("gen_ai.", "llm.")) for k in s["attributes"])]
    assert len(genai) >= 2 * REQUESTS, [s["name"] for s in foreign]
    for span in genai:
        assert span["trace_id"] in request_traces  # in blameset's traces, not traces of their own
        version_set = span["attributes"].get(contract.VERSION_SET) or span["resource"].get(
            contract.VERSION_SET
        )
        assert version_set == requests[0]["attributes"][contract.VERSION_SET]
        assert span["attributes"].get(contract.TENANT_ID) in {"t0", "t1", "t2"}
    total_in = sum(s["attributes"][contract.GEN_AI_USAGE_INPUT_TOKENS] for s in requests)
    total_cached = sum(
        s["attributes"][contract.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] for s in requests
    )
    assert total_in == sum(c.input_tokens for c in service_run.calls)
    assert total_cached == sum(c.cache_read_tokens for c in service_run.calls)
    streamed = [
        s
        for s in spans
        if s["attributes"].get(contract.SPAN_KIND) == "llm" and s["name"].startswith("chat")
    ]
    with_ttft = [s for s in streamed if contract.LATENCY_TTFT_MS in s["attributes"]]
    assert len(with_ttft) == REQUESTS  # the streamed call of each request, and only it
    assert [s for s in streamed if s["attributes"].get(contract.LLM_STREAMED)] == with_ttft


def test_ingest_and_report_count_each_call_and_request_once(service_run: Served):
    """ingest's totals equal the stand-in's usage (tokens exactly, cost within 1%, cached at
    the cached price); report counts the requests served, /health and /docs kept apart."""
    dataset = service_run.tmp / "dataset"
    if not dataset.exists():
        _cli("ingest", str(service_run.out), "--out", str(dataset))
    from blameset import analyze

    everything = analyze.requests(analyze.load(str(dataset))).collect()
    table = everything.filter(~everything["apart"])
    assert sorted(everything.filter(everything["apart"])["route"]) == ["/docs", "/health"]
    calls = service_run.calls
    truth_cost = sum(
        Pricer().price(
            f"{MODEL}-2024-07-18",
            "openai",
            Usage(s.input_tokens, s.output_tokens, s.cache_read_tokens),
        )[0]
        or 0.0
        for s in calls
    )
    assert table["input_tokens"].sum() == sum(s.input_tokens for s in calls)
    assert table["output_tokens"].sum() == sum(s.output_tokens for s in calls)
    assert table["llm_calls"].sum() == 2 * REQUESTS
    assert table["cost_usd"].sum() == pytest.approx(truth_cost, rel=0.01)
    assert table.height == REQUESTS
    report = json.loads(_cli("report", str(dataset), "--json"))
    assert _requests_in(report) == REQUESTS


def _requests_in(report: Any) -> int:
    """The request count of a ``blameset report --json`` document, summed over its groups."""
    rows = report.get("rows") or report.get("groups") or []
    for key in ("requests", "n", "n_requests"):
        if rows and key in rows[0]:
            return int(sum(row[key] for row in rows))
    raise AssertionError(f"no request count in the report: {report!r:.500}")


def test_a_client_hanging_up_mid_stream_ends_closed_early(standin: standins.StandIn):
    """A client that disconnects while FastAPI streams: the request and its LLM stream end
    closed early, not failed, with no framework repr in their status."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    client = openai.AsyncOpenAI(base_url=standin.url + "/v1", api_key="test", max_retries=0)
    standin.hold_after_first_chunk = asyncio_gate = __import__("threading").Event()

    @traced.llm(model=MODEL, provider="openai")
    async def outline() -> Any:
        return await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )

    @traced("outline", route="/v1/outline")
    async def body() -> AsyncIterator[str]:
        async for chunk in await outline():
            yield chunk.choices[0].delta.content or "."

    app = FastAPI()

    @app.get("/v1/outline")
    async def route() -> StreamingResponse:
        return StreamingResponse(body(), media_type="text/plain")

    with capture_spans(version_set=VS) as spans, serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"GET /v1/outline HTTP/1.1\r\nhost: x\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received or received.endswith(b"\r\n\r\n"):
                received += conn.recv(4096)  # the headers, then the first streamed bytes
            assert received.startswith(b"HTTP/1.1 200")
        # Hung up: the server notices, cancels the response, and the spans end.
        request = spans.wait_for("outline")
        llm = spans.wait_for(f"chat {MODEL}")
    asyncio_gate.set()
    _assert_closed_early(spans, request, llm)


def _assert_closed_early(spans: CapturedSpans, request: Any, llm: Any) -> None:
    for span in (request, llm):
        assert span.attributes[contract.STREAM_CLOSED_EARLY] is True
        assert contract.ERROR_TYPE not in span.attributes
        assert span.status.status_code.name == "UNSET"
        assert not span.status.description
    assert request.attributes[contract.FINAL_STATUS] == "success"


def test_cancelled_streaming_generator_is_closed_early_without_a_server():
    """The same rule at its smallest: a task cancelled inside a streaming request generator."""

    async def main(spans: CapturedSpans) -> None:
        started = asyncio.Event()
        never = asyncio.Event()

        @traced("stream")
        async def stream() -> AsyncIterator[str]:
            yield "first"
            started.set()
            await never.wait()
            yield "never"

        async def consume() -> None:
            async for _ in stream():
                pass

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with capture_spans(version_set=VS) as spans:
        asyncio.run(main(spans))
    span = spans.one("stream")
    assert span.attributes[contract.STREAM_CLOSED_EARLY] is True
    assert span.attributes[contract.FINAL_STATUS] == "success"
    assert contract.ERROR_TYPE not in span.attributes
