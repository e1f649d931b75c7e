"""One table mapping other instrumentations' attribute names onto the span table's columns.

Data, not code: each column lists the attributes that can fill it, first match wins, ours first.
Sources: OTel GenAI semantic conventions (current and deprecated names), OpenInference (Arize
Phoenix), Logfire, OpenLIT, Traceloop (OpenLLMetry), Langfuse.
"""

from __future__ import annotations

from typing import Final

from blameset.instrument import contract

__all__ = ["COLUMN_ALIASES", "COST_ALIASES", "VERSION_ALIASES"]

COLUMN_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "model": (
        contract.GEN_AI_RESPONSE_MODEL,
        contract.GEN_AI_REQUEST_MODEL,
        "llm.model_name",  # OpenInference
        "gen_ai.response.model",
    ),
    "provider": (
        contract.GEN_AI_PROVIDER_NAME,
        "gen_ai.system",  # OTel GenAI, deprecated
        "llm.provider",  # OpenInference
        "llm.system",
    ),
    "input_tokens": (
        contract.GEN_AI_USAGE_INPUT_TOKENS,
        "gen_ai.usage.prompt_tokens",  # OTel GenAI, deprecated
        "llm.token_count.prompt",  # OpenInference
    ),
    "output_tokens": (
        contract.GEN_AI_USAGE_OUTPUT_TOKENS,
        "gen_ai.usage.completion_tokens",  # OTel GenAI, deprecated
        "llm.token_count.completion",  # OpenInference
    ),
    "operation": (contract.GEN_AI_OPERATION_NAME, "openinference.span.kind", "traceloop.span.kind"),
    "tenant_id": (contract.TENANT_ID, "tenant.id", "langfuse.user.id"),
    "ttft_ms": (contract.LATENCY_TTFT_MS,),
    "tool_ms": (contract.LATENCY_TOOL_MS,),
    "queue_ms": (contract.LATENCY_QUEUE_MS,),
    "final_status": (contract.FINAL_STATUS,),
    "error_code": (contract.ERROR_TYPE,),
    "action_id": (contract.ACTION_ID,),
    "route": (contract.HTTP_ROUTE,),
}
"""Span-table column -> attribute names that can fill it, in order of preference."""

COST_ALIASES: Final[dict[str, str]] = {
    contract.COST_USD: "",  # ours: its source is in blameset.cost.source
    "llm.cost.total": "reported",  # OpenInference
    "operation.cost": "reported",  # Logfire
    "gen_ai.usage.cost": "reported",  # OpenLIT
}
"""Cost attributes, in order, and the cost_source they imply (ours carries its own)."""

VERSION_ALIASES: Final[dict[str, str]] = {
    "llm.prompt_template.version": "prompt",  # OpenInference
    "traceloop.prompt.version": "prompt",  # Traceloop
    "traceloop.entity.version": "entity",  # Traceloop workflow/task version
    "langfuse.release": "code",  # Langfuse
    "langfuse.version": "app",  # Langfuse
}
"""Other tools' version attributes -> our version set component."""
