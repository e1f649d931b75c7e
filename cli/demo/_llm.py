"""The stand-in LLM provider: a chat-completions API that streams tokens with each model's
timing (time to first token, time per token), reports usage in its last chunk as providers do,
and sometimes fails as upstreams do (timeouts, rate limits, a content filter).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from blameset.instrument.errors import QuotaExceeded, SafetyViolation, UpstreamTimeout

from ._traffic import GPT_4O, GPT_4O_MINI, request_rng

__all__ = ["MODELS", "Delta", "FinalUsage", "StandInProvider", "count_tokens"]


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


MODELS = {
    # model: (median TTFT s, ms per output token range)
    GPT_4O: (0.42, (14.0, 20.0)),
    GPT_4O_MINI: (0.28, (8.0, 12.0)),
}
_PREFILL_S_PER_TOKEN = 0.00004  # a longer prompt takes longer to the first token
_CHUNK_TOKENS = 16  # tokens per streamed delta after the first (keeps the event loop light)


def count_tokens(text: str) -> int:
    """The usual rule of thumb: four characters a token."""
    return max(1, len(text) // 4)


class StandInProvider:
    """A chat-completions API stand-in. ``stream`` sleeps (simulated) for time to first token,
    then streams deltas at the model's speed, then reports usage; or fails as upstreams do."""

    async def stream(
        self, model: str, messages: list[dict[str, str]], max_tokens: int
    ) -> AsyncIterator[Delta | FinalUsage]:
        rng = request_rng.get()
        input_tokens = sum(count_tokens(m["content"]) for m in messages)
        ttft_median, tpot_range = MODELS[model]
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
