"""The telemetry contract: every attribute name blameset writes or reads, in one place.

Names under ``blameset.`` are ours; the rest are OpenTelemetry semantic conventions. The analyzer
imports this module (and only this one) from instrument, so a name changes here or nowhere.
"""

from __future__ import annotations

from typing import Final

# --- resource -------------------------------------------------------------------------------
SERVICE_NAME: Final = "service.name"
"""Resource: the logical service name given to ``configure(service=...)``."""
SERVICE_VERSION: Final = "service.version"
"""Resource: the code version (the version set's ``code`` component)."""
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment.name"
"""Resource: where the service runs (production, staging, ...)."""

# --- version set ----------------------------------------------------------------------------
VERSION_SET: Final = "blameset.version_set"
"""Canonical version set string: components sorted by name, ``name=value`` joined with ``;``.
On every span (the set that served it, authoritative) and on the resource (the configured set)."""
VERSION_SET_ID: Final = "blameset.version_set.id"
"""First 12 hex digits of sha256 of the canonical string: the fingerprint reports group by.
On every span and on the resource."""
VERSION_PREFIX: Final = "blameset.version."
"""Prefix of one attribute per component: ``blameset.version.<component>``. The resource holds
every component of the configured set; a span holds only those its request overrode (``""`` for
one the override removed), so resource-then-span merging gives each span's true value."""


def version_attribute(component: str) -> str:
    """Attribute name of one version component, e.g. ``blameset.version.prompt``."""
    return VERSION_PREFIX + component


# --- operation ------------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
"""OTel GenAI operation: chat, text_completion, embeddings, execute_tool, invoke_agent."""
SPAN_KIND: Final = "blameset.span.kind"
"""Our role of a span: one of :data:`SPAN_KINDS`."""
SPAN_KINDS: Final = ("request", "llm", "tool", "queue", "step")
"""Values of :data:`SPAN_KIND`. A request span is the unit reports and attribution count."""

# --- model and provider ---------------------------------------------------------------------
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
"""Model the caller asked for."""
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
"""Model the provider says answered (often a dated snapshot of the requested one)."""
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
"""Provider: openai, anthropic, aws.bedrock, ..."""

# --- tokens ---------------------------------------------------------------------------------
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
"""Input (prompt) tokens, cache reads included, as the OTel GenAI conventions count them."""
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
"""Output (completion) tokens, reasoning tokens included."""
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
"""The part of the input tokens served from the provider's prompt cache."""
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
"""The part of the output tokens spent on reasoning."""
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
"""The part of the input tokens written to the provider's prompt cache (billed apart)."""
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
"""Why the model stopped, one per choice: ``stop``, ``length``, ``end_turn``, ``tool_calls``..."""

# --- cost -----------------------------------------------------------------------------------
COST_USD: Final = "blameset.cost.usd"
"""Total cost of the call (LLM span) or of everything beneath (request span), in USD."""
COST_SOURCE: Final = "blameset.cost.source"
"""Where the cost came from: ``genai-prices@<version>``, ``override``, ``reported``."""
COST_SOURCE_OVERRIDE: Final = "override"
COST_SOURCE_REPORTED: Final = "reported"
COST_SOURCE_GENAI_PRICES_PREFIX: Final = "genai-prices@"

# --- latency --------------------------------------------------------------------------------
GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
"""OTel GenAI: seconds from the start of a streaming call to its first chunk."""
LATENCY_TTFT_MS: Final = "blameset.latency.ttft_ms"
"""Milliseconds to the first token: an LLM span's own; on a request span, its first LLM call's."""
LATENCY_TOOL_MS: Final = "blameset.latency.tool_ms"
"""Request span: summed duration of the tool spans beneath it (parallel tools add up)."""
LATENCY_QUEUE_MS: Final = "blameset.latency.queue_ms"
"""Time the work waited in a queue: enqueue to start of work."""
LATENCY_TOTAL_MS: Final = "blameset.latency.total_ms"
"""Request span and log records: the span's duration in milliseconds (queue time excluded)."""

