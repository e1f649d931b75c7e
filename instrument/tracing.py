"""The decorators: ``traced(name)``, ``traced.llm(...)``, ``traced.tool(name)``, ``traced.step``.

Each turns a call into an OpenTelemetry span carrying the telemetry contract. Decoration does the
work once (fixed attributes, the wrapper chosen by function kind); a call does little: read the
configuration, start a span with one attribute dict, run, set the outcome, end.

A request span rolls up what ran beneath it (first LLM call's TTFT, tool time, queue time, tokens
and cost) through a small recorder object that children find in a contextvar. Telemetry faults are
caught and logged here and never reach the decorated function's caller; the function's own
exceptions pass through untouched (same object, same traceback).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping
from datetime import UTC, datetime
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _metrics, _providers, _runtime, contract
from ._context import RequestContext, request_context_var, resolve_versions
from ._faults import internal_error
from ._guard import request_guard
from ._version_set import VersionSet, span_attributes
from .cost import Usage

if TYPE_CHECKING:
    from types import TracebackType

    from opentelemetry.trace import Span

__all__ = [
    "Traced",
    "current_recorder",
    "record_content",
    "record_first_token",
    "record_queue_time",
    "record_usage",
    "set_final_status",
    "traced",
]

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["request", "llm", "tool", "queue", "step"]

AuditHook = Callable[[BaseException, str, "Span"], None]
"""Called with (exception, span name, span) when a span ends by an exception marked audited."""

_audit_hooks: list[AuditHook] = []


def on_audited_error(hook: AuditHook) -> None:
    """Have ``hook`` called when a span ends by an exception whose code is audited
    (``SAFETY_VIOLATION``). The audit module registers its recorder here when it is imported,
    so the decorators need not import it. A hook that raises is a telemetry fault."""
    if hook not in _audit_hooks:
        _audit_hooks.append(hook)


class _Recorder:
    """Per-call state of one blameset span; a request's recorder also accumulates its children."""

    __slots__ = (
        "_request",
        "first_llm",
        "first_token_ns",
        "foreign_genai",
        "kind",
        "model",
        "nested",
        "otel_token",
        "parent",
        "pending_status",
        "provider",
        "queue_ms",
        "rec_token",
        "response_model",
        "span",
        "start_ns",
        "state",
        "streaming",
        "tap",
        "tool_ms",
        "usage",
        "usage_rollup",
    )

    def __init__(
        self, span: Span, kind: Kind, start_ns: int, parent: _Recorder | None, state: Any
    ) -> None:
        self.span = span
        self.kind = kind
        self.start_ns = start_ns
        self.parent = parent
        self.state: _runtime.State = state
        # The request this span belongs to: itself for a request (see the property), so it holds
        # no reference to itself, which would leave every recorder and its span to the cyclic
        # GC: measured, that collector's extra passes cost more than the rest of this class.
        self._request: _Recorder | None = (
            None if kind == "request" else (parent.request if parent is not None else None)
        )
        self.first_token_ns: int | None = None
        self.model: str | None = None  # kept here, not read back from the span: a sampled-out
        self.provider: str | None = None  # span records nothing, yet its call must be priced
        self.streaming = False
        self.usage: UsageRow | None = None
        # LLM spans: usage of LLM calls nested inside this one (another traced.llm, or an
        # instrumentation's GenAI span): counted only when this span records none of its own.
        self.nested: list[UsageRow] = []
        self.tap: _providers.StreamTap | None = None  # a provider stream this span watches
        self.pending_status: str | None = None
        self.response_model: str | None = None
        self.foreign_genai = False  # an instrumentation's GenAI span ran inside this one
        self.otel_token: object | None = None
        self.rec_token: contextvars.Token[_Recorder | None] | None = None
        # Roll-up lists (request recorders only): list.append is atomic, so threads may add freely.
        self.tool_ms: list[float] = []
        self.usage_rollup: list[UsageRow] = []
        self.first_llm: _Recorder | None = None
        self.queue_ms: float | None = None

    @property
    def request(self) -> _Recorder | None:
        """The request recorder this span rolls up into (itself for a request span)."""
        return self if self.kind == "request" else self._request

    # -- context ----------------------------------------------------------------------------
    def enter(self) -> None:
        """Make this span the current one (OTel context and ours). Never raises."""
        try:
            self.otel_token = otel_context.attach(trace.set_span_in_context(self.span))
            self.rec_token = _current.set(self)
        except Exception:
            internal_error("context attach")

    def exit(self) -> None:
        """Restore the context from before :meth:`enter`. Never raises."""
        token, self.rec_token = self.rec_token, None
        if token is not None:
            try:
                _current.reset(token)
            except Exception:  # entered in another context (a task or thread hand-off)
                internal_error("context detach")
        otel_token, self.otel_token = self.otel_token, None
        if otel_token is not None:
            try:
                otel_context.detach(otel_token)  # type: ignore[arg-type]
            except Exception:
                internal_error("context detach")

    def first_item(self) -> None:
        """A streaming span handed its first item to the consumer: that is its TTFT."""
        if self.first_token_ns is None:
            try:
                self.first_token_ns = self.state.clock()
            except Exception:
                internal_error("first token")

    # -- outcome ----------------------------------------------------------------------------
    def done(self, exc: BaseException | None, closed_early: bool = False) -> None:
        """Leave the span's context and end it: the usual last step of a wrapper."""
        self.exit()
        self.finish(exc, closed_early)

    def finish(self, exc: BaseException | None, closed_early: bool = False) -> None:
        """Set the outcome and roll-ups, then end the span, whatever fails first. Never raises."""
        end_ns: int | None = None
        try:
            end_ns = self.state.clock()
            if self.kind == "llm":
                self._llm_end(exc, end_ns)
            self._outcome(exc, closed_early, end_ns)
        except Exception:
            internal_error("span outcome")
        try:
            self.span.end(end_time=end_ns)  # a span must end, with or without its roll-ups
        except Exception:
            internal_error("span end")

    def _outcome(self, exc: BaseException | None, closed_early: bool, end_ns: int) -> None:
        span = self.span
        attrs: dict[str, Any] = {}
        duration_ms = (end_ns - self.start_ns) / 1e6
        kind = self.kind
        request = self.request
        if kind == "llm":
            # Only a streamed call has a time to first token: a call that returns its whole answer
            # at once has none (its duration is not a TTFT, and would pollute TTFT reports).
            if self.streaming:
                attrs[contract.LLM_STREAMED] = True
            if self.first_token_ns is not None:
                ttft_ms = (self.first_token_ns - self.start_ns) / 1e6
                attrs[contract.LATENCY_TTFT_MS] = ttft_ms
                attrs[contract.GEN_AI_TIME_TO_FIRST_CHUNK] = ttft_ms / 1e3
            if request is not None and self.first_token_ns is not None:
                # The request's TTFT is that of its earliest-started LLM call that produced a
                # token: a failed first attempt followed by a retry reports the retry's.
                first = request.first_llm
                if first is None or self.start_ns < first.start_ns:
                    request.first_llm = self
        elif kind == "tool" and request is not None and not self._inside_tool():
            request.tool_ms.append(duration_ms)  # a tool inside a tool is already counted
        if kind == "llm":
            # One LLM call, counted once: of a chain of nested LLM spans, the outermost that
            # records usage counts; those inside it are the same call seen again.
            counted = [self.usage] if self.usage is not None else self.nested
            if counted:
                outer = self._outer_llm()
                if outer is not None:
                    outer.nested.extend(counted)
                elif request is not None:
                    request.usage_rollup.extend(counted)
        elif self.usage is not None and request is not None and request is not self:
            request.usage_rollup.append(self.usage)
        if closed_early:
            attrs[contract.STREAM_CLOSED_EARLY] = True
        if kind == "request":
            self._rollup(attrs, duration_ms)
            if exc is not None:
                status = getattr(exc, "final_status", None)
                attrs[contract.FINAL_STATUS] = (
                    status if status in contract.FINAL_STATUSES else "failure"
                )
            else:
                attrs[contract.FINAL_STATUS] = self.pending_status or "success"
        if exc is not None:
            attrs[contract.ERROR_TYPE] = error_code(exc)
            retryable = getattr(exc, "retryable", None)
            if isinstance(retryable, bool):
                attrs[contract.ERROR_RETRYABLE] = retryable
            if getattr(exc, "alert", False) is True:
                attrs[contract.ERROR_ALERT] = True
            extra = getattr(exc, "span_attributes", None)  # e.g. which budget limit tripped
            if isinstance(extra, dict):
                attrs.update(extra)
        if exc is not None and getattr(exc, "audited", False) is True:
            for hook in _audit_hooks:
                try:
                    hook(exc, getattr(span, "name", ""), span)
                except Exception:
                    internal_error("audit hook")
        if not span.is_recording():  # sampled out: roll-ups done, nothing to write
            return
        span.set_attributes(attrs)
        if exc is not None:
            # Exception text often quotes the payload (a prompt, a customer's address): it passes
            # the redactor even when content capture is off.
            redact = self.state.redactor
            span.set_status(Status(StatusCode.ERROR, redact(_describe(exc))))
            span.record_exception(
                exc,
                attributes={
                    "exception.message": redact(_message(exc)),
                    "exception.stacktrace": redact(_stacktrace(exc)),
                },
                timestamp=end_ns,
                escaped=True,
            )

    def _outer_llm(self) -> _Recorder | None:
        """The nearest LLM span this one runs inside (below its request), if any."""
        parent = self.parent
        while parent is not None and parent is not self.request:
            if parent.kind == "llm":
                return parent
            parent = parent.parent
        return None

    def _llm_end(self, exc: BaseException | None, end_ns: int) -> None:
        """Usage read from a provider stream, when the function recorded none itself; metrics."""
        tap = self.tap
        if tap is not None and self.usage is None and tap.found.has_tokens:
            _apply_usage(self, tap.found, count=False)
        if _metrics.enabled():
            _metrics.record_call(self, None if exc is None else error_code(exc), end_ns)

    def _inside_tool(self) -> bool:
        parent = self.parent
        while parent is not None and parent is not self.request:
            if parent.kind == "tool":
                return True
            parent = parent.parent
        return False

    def _rollup(self, attrs: dict[str, Any], duration_ms: float) -> None:
        attrs[contract.LATENCY_TOTAL_MS] = duration_ms
        attrs[contract.LATENCY_TOOL_MS] = sum(self.tool_ms)
        llm, self.first_llm = self.first_llm, None  # read once; keeping it would be a cycle
        if llm is not None and llm.first_token_ns is not None:
            attrs[contract.LATENCY_TTFT_MS] = (llm.first_token_ns - llm.start_ns) / 1e6
        if self.queue_ms is not None:
            attrs[contract.LATENCY_QUEUE_MS] = self.queue_ms
        usages = self.usage_rollup
        if self.usage is not None:
            usages = [*usages, self.usage]
        if usages:
            attrs[contract.GEN_AI_USAGE_INPUT_TOKENS] = sum(u[0] for u in usages)
            attrs[contract.GEN_AI_USAGE_OUTPUT_TOKENS] = sum(u[1] for u in usages)
            cache = [u[2] for u in usages if u[2] is not None]
            if cache:
                attrs[contract.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = sum(cache)
            cache_write = [u[5] for u in usages if u[5] is not None]
            if cache_write:
                attrs[contract.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = sum(cache_write)
            reasoning = [u[3] for u in usages if u[3] is not None]
            if reasoning:
                attrs[contract.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = sum(reasoning)
            costs = [u[4] for u in usages if u[4] is not None]
            if costs:
                attrs[contract.COST_USD] = sum(costs)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return ""


def _stacktrace(exc: BaseException) -> str:
    import traceback

    try:
        return "".join(traceback.format_exception(exc))
    except Exception:
        return type(exc).__name__


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # an exception whose __str__ fails still gets a status
        return type(exc).__name__


UsageRow = tuple[int, int, int | None, int | None, float | None, int | None]
"""One LLM call's usage in a roll-up: input, output, cache read, reasoning, cost, cache write."""

_current: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "blameset_recorder", default=None
)
pending_queue: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "blameset_pending_queue", default=None
)
"""Set by ``dequeued``: a one-item list, so the first request started there takes the wait,
even when several start in tasks that each have their own copy of the context."""


def _take_queue_wait() -> float | None:
    """The queue wait ``dequeued`` left for the first request started in this context, if any."""
    pending = pending_queue.get()
    if not pending:
        return None
    try:
        return pending.pop()  # atomic: one queue wait, one request
    except IndexError:
        return None


def error_code(exc: BaseException) -> str:
    """The code an exception reports: its taxonomy code when it carries one, else its class name."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, str) and code:
        return code
    return type(exc).__name__


_OTEL_KIND = {
    "request": SpanKind.SERVER,
    "llm": SpanKind.CLIENT,
    "tool": SpanKind.INTERNAL,
    "queue": SpanKind.CONSUMER,
    "step": SpanKind.INTERNAL,
}


class Traced:
    """A span description: decorates functions (sync, async, generators) and is a context manager.

    Build one with :data:`traced`; it is immutable and safe to share.
    """

    __slots__ = ("_cache", "_entered", "_last", "_tool_check", "fixed", "kind", "name", "otel_kind")

    def __init__(
        self,
        name: str,
        kind: Kind | Literal["auto"],
        fixed: Mapping[str, Any],
        otel_kind: SpanKind | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.fixed = dict(fixed)
        self.otel_kind = otel_kind
        # (state generation, version set id, kind) -> attributes at span start
        self._cache: dict[tuple[int, str, str], dict[str, Any]] = {}
        self._entered: list[_Recorder | None] = []
        self._last: tuple[Any, RequestContext, str, dict[str, Any]] | None = None
        # Tool calls count against the request's budget (Budget.request()), telemetry on or off.
        self._tool_check = _tool_check(name) if kind == "tool" else None

    def __repr__(self) -> str:
        return f"traced<{self.kind}>({self.name!r})"

    # -- per call -----------------------------------------------------------------------------
    def _start(self, state: _runtime.State, enter: bool) -> _Recorder | None:
        """Start the span (and enter its context when ``enter``); None on a telemetry fault."""
        try:
            parent = _current.get()
            ctx = request_context_var.get()
            kind = self.kind
            if kind == "auto":
                kind = "step" if parent is not None and parent.request is not None else "request"
            last = self._last  # the common case: same configuration, context and kind as last call
            if last is not None and last[0] is state and last[1] is ctx and last[2] == kind:
                attrs = last[3]
            else:
                attrs = self._context_attributes(state, ctx, kind)
            queue_ms = _take_queue_wait() if kind == "request" else None
            if queue_ms is not None:
                attrs = {**attrs, contract.LATENCY_QUEUE_MS: queue_ms, contract.BOUNDARY: "async"}
            start_ns = state.clock()
            otel_kind = self.otel_kind or _OTEL_KIND[kind]
            span = state.tracer.start_span(  # type: ignore[union-attr]
                self.name, kind=otel_kind, attributes=attrs, start_time=start_ns
            )
            rec = _Recorder(span, kind, start_ns, parent, state)
            if queue_ms is not None:
                rec.queue_ms = queue_ms
            if kind == "llm":
                rec.model = self.fixed.get(contract.GEN_AI_REQUEST_MODEL)
                rec.provider = self.fixed.get(contract.GEN_AI_PROVIDER_NAME)
            if enter:
                rec.enter()
            return rec
        except Exception:
            internal_error("span start")
            return None

    def _context_attributes(
        self, state: _runtime.State, ctx: RequestContext, kind: str
    ) -> dict[str, Any]:
        """A span's start attributes in this configuration and request context: the fixed ones
        for its version set and kind, then who the request is for. Remembered for the next call
        (the spans of one request share its context), so a call usually builds no dict at all;
        the SDK copies what it is given, so one dict may serve many spans."""
        versions = resolve_versions(state.version_set, ctx) if ctx.versions is not None else None
        vs = versions or state.version_set
        key = (state.generation, vs.id, kind)
        attrs = self._cache.get(key)
        if attrs is None:
            attrs = self._fixed_attributes(key, vs, state.version_set)
        if ctx.tenant or ctx.user or ctx.actor or ctx.action_id:
            attrs = dict(attrs)
            if ctx.tenant:
                attrs[contract.TENANT_ID] = ctx.tenant
            if ctx.user:
                attrs[contract.USER_ID] = ctx.user
            if ctx.actor:
                attrs[contract.ACTOR] = ctx.actor
            if ctx.action_id:
                attrs[contract.ACTION_ID] = ctx.action_id
        self._last = (state, ctx, kind, attrs)
        return attrs

    def _fixed_attributes(
        self, key: tuple[int, str, str], vs: VersionSet, base: VersionSet
    ) -> dict[str, Any]:
        attrs = {contract.SPAN_KIND: key[2], **span_attributes(vs, base), **self.fixed}
        if len(self._cache) > 64:  # many per-request overrides: keep the cache bounded
            self._cache.clear()
        self._cache[key] = attrs
        return attrs

    # -- decorator ----------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if isinstance(fn, staticmethod | classmethod):  # @traced above @staticmethod
            return cast(F, type(fn)(self(fn.__func__)))
        if inspect.isasyncgenfunction(fn):
            wrapper: Callable[..., Any] = self._wrap_async_generator(fn)
        elif inspect.isgeneratorfunction(fn):
            wrapper = self._wrap_generator(fn)
        elif inspect.iscoroutinefunction(fn):
            wrapper = self._wrap_coroutine(fn)
        else:
            wrapper = self._wrap_function(fn)
        return cast(F, functools.wraps(fn)(wrapper))

    def _wrap_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        start = self._start
        guard_tool = self._tool_check
        llm = self.kind == "llm"
        classify = _providers.classify

        def traced_call(*args: Any, **kwargs: Any) -> Any:
            if guard_tool is not None:
                guard_tool()
            state = _runtime.STATE
            if state.off:
                return fn(*args, **kwargs)
            rec = start(state, True)
            if rec is None:
                return fn(*args, **kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                rec.done(exc)
                raise
            rec.exit()
            if type(result) is CoroutineType:  # a sync callable handing back a coroutine
                return _finish_when_awaited(rec, result)
            if llm and classify(result) != "none":  # the client's response or stream
                return _adopt(rec, result)
            rec.finish(None)
            return result

        return traced_call

    def _wrap_coroutine(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        start = self._start
        guard_tool = self._tool_check
        llm = self.kind == "llm"
        classify = _providers.classify

        async def traced_coroutine(*args: Any, **kwargs: Any) -> Any:
            if guard_tool is not None:
                guard_tool()
            state = _runtime.STATE
            if state.off:
                return await fn(*args, **kwargs)
            rec = start(state, True)
            if rec is None:
                return await fn(*args, **kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                rec.done(exc)
                raise
            if llm and classify(result) != "none":  # the client's response or stream
                rec.exit()
                return _adopt(rec, result)
            rec.done(None)
            return result

        return traced_coroutine

    def _wrap_generator(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        start = self._start
        guard_tool = self._tool_check
        llm = self.kind == "llm"

        def traced_generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            # The body runs at the consumer's first next(), so the span starts then, not when the
            # generator object is created; it ends when the consumer exhausts or closes it.
            if guard_tool is not None:
                guard_tool()
            state = _runtime.STATE
            if state.off:
                return (yield from fn(*args, **kwargs))
            rec = start(state, False)
            if rec is None:
                return (yield from fn(*args, **kwargs))
            rec.streaming = True
            rec.enter()
            try:
                inner = fn(*args, **kwargs)
            except BaseException as exc:
                rec.done(exc)
                raise
            rec.exit()
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                # Our span is the current context only while the inner generator runs: between
                # items the consumer's code runs in its own context, not inside our span.
                rec.enter()
                try:
                    if to_throw is not None:
                        exc_in, to_throw = to_throw, None
                        item = inner.throw(exc_in)
                    else:
                        item = inner.send(to_send)
                except StopIteration as stop:
                    rec.done(None)
                    return stop.value
                except BaseException as exc:
                    if _closed_by_consumer(exc):
                        rec.done(None, closed_early=True)
                    else:
                        rec.done(exc)
                    raise
                rec.exit()
                rec.first_item()
                if llm:
                    _watch(rec, item)
                try:
                    to_send = yield item
                except GeneratorExit:
                    rec.enter()
                    try:
                        inner.close()
                    except BaseException as exc:
                        rec.done(exc)
                        raise
                    rec.done(None, closed_early=True)
                    raise
                except BaseException as exc:
                    to_throw = exc

        return traced_generator

    def _wrap_async_generator(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        start = self._start
        guard_tool = self._tool_check
        llm = self.kind == "llm"

        async def traced_async_generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            # Async generators have no `yield from`: delegate by hand (asend/athrow/aclose), the
            # same loop with or without telemetry.
            if guard_tool is not None:
                guard_tool()
            state = _runtime.STATE
            rec = None if state.off else start(state, False)
            if rec is not None:
                rec.streaming = True
                rec.enter()
            try:
                inner = fn(*args, **kwargs)
            except BaseException as exc:
                if rec is not None:
                    rec.done(exc)
                raise
            if rec is not None:
                rec.exit()
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                if rec is not None:
                    rec.enter()
                try:
                    if to_throw is not None:
                        exc_in, to_throw = to_throw, None
                        item = await inner.athrow(exc_in)
                    else:
                        item = await inner.asend(to_send)
                except StopAsyncIteration:
                    if rec is not None:
                        rec.done(None)
                    return
                except BaseException as exc:
                    if rec is not None:
                        # A server framework cancels a streaming response whose client hung up:
                        # the stream was closed early, it did not fail.
                        if _closed_by_consumer(exc):
                            rec.done(None, closed_early=True)
                        else:
                            rec.done(exc)
                    raise
                if rec is not None:
                    rec.exit()
                    rec.first_item()
                    if llm:
                        _watch(rec, item)
                try:
                    to_send = yield item
                except GeneratorExit:
                    if rec is not None:
                        rec.enter()
                    try:
                        await inner.aclose()
                    except BaseException as exc:
                        if rec is not None:
                            if _closed_by_consumer(exc):
                                rec.done(None, closed_early=True)
                            else:
                                rec.done(exc)
                        raise
                    if rec is not None:
                        rec.done(None, closed_early=True)
                    raise
                except BaseException as exc:
                    to_throw = exc

        return traced_async_generator

    # -- context manager ----------------------------------------------------------------------
    # Each `with` entry pushes its own recorder on this object's list and its exit pops it:
    # `with traced(...)` makes a fresh object each time, so a block that spans a `yield` or
    # finishes in another task or thread still ends its own span. One object shared by
    # overlapping blocks (a module-level `op = traced.step(...)`) ends them last-in, first-out.
    def __enter__(self) -> Span:
        if self._tool_check is not None:
            self._tool_check()
        state = _runtime.STATE
        rec = None if state.off else self._start(state, True)
        self._entered.append(rec)
        return rec.span if rec is not None else trace.INVALID_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            rec = self._entered.pop()
        except IndexError:  # exit without enter: nothing of ours to end
            return
        if rec is not None:
            rec.done(exc)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


async def _finish_when_awaited(rec: _Recorder, coro: Coroutine[Any, Any, Any]) -> Any:
    """The span of a sync callable that returned a coroutine ends when that coroutine does."""
    rec.enter()
    try:
        result = await coro
    except BaseException as exc:
        rec.done(exc)
        raise
    if rec.kind == "llm" and _providers.classify(result) != "none":
        rec.exit()
        return _adopt(rec, result)
    rec.done(None)
    return result


def _closed_by_consumer(exc: BaseException) -> bool:
    """Whether ``exc`` is the consumer going away (a close, a task cancelled because its client
    hung up) rather than the stream failing. By class name: asyncio's and trio's cancellations,
    without importing either."""
    return isinstance(exc, GeneratorExit) or type(exc).__name__ in ("CancelledError", "Cancelled")


def _watch(rec: _Recorder, item: Any) -> None:
    """A streaming LLM span's generator yielded ``item``: read it if it is a provider chunk."""
    tap = rec.tap
    if tap is None:
        if _providers.classify(item) == "none":
            return
        tap = rec.tap = _providers.StreamTap(item)
    tap.observe(item)


def _adopt(rec: _Recorder, result: Any) -> Any:
    """An LLM span's function returned a provider object: read its usage, or, for a stream, hand
    back a wrapper that ends the span when the consumer finishes with it. Never raises."""
    try:
        shape = _providers.classify(result)
        if shape == "stream":
            rec.streaming = True
            rec.tap = _providers.StreamTap(result)
            return _TracedStream(result, rec)
        if shape == "async_stream":
            rec.streaming = True
            rec.tap = _providers.StreamTap(result)
            return _TracedAsyncStream(result, rec)
        if rec.usage is None:
            found = _providers.read_response(result)
            if found is not None:
                _apply_usage(rec, found, count=True)
    except Exception:
        internal_error("provider response")
    rec.finish(None)
    return result


class _WatchedStream:
    """What both stream wrappers share: the span's end (once), a chunk handed over, a failure,
    the close the consumer asked for, and everything else forwarded to the wrapped stream."""

    __slots__ = ("_done", "_inner", "_iter", "_rec")

    def __init__(self, inner: Any, rec: _Recorder) -> None:
        self._inner = inner
        self._iter: Any = None
        self._rec = rec
        self._done = False

    def _end(self, exc: BaseException | None, closed_early: bool = False) -> None:
        if not self._done:
            self._done = True
            self._rec.done(exc, closed_early)

    def _failed(self, exc: BaseException) -> None:
        closed = _closed_by_consumer(exc)
        self._end(None if closed else exc, closed)

    def _handed_over(self, item: Any) -> Any:
        rec = self._rec
        rec.exit()
        rec.first_item()
        tap = rec.tap
        if tap is not None:
            tap.observe(item)
        return item

    def _closed(self) -> None:
        if not self._done:
            self._done = True
            self._rec.finish(None, closed_early=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __del__(self) -> None:  # dropped unread: the span must still end
        if not getattr(self, "_done", True):
            self._closed()


class _TracedStream(_WatchedStream):
    """A provider's ``Stream`` handed back by a ``traced.llm`` function, watched as it is read.

    TTFT is the first chunk handed to the consumer; usage comes from the usage chunk; the span
    ends when the stream is exhausted, fails, or is closed (early: ``closed_early``). Anything
    else (``response``, ``until_done``...) is the wrapped stream's."""

    __slots__ = ()

    def __iter__(self) -> _TracedStream:
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            self._iter = iter(self._inner)
        if self._done:
            return next(self._iter)
        self._rec.enter()
        try:
            item = next(self._iter)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._handed_over(item)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._closed()

    def __enter__(self) -> _TracedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _TracedAsyncStream(_WatchedStream):
    """The ``AsyncStream`` counterpart of :class:`_TracedStream`."""

    __slots__ = ()

    def __aiter__(self) -> _TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._inner.__aiter__()
        if self._done:
            return await self._iter.__anext__()
        self._rec.enter()
        try:
            item = await self._iter.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._handed_over(item)

    async def close(self) -> None:
        try:
            await self._inner.close()
        finally:
            self._closed()

    aclose = close

    async def __aenter__(self) -> _TracedAsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _apply_usage(rec: _Recorder, found: _providers.CallUsage, count: bool) -> float | None:
    """Record what a provider object said on ``rec``'s span (as record_usage would)."""
    try:
        extra: dict[str, Any] = {}
        if found.finish_reason:
            extra[contract.GEN_AI_RESPONSE_FINISH_REASONS] = (found.finish_reason,)
        if found.model:
            extra[contract.GEN_AI_RESPONSE_MODEL] = found.model
            rec.response_model = found.model
        provider = rec.provider or found.provider
        if provider and rec.provider is None:
            extra[contract.GEN_AI_PROVIDER_NAME] = provider
        if extra:
            rec.span.set_attributes(extra)
        if not found.has_tokens:
            return None
        inp, out = found.input_tokens or 0, found.output_tokens or 0
        usage = Usage(
            inp, out, found.cache_read_tokens, found.cache_write_tokens, found.reasoning_tokens
        )
        cost = _record_on(rec, usage, found.model, provider, None)
    except Exception:
        internal_error("provider usage")
        return None
    if count:
        # Past the request's token limit: its next call is refused, not this finished one.
        with contextlib.suppress(Exception):
            _count_tokens(inp, out)
    return cost


def _callable_name(fn: Callable[..., Any]) -> str:
    inner = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None)
    return name if isinstance(name, str) else type(inner).__name__


class _TracedFactory:
    """``traced(name)`` and its variants ``.llm``, ``.tool``, ``.step``, ``.request``."""

    @overload
    def __call__(self, name: F, /) -> F: ...

    @overload
    def __call__(
        self,
        name: str,
        /,
        *,
        route: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Traced: ...

    def __call__(
        self,
        name: str | F,
        /,
        *,
        route: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Traced | F:
        """A request span (a step when it runs inside another request): ``@traced("outline")``.

        Bare ``@traced`` names the span after the function. ``route`` sets ``http.route``.
        """
        if not isinstance(name, str):  # bare @traced (also above @staticmethod/@classmethod)
            target = getattr(name, "__func__", name)
            return Traced(_callable_name(target), "auto", {})(name)
        fixed = dict(attributes or {})
        if route:
            fixed[contract.HTTP_ROUTE] = route
        return Traced(name, "auto", fixed)

    def request(
        self, name: str, *, route: str | None = None, attributes: Mapping[str, Any] | None = None
    ) -> Traced:
        """Always a request span, even inside another (a sub-request counted on its own)."""
        fixed = dict(attributes or {})
        if route:
            fixed[contract.HTTP_ROUTE] = route
        return Traced(name, "request", fixed)

    def step(self, name: str, *, attributes: Mapping[str, Any] | None = None) -> Traced:
        """A plain step inside a request (retrieval, parsing, ...)."""
        return Traced(name, "step", dict(attributes or {}))

    def llm(
        self,
        model: str | None = None,
        provider: str | None = None,
        *,
        operation: str = "chat",
        name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Traced:
        """An LLM call. Generators stream: TTFT is the time to the first item the consumer gets.

        Span name follows the OTel GenAI convention, ``"{operation} {model}"``. Call
        :func:`record_usage` inside to record tokens and price the call.
        """
        fixed: dict[str, Any] = {contract.GEN_AI_OPERATION_NAME: operation}
        if model:
            fixed[contract.GEN_AI_REQUEST_MODEL] = model
        if provider:
            fixed[contract.GEN_AI_PROVIDER_NAME] = provider
        fixed.update(attributes or {})
        span_name = name or (f"{operation} {model}" if model else operation)
        return Traced(span_name, "llm", fixed)

    def tool(self, name: str, *, attributes: Mapping[str, Any] | None = None) -> Traced:
        """A tool call: ``execute_tool {name}``; its duration adds to the request's tool time."""
        fixed: dict[str, Any] = {
            contract.GEN_AI_OPERATION_NAME: "execute_tool",
            contract.GEN_AI_TOOL_NAME: name,
            **(attributes or {}),
        }
        return Traced(f"execute_tool {name}", "tool", fixed)


traced = _TracedFactory()
"""``@traced("name")``, ``@traced.llm(model=, provider=)``, ``@traced.tool("name")``."""


# --- recording inside a span -------------------------------------------------------------------
def _innermost(kind: str) -> _Recorder | None:
    rec = _current.get()
    found = rec
    while found is not None and found.kind != kind:
        found = found.parent
    return found or rec


def record_usage(
    response: Any = None,
    /,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    model: str | None = None,
    provider: str | None = None,
    cost_usd: float | None = None,
) -> float | None:
    """Record one LLM call's tokens on the innermost LLM span and price it; returns the cost (USD).

    ``response`` is what the OpenAI or Anthropic client returned (a chat completion, a Responses
    API response, a ``Message``), a stream's usage chunk or final event, or a usage object
    itself: its input, output, cached, cache-creation and reasoning tokens, model and finish
    reason are read from it (keywords given as well win). A ``traced.llm`` function that
    returns the response or the stream needs no call at all.

    ``model`` is the model the provider says answered (``gen_ai.response.model``); it is priced
    instead of the requested one when given. ``cost_usd`` records a cost the provider reported
    (source ``reported``) instead of computing one. An unknown model gets no cost and one warning.
    Called again in the same span, the latest values replace the earlier ones.
    """
    if response is not None:
        found = _providers.read_any(response)
        if found is not None:
            if input_tokens is None:
                input_tokens = found.input_tokens
            if output_tokens is None:
                output_tokens = found.output_tokens
            if cache_read_tokens is None:
                cache_read_tokens = found.cache_read_tokens
            if cache_write_tokens is None:
                cache_write_tokens = found.cache_write_tokens
            if reasoning_tokens is None:
                reasoning_tokens = found.reasoning_tokens
            model = model or found.model
            provider = provider or found.provider
            if found.finish_reason:
                rec = _innermost("llm")
                if rec is not None and rec.span.is_recording():
                    rec.span.set_attribute(
                        contract.GEN_AI_RESPONSE_FINISH_REASONS, (found.finish_reason,)
                    )
    if input_tokens is None and output_tokens is None:
        return None  # nothing said what the call used
    input_tokens, output_tokens = input_tokens or 0, output_tokens or 0
    usage = Usage(
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens
    )
    cost = _record_usage(usage, model, provider, cost_usd)
    _count_tokens(input_tokens, output_tokens)  # after recording: an overrun still shows its usage
    return cost


def _record_usage(
    usage: Usage, model: str | None, provider: str | None, cost_usd: float | None
) -> float | None:
    rec = _innermost("llm")
    if rec is None:
        # No span (telemetry off, or outside any): still price what can be priced, since
        # budgets and callers use the returned cost whether or not a span records it.
        if cost_usd is not None:
            return float(cost_usd)
        if not model:
            return None
        return _runtime.STATE.pricer.price(model, provider, usage)[0]
    return _record_on(rec, usage, model, provider, cost_usd)


def _record_on(
    rec: _Recorder,
    usage: Usage,
    model: str | None,
    provider: str | None,
    cost_usd: float | None,
) -> float | None:
    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    cache_read_tokens, cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
    reasoning_tokens = usage.reasoning_tokens
    try:
        span = rec.span
        attrs: dict[str, Any] = {
            contract.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            contract.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        }
        if cache_read_tokens is not None:
            attrs[contract.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read_tokens
        if cache_write_tokens:
            attrs[contract.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_write_tokens
        if reasoning_tokens is not None:
            attrs[contract.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = reasoning_tokens
        if model:
            attrs[contract.GEN_AI_RESPONSE_MODEL] = model
            rec.response_model = model
        price_model = model or rec.model
        price_provider = provider or rec.provider
        if provider:
            attrs[contract.GEN_AI_PROVIDER_NAME] = provider
        if cost_usd is not None:
            cost: float | None = float(cost_usd)
            source: str | None = contract.COST_SOURCE_REPORTED
        else:
            at = datetime.fromtimestamp(rec.start_ns / 1e9, UTC)
            cost, source = rec.state.pricer.price(price_model, price_provider, usage, at)
        if cost is not None:
            attrs[contract.COST_USD] = cost
            attrs[contract.COST_SOURCE] = source
        span.set_attributes(attrs)
        rec.usage = (
            input_tokens,
            output_tokens,
            cache_read_tokens,
            reasoning_tokens,
            cost,
            cache_write_tokens or None,
        )
        return cost
    except Exception:
        internal_error("record_usage")
        return None


def record_content(
    *,
    input: Any = None,
    output: Any = None,
    system: Any = None,
) -> bool:
    """Record prompt and completion content on the innermost LLM span, if content capture is on.

    Off by default (``configure(capture_content=True)`` turns it on). Values (strings, or message
    lists as the provider takes them) are serialised to JSON and pass through the redactor, then
    land in ``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``.
    Returns whether anything was recorded.
    """
    rec = _innermost("llm")
    if rec is None or not rec.state.capture_content:
        return False
    try:
        redact = rec.state.redactor
        attrs: dict[str, str] = {}
        for name, value in (
            (contract.GEN_AI_INPUT_MESSAGES, input),
            (contract.GEN_AI_OUTPUT_MESSAGES, output),
            (contract.GEN_AI_SYSTEM_INSTRUCTIONS, system),
        ):
            if value is not None:
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                attrs[name] = redact(text)
        rec.span.set_attributes(attrs)
        return bool(attrs)
    except Exception:
        internal_error("record_content")
        return False


def _tool_check(name: str) -> Callable[[], None]:
    def check() -> None:
        guard = request_guard.get()
        if guard is not None:
            guard.tool_call(name)  # raises BudgetExhausted past the limit, before the tool runs

    return check


def _count_tokens(input_tokens: int, output_tokens: int) -> None:
    """Per-request token budget (``Budget.request()``): may raise BudgetExhausted, on purpose."""
    guard = request_guard.get()
    if guard is not None and isinstance(input_tokens, int) and isinstance(output_tokens, int):
        guard.add_tokens(input_tokens + output_tokens)


def record_first_token() -> None:
    """Mark now as the first token of the innermost LLM span (for streams read by hand)."""
    rec = _innermost("llm")
    if rec is not None and rec.first_token_ns is None:
        rec.first_token_ns = rec.state.clock()
        rec.streaming = True


def add_span_event(name: str, attributes: Mapping[str, Any]) -> None:
    """Add an event to the innermost blameset span when it records (a budget decision, say).

    Found through our own contextvar: nanoseconds, where OTel's current-span lookup costs a
    microsecond."""
    rec = _current.get()
    if rec is not None and rec.span.is_recording():
        rec.span.add_event(name, attributes)


def set_request_attributes(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current request span (not the innermost step); never raises."""
    rec = _current.get()
    request = rec.request if rec is not None else None
    if request is None:
        return
    try:
        if request.span.is_recording():
            request.span.set_attributes(dict(attributes))
    except Exception:
        internal_error("request attributes")


def set_final_status(status: str, *, boundary: str | None = None) -> None:
    """Set how the current request ends when it returns normally: ``degraded`` or ``blocked``.

    For fallbacks that answer instead of failing; ``boundary="degraded"`` marks the path taken.
    """
    if status not in contract.FINAL_STATUSES:
        raise ValueError(f"final status must be one of {contract.FINAL_STATUSES}, not {status!r}")
    if boundary is not None and boundary not in contract.BOUNDARIES:
        raise ValueError(f"boundary must be one of {contract.BOUNDARIES}, not {boundary!r}")
    rec = _current.get()
    request = rec.request if rec is not None else None
    if request is None:
        return
    request.pending_status = status
    if boundary is not None:
        request.span.set_attribute(contract.BOUNDARY, boundary)


def record_queue_time(queue_ms: float) -> None:
    """Set the current request's queue time, for queues that report it themselves."""
    rec = _current.get()
    request = rec.request if rec is not None else None
    if request is not None:
        request.queue_ms = float(queue_ms)


def current_recorder() -> object | None:
    """The recorder of the innermost blameset span in this context, None outside every one:
    what a test harness checks to see that no span of ours was left current (not a per-call
    path; the decorators read the contextvar themselves)."""
    return _current.get()


def current_span() -> Span:
    """The innermost span (ours or any other instrumentation's)."""
    return trace.get_current_span()
