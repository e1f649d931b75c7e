import asyncio

from blameset import instrument
from blameset.instrument import (
    Budget,
    VersionSet,
    degrade,
    idempotent,
    record_usage,
    request_context,
    traced,
)

instrument.configure(
    service="writer-api",
    version_set=VersionSet(
        code="3f2a91c", model="gpt-4o-2024-08-06", prompt="outline@v4", config="t0.7"
    ),  # or VersionSet.from_env()
    exporter="jsonl:spans.jsonl",  # or "otlp" (OTEL_EXPORTER_OTLP_*), "console", any SpanExporter
)
budget = Budget(store="memory", tenant_per_day_usd=10.0)  # or sqlite:PATH, redis://HOST:PORT/DB


class Provider:
    """Stands in for your LLM client: streams chunks, reports usage at the end."""

    async def stream(self, prompt: str):
        await asyncio.sleep(0.05)  # time to first token
        for word in f"An outline for {prompt}: why, how, what next".split():
            yield word
            await asyncio.sleep(0.01)
        self.usage = (400 + len(prompt), 24, 256)  # input (cache reads included), output, cached


provider = Provider()


@traced.llm(model="gpt-4o-2024-08-06", provider="openai")
async def complete(prompt: str):
    async for chunk in provider.stream(prompt):  # TTFT = time to the first item yielded
        yield chunk
    input_tokens, output_tokens, cached = provider.usage
    # Priced by genai-prices, cache reads at the cached price. With the openai or anthropic
    # client, return its response or stream instead: traced.llm reads the usage itself.
    record_usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached)


@traced.tool("search_sources")
def search_sources(topic: str) -> list[str]:
    return [f"https://example.org/{topic.replace(' ', '-')}"]


@traced("generate_outline", route="/v1/outline")  # a request: rolls up what ran beneath it
@degrade(lambda topic: "(cached outline)")  # a budget said no: answer degraded, not failed
async def generate_outline(topic: str) -> str:
    with budget.request():  # per request: at most 10 tool calls, 100k tokens
        sources = search_sources(topic)
        estimate = budget.estimate("gpt-4o-2024-08-06", input_tokens=500, max_output_tokens=200)
        with budget.reserve(tenant="acme", estimate_usd=estimate, route="/v1/outline") as hold:
            words = [w async for w in complete(topic)]
            hold.settle()  # at the estimate; settle(actual_usd=...) with the call's real cost
    return " ".join(words) + f" [{len(sources)} sources]"


@traced("export_document", route="/v1/export")
@idempotent(key=lambda doc_id: doc_id, store="memory")  # a retried export runs once
async def export_document(doc_id: str) -> dict[str, str]:
    return {"doc_id": doc_id, "url": f"https://example.org/docs/{doc_id}.pdf"}


async def main() -> None:
    with request_context(tenant="acme", actor="user-42"):
        print(await generate_outline("observability for LLM apps"))
        with request_context(versions={"prompt": "outline@v5"}):  # a canary's override
            print(await generate_outline("cost attribution"))
        first = await export_document("doc-1")
        assert await export_document("doc-1") == first  # the duplicate is served from the store
    instrument.shutdown()  # flush: spans.jsonl now holds every span


asyncio.run(main())
