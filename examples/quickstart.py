"""A tiny AI writing assistant, instrumented the way a user would instrument theirs.

Runs a few requests (a streaming LLM call, a tool, a queued job, a failure), exports the spans
to JSONL through the real pipeline, then prints them as a tree. `python3 dev.py demo` runs it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from blameset import instrument
from blameset.instrument import VersionSet, record_usage, request_context, traced


@traced.llm(model="gpt-4o-2024-08-06", provider="openai")
async def stream_completion(prompt: str):
    """A stand-in LLM that streams words and reports its usage at the end, as providers do."""
    words = f"Outline for {prompt}: intro, body, conclusion".split()
    await asyncio.sleep(0.02)  # time to first token
    for word in words:
        yield word
        await asyncio.sleep(0.002)
    record_usage(input_tokens=120 + len(prompt), output_tokens=len(words) * 2)


@traced.tool("search_web")
def search(query: str) -> list[str]:
    return [f"https://example.org/{query.replace(' ', '-')}"]


@traced("generate_outline", route="/v1/outline")
async def generate_outline(topic: str) -> str:
    if not topic:
        raise ValueError("topic is empty")
    sources = search(topic)
    words = [word async for word in stream_completion(topic)]
    return " ".join(words) + f" ({len(sources)} sources)"


@traced("export_document", route="/v1/export")
async def export_document(doc_id: str) -> str:
    return f"exported {doc_id}"


async def worker(queue: asyncio.Queue) -> None:
    while True:
        job = await queue.get()
        with instrument.dequeued(instrument.QueueStamp.from_dict(job["stamp"]), "export"):
            await export_document(job["doc_id"])
        queue.task_done()


async def main() -> None:
    queue: asyncio.Queue = asyncio.Queue()
    consumer = asyncio.create_task(worker(queue))
    with request_context(tenant="acme", actor="user-42"):
        print(await generate_outline("observability for LLM apps"))
        with request_context(versions={"prompt": "outline@v5"}):  # a per-request prompt override
            await generate_outline("cost attribution")
        try:
            await generate_outline("")
        except ValueError as exc:
            print("failed as expected:", exc)
        await queue.put({"doc_id": "doc-1", "stamp": instrument.stamp().to_dict()})
    await asyncio.sleep(0.01)  # the job waits in the queue
    await queue.join()
    consumer.cancel()


def print_tree(path: Path) -> None:
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    children: dict[str | None, list[dict]] = {}
    ids = {s["span_id"] for s in spans}
    for s in sorted(spans, key=lambda s: s["start_time_unix_nano"]):
        parent = s["parent_span_id"] if s["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(s)
    labels = {  # attribute -> short label for the tree
        "blameset.final_status": "status",
        "error.type": "error",
        "blameset.latency.ttft_ms": "ttft_ms",
        "blameset.latency.tool_ms": "tool_ms",
        "blameset.latency.queue_ms": "queue_ms",
        "gen_ai.usage.input_tokens": "tokens_in",
        "gen_ai.usage.output_tokens": "tokens_out",
        "blameset.cost.usd": "cost_usd",
        "blameset.tenant.id": "tenant",
    }

    def show(span: dict, depth: int) -> None:
        a = span["attributes"]
        ms = (span["end_time_unix_nano"] - span["start_time_unix_nano"]) / 1e6
        extras = " ".join(
            f"{label}={a[k]:.4g}" if isinstance(a.get(k), float) else f"{label}={a[k]}"
            for k, label in labels.items()
            if k in a
        )
        print(
            f"{'  ' * depth}{span['name']} [{a.get('blameset.span.kind')}] {ms:.1f} ms "
            f"vs={a.get('blameset.version_set.id')} {extras}"
        )
        for child in children.get(span["span_id"], []):
            show(child, depth + 1)

    for root in children.get(None, []):
        print(f"trace {root['trace_id']}")
        show(root, 1)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "spans.jsonl"
    instrument.configure(
        service="writer-api",
        version_set=VersionSet(
            code="3f2a91c", model="gpt-4o-2024-08-06", prompt="outline@v4", config="t0.7"
        ),
        exporter=f"jsonl:{out}",
    )
    asyncio.run(main())
    instrument.shutdown()
    print(f"\nspans written to {out}:")
    print_tree(out)
