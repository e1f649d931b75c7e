"""Usage, response model and finish reason read from what the OpenAI and Anthropic clients return.

Duck-typed: neither SDK is imported. An object is a provider object when its class comes from a
module of the ``openai`` or ``anthropic`` package; the decision is cached per class, so a
decorated function returning a string or a dict pays one dict lookup and nothing else.

What is read, in the OpenTelemetry GenAI convention's terms (input tokens include cache reads
and cache writes, output tokens include reasoning):

- OpenAI chat completions and completions: ``usage.prompt_tokens`` (cached:
  ``prompt_tokens_details.cached_tokens``), ``usage.completion_tokens`` (reasoning:
  ``completion_tokens_details.reasoning_tokens``), ``model``, ``choices[0].finish_reason``.
- OpenAI Responses API: ``usage.input_tokens`` (``input_tokens_details.cached_tokens``),
  ``usage.output_tokens`` (``output_tokens_details.reasoning_tokens``), ``model``, ``status``;
  in a stream, the ``response.completed`` / ``response.incomplete`` event's ``response``.
- OpenAI streams: each chunk's ``model`` and finish reason, the usage chunk (empty ``choices``)
  that ``stream_options={"include_usage": True}`` adds at the end.
- Anthropic ``Message``: ``usage.input_tokens`` + ``cache_read_input_tokens`` +
  ``cache_creation_input_tokens`` (Anthropic counts them apart), ``output_tokens``, ``model``,
  ``stop_reason``; streams: ``message_start`` (the message so far) then ``message_delta`` (its
  ``usage`` holds the final, cumulative counts; ``delta.stop_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["CallUsage", "StreamTap", "classify", "read_any", "read_response"]

Shape = Literal["none", "response", "stream", "async_stream"]

_PACKAGES: Final = ("openai", "anthropic")
_STREAM_CLASSES: Final = {"Stream": "stream", "AsyncStream": "async_stream"}
_shapes: dict[type, Shape | Literal["wrapper"]] = {}


def classify(obj: object) -> Shape:
    """What ``obj`` is to us: nothing, a provider response, or a provider (async) stream.

    By ``obj.__class__``, not ``type(obj)``: instrumentations (openai-v2, OpenInference,
    Traceloop) hand back the client's stream inside a wrapt proxy, which reports the class of
    what it wraps."""
    cls = obj.__class__
    shape = _shapes.get(cls)
    if shape is None:
        shape = _classify_type(cls)
        if len(_shapes) < 1024:  # classes are few; a bound keeps generated ones from piling up
            _shapes[cls] = shape
    if shape == "wrapper":
        return _wrapped_shape(obj)
    return shape


def _wrapped_shape(obj: object) -> Shape:
    """An instrumentation's own stream wrapper (openai-v2's keeps the client's stream in
    ``.stream``; others in ``__wrapped__`` or ``_stream``): the shape of what it wraps."""
    for name in _WRAPPED:
        inner = getattr(obj, name, None)
        if inner is not None and inner is not obj:
            shape = _shapes.get(inner.__class__) or _classify_type(inner.__class__)
            if shape in ("stream", "async_stream"):
                return shape
    return "none"


_WRAPPED: Final = ("stream", "__wrapped__", "_stream", "wrapped")


def _classify_type(cls: type) -> Shape | Literal["wrapper"]:
    module = getattr(cls, "__module__", "") or ""
    package = module.partition(".")[0]
    if package not in _PACKAGES:
        # An iterator class of a library (not a builtin generator): maybe an instrumentation's
        # stream wrapper, which only its instance can tell.
        iterates = hasattr(cls, "__next__") or hasattr(cls, "__anext__")
        return "wrapper" if iterates and package not in ("builtins", "") else "none"
    for klass in cls.__mro__:
        found = _STREAM_CLASSES.get(klass.__name__)
        if found is not None and (klass.__module__ or "").partition(".")[0] in _PACKAGES:
            return found  # type: ignore[return-value]
    return "response"  # a response, a chunk, a stream event: read_response says what it holds


@dataclass(slots=True)
class CallUsage:
    """One call's usage as recorded on its span; fields the provider did not report are None."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    model: str | None = None
    finish_reason: str | None = None
    provider: str | None = None
    uncached_input: int | None = None
    """Anthropic's own ``input_tokens``: the input that was neither read from nor written to the
    cache (kept apart because a stream's deltas may update the cache counts alone)."""

    @property
    def has_tokens(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _provider_of(obj: object) -> str | None:
    package = (getattr(obj.__class__, "__module__", "") or "").partition(".")[0]
    if package in _PACKAGES:
        return package
    for name in _WRAPPED:  # an instrumentation's wrapper around the client's stream
        inner = getattr(obj, name, None)
        if inner is not None and inner is not obj:
            package = (getattr(inner.__class__, "__module__", "") or "").partition(".")[0]
            if package in _PACKAGES:
                return package
    return None


def _read_usage(usage: Any, into: CallUsage, anthropic: bool) -> None:
    """Fill token counts from a usage object of either client (fields it lacks stay as they are)."""
    prompt = _int(getattr(usage, "prompt_tokens", None))
    if prompt is not None:  # OpenAI chat completions / completions / embeddings
        into.input_tokens = prompt
        completion = _int(getattr(usage, "completion_tokens", None))
        into.output_tokens = completion if completion is not None else 0
        details = getattr(usage, "prompt_tokens_details", None)
        if details is not None:
            into.cache_read_tokens = _int(getattr(details, "cached_tokens", None))
            write = _int(getattr(details, "cache_write_tokens", None))
            if write:
                into.cache_write_tokens = write
        out_details = getattr(usage, "completion_tokens_details", None)
        if out_details is not None:
            into.reasoning_tokens = _int(getattr(out_details, "reasoning_tokens", None))
        return
    inp = _int(getattr(usage, "input_tokens", None))
    out = _int(getattr(usage, "output_tokens", None))
    if anthropic:
        # Anthropic's input_tokens excludes both cache reads and cache writes; a message_delta's
        # usage repeats only what changed (None elsewhere), cumulatively.
        read = _int(getattr(usage, "cache_read_input_tokens", None))
        write = _int(getattr(usage, "cache_creation_input_tokens", None))
        if read is not None:
            into.cache_read_tokens = read
        if write is not None:
            into.cache_write_tokens = write
        if inp is not None:
            into.uncached_input = inp
        if into.uncached_input is not None:
            into.input_tokens = (
                into.uncached_input + (into.cache_read_tokens or 0) + (into.cache_write_tokens or 0)
            )
        if out is not None:
            into.output_tokens = out
        return
    # OpenAI Responses API
    if inp is not None:
        into.input_tokens = inp
        details = getattr(usage, "input_tokens_details", None)
        if details is not None:
            into.cache_read_tokens = _int(getattr(details, "cached_tokens", None))
    if out is not None:
        into.output_tokens = out
        out_details = getattr(usage, "output_tokens_details", None)
        if out_details is not None:
            into.reasoning_tokens = _int(getattr(out_details, "reasoning_tokens", None))


def _model(obj: Any) -> str | None:
    model = getattr(obj, "model", None)
    return model if isinstance(model, str) and model else None


def read_response(obj: Any) -> CallUsage | None:
    """Usage, model and finish reason of a whole (non-streamed) response; None when it has none."""
    try:
        provider = _provider_of(obj)
        found = CallUsage(provider=provider, model=_model(obj))
        usage = getattr(obj, "usage", None)
        if usage is not None:
            _read_usage(usage, found, provider == "anthropic")
        found.finish_reason = _finish_reason(obj)
        return found if found.has_tokens or found.model is not None else None
    except Exception:  # an unexpected shape: no usage rather than a fault in the caller
        return None


def read_any(obj: Any) -> CallUsage | None:
    """What :func:`record_usage` was handed: a response, a stream chunk or event, or a usage
    object itself (``prompt_tokens``/``input_tokens`` on it). Duck-typed: a user's own object
    of the same shape reads the same. Anthropic's counts are told apart by their cache fields."""
    try:
        if getattr(obj, "type", None) is not None and getattr(obj, "usage", None) is None:
            tap = StreamTap(obj)  # message_start, response.completed: an event carrying usage
            tap.observe(obj)
            return tap.found if tap.found.has_tokens else None
        usage = getattr(obj, "usage", None)
        holder = obj if usage is not None else None
        usage = usage if usage is not None else obj
        provider = _provider_of(obj)
        anthropic = provider == "anthropic" or (
            provider is None
            and getattr(usage, "prompt_tokens", None) is None
            and (
                hasattr(usage, "cache_read_input_tokens")
                or hasattr(usage, "cache_creation_input_tokens")
            )
        )
        found = CallUsage(provider=provider)
        if holder is not None:
            found.model = _model(holder)
            found.finish_reason = _finish_reason(holder)
        _read_usage(usage, found, anthropic)
        return found if found.has_tokens else None
    except Exception:
        return None


def _finish_reason(obj: Any) -> str | None:
    stop = getattr(obj, "stop_reason", None)  # Anthropic
    if isinstance(stop, str):
        return stop
    choices = getattr(obj, "choices", None)
    if choices:
        reason = getattr(choices[0], "finish_reason", None)
        return reason if isinstance(reason, str) else None
    status = getattr(obj, "status", None)  # Responses API
    return status if isinstance(status, str) else None


_RESPONSE_DONE: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})


