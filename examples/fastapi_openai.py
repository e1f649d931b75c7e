"""A FastAPI service streaming answers from the openai client, traced by blameset with the official
OpenTelemetry OpenAI instrumentation (openai-v2) on at the same time.

    pip install blameset fastapi uvicorn openai opentelemetry-instrumentation-openai-v2
    OPENAI_API_KEY=... python examples/fastapi_openai.py          # then:
    curl -N -X POST localhost:8000/v1/outline -H 'content-type: application/json' \\
         -d '{"topic": "observability"}'

No record_usage anywhere: traced.llm reads tokens (cached ones included), the answering model and
the finish reason from the completion or the stream the function returns, and the stream's span
ends when the response has been sent (TTFT: the first chunk handed over). openai-v2's own spans
land in the same traces, stamped with the version set, and each call is counted once.
``BLAMESET_INSTRUMENTOR`` picks another instrumentation to run beside blameset: ``openai-v2``
(default), ``openinference``, ``traceloop`` or ``none``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel

from blameset import instrument
from blameset.instrument import VersionSet, request_context, traced

MODEL = "gpt-4o-mini"

instrument.configure(
    service="outline-api",
    version_set=VersionSet(code="3f2a91c", model=MODEL, prompt="outline@v4"),
    exporter=os.environ.get("BLAMESET_EXPORTER", "jsonl:spans.jsonl"),
)


def instrument_openai(name: str) -> Any:
    """Turn on one OpenTelemetry OpenAI instrumentation; the instrumentor, to turn it off."""
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    elif name == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor  # type: ignore
    elif name == "traceloop":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor  # type: ignore
    else:
        return None
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    return instrumentor


instrumentor = instrument_openai(os.environ.get("BLAMESET_INSTRUMENTOR", "openai-v2"))
client = AsyncOpenAI(max_retries=0)  # OPENAI_API_KEY, OPENAI_BASE_URL
app = FastAPI()


@traced.llm(model=MODEL, provider="openai")
async def title_for(topic: str) -> Any:
    """A whole answer: its usage is read from the completion returned."""
    return await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"A title for: {topic}"}]
    )


@traced.llm(model=MODEL, provider="openai")
async def outline(topic: str) -> Any:
    """A stream: returned as it is, usage from its last chunk."""
    return await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"An outline for: {topic}"}],
        stream=True,
        stream_options={"include_usage": True},
    )


@traced("outline", route="/v1/outline")  # the request: a generator, it lasts as long as the body
async def outline_body(topic: str) -> AsyncIterator[str]:
    title = await title_for(topic)
    yield f"# {title.choices[0].message.content}\n"
    async for chunk in await outline(topic):
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


class Ask(BaseModel):
    topic: str
    tenant: str = "acme"


@app.post("/v1/outline")
async def outline_route(ask: Ask) -> StreamingResponse:
    return StreamingResponse(_in_context(outline_body(ask.topic), ask.tenant))


async def _in_context(body: AsyncIterator[str], tenant: str) -> AsyncIterator[str]:
    """Iterate the body with the request context set (StreamingResponse runs it later)."""
    with request_context(tenant=tenant):
        async for part in body:
            yield part


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