# --- outcome --------------------------------------------------------------------------------
FINAL_STATUS: Final = "blameset.final_status"
"""How the request ended, one of :data:`FINAL_STATUSES`."""
FINAL_STATUSES: Final = ("success", "failure", "degraded", "blocked")
ERROR_TYPE: Final = "error.type"
"""Taxonomy code (``INVALID_INPUT``, ``BUDGET_EXHAUSTED``, ...) or the exception's class name."""
ERROR_RETRYABLE: Final = "blameset.error.retryable"
"""Whether the error's code allows a retry."""
ERROR_ALERT: Final = "blameset.error.alert"
"""True when the error's code should page someone (the taxonomy's alert column)."""
BUDGET_LEVEL: Final = "blameset.budget.level"
"""Which budget refused or degraded the request: ``request``, ``tenant`` or ``global``."""
BUDGET_LIMIT: Final = "blameset.budget.limit"
"""Which limit tripped: ``request_max_tool_calls``, ``tenant_per_day_usd``, ``spike_ratio``..."""
BUDGET_BREAKER: Final = "blameset.budget.breaker"
"""The global breaker's state when it refused: ``open`` or ``half_open``."""
BUDGET_LATE_SETTLE: Final = "blameset.budget.late_settle"
"""Span event, and True on the request span: a hold settled after it had expired (its room may
have been reserved again meanwhile, so the limit may be overspent by it)."""
BUDGET_OVERSPENT: Final = "blameset.budget.overspent"
"""Span event, and True on the request span: a settle left a window's spend over its limit."""
RETRY_ATTEMPTS: Final = "blameset.retry.attempts"
"""On the span around a retried call: how many attempts it took (1 = no retry)."""
RETRY_EVENT: Final = "blameset.retry"
"""Span event per failed attempt that is retried: attempt, error.type, delay_ms."""

# --- who ------------------------------------------------------------------------------------
TENANT_ID: Final = "blameset.tenant.id"
USER_ID: Final = "user.id"
ACTOR: Final = "blameset.actor"

# --- idempotency, boundary, route, tool -----------------------------------------------------
ACTION_ID: Final = "blameset.action_id"
"""The client-made id of one user action; idempotency keys and audit records carry it."""
IDEMPOTENCY_HIT: Final = "blameset.idempotency.hit"
"""True when the result came from the idempotency store instead of running the work."""
BOUNDARY: Final = "blameset.boundary"
"""Which path the work took: one of :data:`BOUNDARIES`."""
BOUNDARIES: Final = ("sync", "async", "degraded")
HTTP_ROUTE: Final = "http.route"
"""The route template; where absent, reports use the request span's name."""
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"

# --- content (recorded only when content capture is on, always redacted) ----------------------
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
"""The prompt messages, JSON; only with ``configure(capture_content=True)``."""
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
"""The completion messages, JSON; only with ``configure(capture_content=True)``."""
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
"""The system prompt; only with ``configure(capture_content=True)``."""

# --- streaming ------------------------------------------------------------------------------
STREAM_CLOSED_EARLY: Final = "blameset.stream.closed_early"
"""True when the consumer closed a streaming span before the producer finished."""
LLM_STREAMED: Final = "blameset.llm.streamed"
"""True on an LLM span whose call streamed its answer (a generator, a returned provider stream,
or ``record_first_token``): only such a call has a TTFT, the first chunk handed to the consumer.
Absent on a call that returned its whole answer at once, which has no TTFT."""

# --- log records ----------------------------------------------------------------------------
LOG_TRACE_ID: Final = "trace_id"
"""Attribute added to stdlib ``logging.LogRecord`` objects inside a span (32 hex, or "")."""
LOG_SPAN_ID: Final = "span_id"
"""Attribute added to stdlib ``logging.LogRecord`` objects inside a span (16 hex, or "")."""
LOG_VERSION_SET_ID: Final = "version_set_id"
"""Attribute added to stdlib ``logging.LogRecord`` objects: the version set in force."""
LOG_TENANT_ID: Final = "tenant_id"
"""Attribute added to stdlib ``logging.LogRecord`` objects: the tenant in context, or ""."""

__all__ = sorted(name for name in dir() if name.isupper() or name == "version_attribute")