class StreamTap:
    """Watches the chunks of one stream go by and keeps what they say about the call."""

    __slots__ = ("anthropic", "found")

    def __init__(self, stream: object) -> None:
        provider = _provider_of(stream)
        self.anthropic = provider == "anthropic"
        self.found = CallUsage(provider=provider)

    def observe(self, chunk: Any) -> None:
        """Read one chunk (never raises: a chunk of a shape we do not know is skipped)."""
        try:
            kind = getattr(chunk, "type", None)
            found = self.found
            if kind is None or kind == "chat.completion.chunk":  # OpenAI chat / completions
                if found.model is None:
                    found.model = _model(chunk)
                choices = getattr(chunk, "choices", None)
                if choices:
                    reason = getattr(choices[0], "finish_reason", None)
                    if isinstance(reason, str):
                        found.finish_reason = reason
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    _read_usage(usage, found, False)
            elif kind == "message_start":  # Anthropic
                message = getattr(chunk, "message", None)
                found.model = _model(message) or found.model
                usage = getattr(message, "usage", None)
                if usage is not None:
                    _read_usage(usage, found, True)
            elif kind == "message_delta":
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    _read_usage(usage, found, True)
                stop = getattr(getattr(chunk, "delta", None), "stop_reason", None)
                if isinstance(stop, str):
                    found.finish_reason = stop
            elif kind in _RESPONSE_DONE:  # OpenAI Responses API
                response = getattr(chunk, "response", None)
                done = read_response(response) if response is not None else None
                if done is not None:
                    done.provider = found.provider
                    self.found = done
        except Exception:
            return
