"""Other libraries' spans, made attributable like ours: one span processor configure() adds.

On start, a span that is not blameset's (openai-v2's, OpenInference's, Traceloop's, FastAPI's,
any library's) is stamped with the request context in force: the version set that serves the
request and its id, tenant, user, actor and action id; and with every version component when the
provider's resource is not ours (an application's own provider, Logfire's), so a backend sees
the versions on the span itself.

On end, a foreign GenAI span that reports token usage is rolled up into the blameset request it
ran in, priced with our prices (cache reads at the cached price), under the one-call-once rule:
inside a blameset LLM span it counts only if that span records no usage of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor

from . import _runtime, contract
from ._context import request_context_var, resolve_versions
from ._faults import internal_error
from ._version_set import span_attributes
from .cost import Usage

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span

__all__ = ["ContextSpanProcessor", "ProcessorChain", "foreign_usage"]

# Attribute names the common instrumentations write, first found wins (ours first).
_INPUT = (
    contract.GEN_AI_USAGE_INPUT_TOKENS,
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
_OUTPUT = (
    contract.GEN_AI_USAGE_OUTPUT_TOKENS,
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
_CACHE_READ = (
    contract.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens",  # Traceloop, older
    "llm.token_count.prompt_details.cache_read",  # OpenInference
)
_CACHE_WRITE = (
    contract.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
_REASONING = (
    contract.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "llm.token_count.completion_details.reasoning",
)
_MODEL = (contract.GEN_AI_RESPONSE_MODEL, "llm.model_name", contract.GEN_AI_REQUEST_MODEL)
_PROVIDER = (contract.GEN_AI_PROVIDER_NAME, "gen_ai.system", "llm.provider", "llm.system")
_GENAI_MARKERS = (
    contract.GEN_AI_OPERATION_NAME,
    "gen_ai.system",
    contract.GEN_AI_PROVIDER_NAME,
    "llm.request.type",
)


def _first(attrs: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def foreign_usage(attrs: Any) -> tuple[Usage, str | None, str | None] | None:
    """The usage, model and provider a foreign GenAI span reports; None when it reports none."""
    inp = _count(_first(attrs, _INPUT))
    out = _count(_first(attrs, _OUTPUT))
    if inp is None and out is None:
        return None
    model = _first(attrs, _MODEL)
    provider = _first(attrs, _PROVIDER)
    usage = Usage(
        inp or 0,
        out or 0,
        _count(_first(attrs, _CACHE_READ)),
        _count(_first(attrs, _CACHE_WRITE)),
        _count(_first(attrs, _REASONING)),
    )
    return (
        usage,
        model if isinstance(model, str) else None,
        provider.lower() if isinstance(provider, str) else None,
    )


def _is_genai(attrs: Any) -> bool:
    if attrs.get("openinference.span.kind") == "LLM":
        return True
    return any(name in attrs for name in _GENAI_MARKERS)


class ContextSpanProcessor(SpanProcessor):
    """Stamps foreign spans with the request context; rolls their usage up into our request.

    ``full_versions``: stamp every version component on foreign spans too (the provider is not
    ours, so its resource does not carry them). ``own_scope``: the instrumentation scope of
    blameset's own tracer in this provider, whose spans carry the context already:
    :class:`ProcessorChain` does not call this processor for them (a blameset span that does
    reach it is still left as it is, by its span kind)."""

    __slots__ = ("full_versions", "own_scope")

    def __init__(self, full_versions: bool = False, own_scope: object = None) -> None:
        self.full_versions = full_versions
        self.own_scope = own_scope

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            attrs = span.attributes or {}
            if contract.SPAN_KIND in attrs:
                if self.full_versions:  # ours, in someone else's provider: add the components
                    state = _runtime.STATE
                    ctx = request_context_var.get()
                    span.set_attributes(resolve_versions(state.version_set, ctx).attributes)
                return
            state = _runtime.STATE
            if state.off:
                return
            ctx = request_context_var.get()
            versions = resolve_versions(state.version_set, ctx)
            stamp: dict[str, Any] = dict(
                versions.attributes
                if self.full_versions
                else span_attributes(versions, state.version_set)
            )
            if ctx.tenant:
                stamp[contract.TENANT_ID] = ctx.tenant
            if ctx.user:
                stamp[contract.USER_ID] = ctx.user
            if ctx.actor:
                stamp[contract.ACTOR] = ctx.actor
            if ctx.action_id:
                stamp[contract.ACTION_ID] = ctx.action_id
            span.set_attributes(stamp)
            if _is_genai(attrs):
                from .tracing import _current

                rec = _current.get()
                while rec is not None and rec.kind != "llm" and rec.kind != "request":
                    rec = rec.parent
                if rec is not None and rec.kind == "llm":
                    rec.foreign_genai = True  # its metrics are the instrumentation's to record
        except Exception:
            internal_error("foreign span start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            attrs = span.attributes or {}
            if contract.SPAN_KIND in attrs:
                return
            found = foreign_usage(attrs)
            if found is None:
                return
            from .tracing import _current

            rec = _current.get()
            while rec is not None and rec.kind != "llm" and rec.kind != "request":
                rec = rec.parent
            if rec is None:
                return  # not inside a blameset request: analyze counts it from the file
            usage, model, provider = found
            cost = None
            if model:
                cost = rec.state.pricer.price(model, provider, usage)[0]
            row = (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.reasoning_tokens,
                cost,
                usage.cache_write_tokens,
            )
            if rec.kind == "llm":
                rec.nested.append(row)
            else:
                rec.usage_rollup.append(row)
        except Exception:
            internal_error("foreign span end")

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ProcessorChain(SynchronousMultiSpanProcessor):
    """The processors of blameset's own provider, called in order, like the SDK's chain, minus
    the calls that cannot do anything: a processor's ``on_start`` or ``_on_ending`` that it
    inherits from ``SpanProcessor`` unchanged (a no-op), and, on blameset's own spans, the
    context processor (they carry the context already).

    Why: every span pays each call, on the service's thread, and with the context processor
    first and the exporting one last that is six calls a span where a plain SDK pipeline makes
    three; measured, the two extra processors' calls were ~1 us of a request span's ~23 us
    (0.05x of the overhead budget against a raw span). Passed to ``TracerProvider`` as its
    ``active_span_processor``, a constructor argument the SDK offers for this."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        self._adding = threading.Lock()
        self._all: list[SpanProcessor] = []
        self._own_scope: object = None
        self._plan()

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        # One add at a time, the SDK's list and ours in the same order, and the hooks swapped
        # in one assignment: a span running meanwhile sees the old plan or the new one.
        with self._adding:
            super().add_span_processor(span_processor)
            self._all.append(span_processor)
            if isinstance(span_processor, ContextSpanProcessor) and span_processor.own_scope:
                self._own_scope = span_processor.own_scope
            self._plan()

    def _plan(self) -> None:
        """The bound methods each hook calls, for foreign spans and for our own."""

        def does(sp: SpanProcessor, name: str) -> bool:
            # SpanProcessor._on_ending is new in SDK 1.40; before it, no processor inherits one
            return getattr(type(sp), name, None) is not getattr(SpanProcessor, name, None)

        def own(sp: SpanProcessor) -> bool:
            return not (isinstance(sp, ContextSpanProcessor) and sp.own_scope is not None)

        starts = [sp for sp in self._all if does(sp, "on_start")]
        endings = [sp for sp in self._all if does(sp, "_on_ending")]
        ends = [sp for sp in self._all if does(sp, "on_end")]
        self._hooks = _Hooks(
            starts=tuple(sp.on_start for sp in starts),
            own_starts=tuple(sp.on_start for sp in starts if own(sp)),
            endings=tuple(sp._on_ending for sp in endings),
            own_endings=tuple(sp._on_ending for sp in endings if own(sp)),
            ends=tuple(sp.on_end for sp in ends),
            own_ends=tuple(sp.on_end for sp in ends if own(sp)),
            own_scope=self._own_scope,
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        hooks = self._hooks
        ours = hooks.own_scope is not None and span.instrumentation_scope is hooks.own_scope
        for hook in hooks.own_starts if ours else hooks.starts:
            hook(span, parent_context=parent_context)  # by name, as the SDK's chain passes it

    def _on_ending(self, span: Span) -> None:
        hooks = self._hooks
        ours = hooks.own_scope is not None and span.instrumentation_scope is hooks.own_scope
        for hook in hooks.own_endings if ours else hooks.endings:
            hook(span)

    def on_end(self, span: ReadableSpan) -> None:
        hooks = self._hooks
        ours = hooks.own_scope is not None and span.instrumentation_scope is hooks.own_scope
        for hook in hooks.own_ends if ours else hooks.ends:
            hook(span)


class _Hooks(NamedTuple):
    """What :class:`ProcessorChain` calls at each hook, replaced whole when a processor joins."""

    starts: tuple[Callable[..., None], ...]
    own_starts: tuple[Callable[..., None], ...]
    endings: tuple[Callable[..., None], ...]
    own_endings: tuple[Callable[..., None], ...]
    ends: tuple[Callable[..., None], ...]
    own_ends: tuple[Callable[..., None], ...]
    own_scope: object
