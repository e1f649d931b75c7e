"""configure() and configured(): a State built from the user's options (exporter spec, OTLP
settings, sampler, spill folder, prices, redaction), then installed in ``_runtime``.

The OpenTelemetry SDK is imported here lazily, by configure(), not when a service imports us.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _runtime, contract
from ._redact import Redactor
from ._runtime import State, logger
from ._version_set import VersionSet
from .cost import ModelPrice, Pricer
from .logs import install_log_context

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.sdk.trace.sampling import Sampler

    from ._records import Scrubber
    from ._runtime import Clock
    from ._spill import SpillWriter

__all__ = ["Options", "build_state", "configure", "configured", "default_exporter", "make_sampler"]


@dataclass(frozen=True)
class Options:
    """Everything configure() takes, resolved; a State is built from one."""

    service: str | None
    versions: VersionSet
    exporter: str | SpanExporter
    environment: str | None = None
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None
    batch: bool = True
    clock: Clock | None = None
    id_generator: IdGenerator | None = None
    processors: tuple[SpanProcessor, ...] = ()
    sampler: Sampler | float | str | None = None
    endpoint: str | None = None
    protocol: str | None = None
    headers: Mapping[str, str] | str | None = None
    timeout: float | None = None
    logs: bool = True
    spill_dir: str | Path | None = None
    spill_max_bytes: int | None = None
    capture_content: bool = False
    redact: Iterable[str | re.Pattern[str]] = ()


def configure(
    *,
    service: str | None = None,
    version_set: VersionSet | None = None,
    exporter: str | SpanExporter | None = None,
    environment: str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
    batch: bool = True,
    clock: Clock | None = None,
    id_generator: IdGenerator | None = None,
    processors: tuple[SpanProcessor, ...] = (),
    sampler: Sampler | float | str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    timeout: float | None = None,
    logs: bool = True,
    spill_dir: str | Path | None = None,
    spill_max_bytes: int | None = None,
    capture_content: bool = False,
    redact: Iterable[str | re.Pattern[str]] = (),
) -> State:
    """Set up telemetry for this process; a later call replaces an earlier one (its data flushed).

    ``exporter``: ``"jsonl:PATH"`` (the flat JSONL format, written by a background thread; log
    records go to the sibling ``*.logs.jsonl``), ``"console"`` (flat JSON lines on stdout),
    ``"otlp"`` (spans and logs over OTLP), ``"none"`` (telemetry off), or any OpenTelemetry
    ``SpanExporter``. Left out, it is ``BLAMESET_EXPORTER`` if set, else ``otlp`` when an
    ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set, else ``jsonl:blameset-spans.jsonl``.

    OTLP is addressed by ``endpoint``, ``protocol`` (``http/protobuf`` or ``grpc``), ``headers``
    and ``timeout`` (seconds), or by the standard ``OTEL_EXPORTER_OTLP_*`` variables (signal
    variants first). What cannot be exported (collector down, timeout, 5xx after the exporter's
    retries, full queue) goes to the spill folder (``spill_dir``, ``BLAMESET_SPILL_DIR``, or a
    folder under the user's cache), capped at ``spill_max_bytes`` (256 MiB).

    ``sampler``: an OTel sampler, a ratio (parent-based), or a name as in ``OTEL_TRACES_SAMPLER``
    (``"parentbased_traceidratio:0.1"``); left out, the ``OTEL_TRACES_SAMPLER`` variables decide.
    A sampled-out call still rolls up and prices its usage: sampling drops spans, not money.

    ``capture_content`` records prompt and completion text given to ``record_content``. Every
    exported signal (span names, attributes, events and status; log bodies and attributes,
    ``extra=`` fields included; audit details; the spill folder) goes through one redactor
    before it leaves the process, capture on or off: values under credential-named keys go
    whole, and free text loses provider keys, tokens, passwords, PEM keys, card numbers and
    e-mail addresses (``[REDACTED:<kind>]``). ``redact`` adds the user's own patterns.

    One provider for the process: when the application set no global OpenTelemetry tracer
    (logger) provider, blameset's becomes the global one, following later configure() calls;
    when it set an SDK provider (its own, Logfire's), blameset adds its processors to that one
    and makes its own spans with it (that provider's sampler then decides). Either way every
    span of every library (openai-v2, FastAPI...) goes through blameset's pipeline, stamped on
    start with the request context and the version set. A provider that takes no processors is
    left alone, with a warning. Set your own provider before calling configure().

    ``version_set`` defaults to :meth:`VersionSet.from_env`; ``prices`` maps model names to the
    user's own prices (checked before genai-prices); ``batch=False`` exports each span as it ends;
    ``clock`` and ``id_generator`` make spans deterministic in tests. ``OTEL_SDK_DISABLED=true``
    turns telemetry off whatever the arguments say.
    """
    options = Options(
        service=service,
        versions=version_set if version_set is not None else VersionSet.from_env(),
        exporter=exporter if exporter is not None else default_exporter(os.environ),
        environment=environment,
        resource_attributes=resource_attributes or {},
        prices=prices,
        batch=batch,
        clock=clock,
        id_generator=id_generator,
        processors=processors,
        sampler=sampler,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout=timeout,
        logs=logs,
        spill_dir=spill_dir,
        spill_max_bytes=spill_max_bytes,
        capture_content=capture_content,
        redact=tuple(redact),
    )
    new = build_state(options)
    _runtime.install(new).shutdown()
    return new


@contextlib.contextmanager
def configured(**settings: Any) -> Iterator[State]:
    """``configure(**settings)`` for the length of a ``with`` block; then the configuration that
    was in force before is back, untouched and still open (the block's own is flushed and shut).

    For a program that runs an instrumented service inside another one (the demo, a test
    harness, a notebook cell) without ending the host's telemetry. The block's configuration is
    process-wide while it lasts: other threads' calls are recorded by it too.
    """
    from . import _global

    # A placeholder takes the previous state's place, so configure() shuts that down, not it.
    previous = _runtime.install_off()
    globals_before = _global.saved()
    try:
        yield configure(**settings)
    finally:
        _runtime.install(previous).shutdown()
        # A global provider the block set is unset again (OpenTelemetry sets each once per
        # process): the next configure() or the application's own set_tracer_provider works.
        _global.restore(globals_before)


def default_exporter(environ: Mapping[str, str]) -> str:
    """The exporter spec configure() uses when none is given."""
    if environ.get("BLAMESET_EXPORTER"):
        return environ["BLAMESET_EXPORTER"]
    if any(k.startswith("OTEL_EXPORTER_OTLP") and k.endswith("ENDPOINT") for k in environ):
        return "otlp"
    return "jsonl:blameset-spans.jsonl"


def build_state(options: Options) -> State:
    """A State for these options, not yet installed (configure() and instrument.testing);
    the global OpenTelemetry providers are made to reach it (see configure())."""
    install_log_context()
    pricer = Pricer(options.prices)
    redactor = Redactor(options.redact)
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if disabled or options.exporter == "none":
        return State(
            off=True,
            version_set=options.versions,
            service=options.service,
            pricer=pricer,
            redactor=redactor,
        )
    return _build(options, pricer, redactor)


def _resource(options: Options) -> Any:
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, Any] = dict(options.resource_attributes)
    if options.service:
        attrs[contract.SERVICE_NAME] = options.service
    if "code" in options.versions:
        attrs.setdefault(contract.SERVICE_VERSION, options.versions["code"])
    if options.environment:
        attrs[contract.DEPLOYMENT_ENVIRONMENT] = options.environment
    attrs.update(options.versions.attributes)  # the set, its id and every component
    return Resource.create(attrs)


def _build(options: Options, pricer: Pricer, redactor: Redactor) -> State:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from . import _export, _global
    from ._ecosystem import ContextSpanProcessor, ProcessorChain
    from ._pipeline import exporter_timeout_s
    from ._records import Scrubber

    scrubber = Scrubber(redactor)
    resource = _resource(options)
    export_timeout = exporter_timeout_s("traces", options.timeout)
    # shutdown_on_exit=False: we register one atexit hook for whichever State is in force, not
    # one per configure() call (those would pile up, and re-run shutdowns that already failed).
    provider = TracerProvider(
        resource=resource,
        id_generator=options.id_generator,
        sampler=make_sampler(options.sampler),
        shutdown_on_exit=False,
        active_span_processor=ProcessorChain(),
    )
    installed = _global.install_global()
    # Sharing the application's provider, our spans are made by it too, so they reach its
    # exporters as well as ours (its processors hand them on to ours, through the forwarder);
    # they carry its resource, not ours, so the context processor stamps every version on them.
    shared = installed.shared
    tracer = (shared if shared is not None else provider).get_tracer("blameset")
    # First, so every other processor sees a span already stamped with the request context.
    provider.add_span_processor(
        ContextSpanProcessor(full_versions=True)
        if shared is not None
        else ContextSpanProcessor(own_scope=getattr(tracer, "_instrumentation_scope", None))
    )
    for processor in options.processors:
        provider.add_span_processor(processor)

    spec = options.exporter
    settings = _export.OtlpSettings(
        endpoint=options.endpoint,
        protocol=options.protocol,
        headers=options.headers,
        timeout=options.timeout,
    )
    log_exporter: Any = None
    spill: SpillWriter | None = None
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        if name == "jsonl":
            if not arg:
                raise ValueError("exporter 'jsonl:PATH' needs a path, e.g. 'jsonl:spans.jsonl'")
            # Through the spilling processor too: a full queue (a burst) spills, never drops.
            spill = _spill_writer(options)
            span_processor: SpanProcessor = _spilling(
                _export.JsonlSpanExporter(arg), spill, settings, scrubber
            )
            log_exporter = _export.JsonlLogExporter(_export.sibling_log_path(arg))
        elif name == "console":
            span_processor = SimpleSpanProcessor(
                _export.ScrubbingSpanExporter(_export.ConsoleSpanExporter(), scrubber)
            )
        elif name == "otlp":
            settings = _export.OtlpSettings(
                endpoint=options.endpoint,
                protocol=options.protocol or arg or None,
                headers=options.headers,
                timeout=options.timeout,
            )
            spill = _spill_writer(options)
            span_processor = _spilling(
                _export.otlp_exporter("traces", settings), spill, settings, scrubber
            )
            log_exporter = _export.otlp_exporter("logs", settings)
        else:
            raise ValueError(
                f"unknown exporter {spec!r}: use 'jsonl:PATH', 'console', 'otlp', 'none' "
                "or an OpenTelemetry SpanExporter"
            )
    elif options.batch:
        spill = _spill_writer(options)
        span_processor = _spilling(spec, spill, settings, scrubber)
    else:
        span_processor = SimpleSpanProcessor(_export.ScrubbingSpanExporter(spec, scrubber))
    provider.add_span_processor(span_processor)

    logger_provider = None
    if options.logs and log_exporter is not None:
        logger_provider = _logger_provider(
            resource,
            _export.ScrubbingLogExporter(log_exporter, scrubber),
            spill,
            settings,
            scrubber,
        )
    if logger_provider is not None:
        _global.install_global_logs()
    _warm_prices()
    return State(
        off=False,
        version_set=options.versions,
        service=options.service,
        tracer=tracer,
        provider=provider,
        logger_provider=logger_provider,
        spill=spill,
        clock=options.clock or time.time_ns,
        pricer=pricer,
        redactor=redactor,
        capture_content=options.capture_content,
        export_timeout_s=export_timeout,
    )


def _spill_writer(options: Options) -> SpillWriter:
    from ._spill import DEFAULT_MAX_BYTES, SpillWriter, default_spill_dir

    folder = Path(options.spill_dir) if options.spill_dir is not None else default_spill_dir()
    return SpillWriter(folder, options.spill_max_bytes or DEFAULT_MAX_BYTES)


def _spilling(
    exporter: SpanExporter, spill: SpillWriter, settings: Any, scrubber: Scrubber
) -> SpanProcessor:
    """Batches to ``exporter`` through the scrubber; what is spilled is scrubbed too, and re-sent
    through the same exporter when the collector answers again (store and forward)."""
    from ._export import ScrubbingSpanExporter, destination
    from ._pipeline import SpillingSpanProcessor, exporter_timeout_s

    timeout = exporter_timeout_s("traces", settings.timeout)
    scrubbing = ScrubbingSpanExporter(exporter, scrubber)
    spill.forward("spans", scrubbing, destination("traces", exporter, settings))
    return SpillingSpanProcessor(
        scrubbing,
        spill,
        export_timeout_s=timeout,
        to_dict=scrubber.span_dict,
    )


def _logger_provider(
    resource: Any, exporter: Any, spill: SpillWriter | None, settings: Any, scrubber: Scrubber
) -> LoggerProvider:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from ._pipeline import exporter_timeout_s, spilling_log_processor

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    if spill is None:  # a local JSONL file: nothing to spill to
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, schedule_delay_millis=1000)
        )
    else:
        from ._export import destination

        timeout = exporter_timeout_s("logs", settings.timeout)
        spill.forward("logs", exporter, destination("logs", exporter, settings))
        provider.add_log_record_processor(
            spilling_log_processor(
                exporter, spill, export_timeout_s=timeout, to_dict=scrubber.log_dict
            )
        )
    return provider


def make_sampler(spec: Sampler | float | str | None) -> Sampler | None:
    """A sampler from an OTel sampler, a ratio, or an ``OTEL_TRACES_SAMPLER`` name[:arg]."""
    if spec is None:
        return None  # the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    from opentelemetry.sdk.trace import sampling

    if isinstance(spec, sampling.Sampler):
        return spec
    if isinstance(spec, float | int) and not isinstance(spec, bool):
        return sampling.ParentBased(sampling.TraceIdRatioBased(float(spec)))
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        ratio = float(arg) if arg else 1.0
        known: dict[str, Callable[[], sampling.Sampler]] = {
            "always_on": lambda: sampling.ALWAYS_ON,
            "always_off": lambda: sampling.ALWAYS_OFF,
            "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
            "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
            "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
            "parentbased_traceidratio": lambda: sampling.ParentBased(
                sampling.TraceIdRatioBased(ratio)
            ),
        }
        if name in known:
            return known[name]()
    raise ValueError(
        f"sampler {spec!r} is not a Sampler, a ratio, or one of always_on, always_off, "
        "traceidratio:R, parentbased_always_on, parentbased_always_off, parentbased_traceidratio:R"
    )


def _warm_prices() -> None:
    """Import genai-prices now, on configure()'s thread, so the first priced call does not pay
    ~0.2 s inside its span.

    Not on a background thread: genai-prices imports httpx2, and a module being imported on
    one thread is visible half-initialised to every other (``sys.modules`` holds it from the
    start); the openai client reads ``sys.modules["httpx2"]``, so a request made by the
    application meanwhile failed. configure() runs at start-up, where 0.2 s is not noticed."""
    try:
        import genai_prices  # noqa: F401
    except Exception:
        logger.debug("blameset: genai-prices failed to load", exc_info=True)
