"""The process-wide telemetry configuration: one immutable State, swapped whole by configure().

Decorated calls read the module global ``STATE`` once per call; a State never changes after it is
built, so a call sees one consistent configuration even while another thread reconfigures.
The OpenTelemetry SDK is imported here lazily, by configure(), not when a service imports us.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from instrument import contract
from instrument.cost import ModelPrice, Pricer
from instrument.version_set import VersionSet

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer

__all__ = ["State", "configure", "current_state", "shutdown"]

logger = logging.getLogger("blameset")

Clock = Callable[[], int]
"""Returns the time as integer nanoseconds since the Unix epoch (``time.time_ns``)."""

_generation = itertools.count(1)


@dataclass(frozen=True, slots=True, eq=False)
class State:
    """One configuration. ``off`` means decorated calls go straight to the function."""

    off: bool
    version_set: VersionSet
    service: str | None = None
    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    clock: Clock = time.time_ns
    pricer: Pricer = field(default_factory=Pricer)
    generation: int = field(default_factory=lambda: next(_generation))

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush and close this configuration's pipeline (never raises)."""
        if self.provider is None:
            return
        try:
            self.provider.force_flush(timeout_millis)
        except Exception:
            logger.exception("blameset: flushing spans at shutdown failed")
        try:
            self.provider.shutdown()
        except Exception:
            logger.exception("blameset: shutting down the span pipeline failed")


STATE: State = State(off=True, version_set=VersionSet())
"""The configuration in force. Unconfigured means off: nothing is recorded before configure()."""

_lock = threading.Lock()
_atexit_registered = False


def current_state() -> State:
    return STATE


def install(state: State) -> State:
    """Make ``state`` the one in force; return the previous one, still open (tests restore it)."""
    global STATE, _atexit_registered
    with _lock:
        previous, STATE = STATE, state
        if not _atexit_registered and state.provider is not None:
            atexit.register(shutdown)
            _atexit_registered = True
    return previous


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
    sampler: Sampler | None = None,
) -> State:
    """Set up telemetry for this process; a later call replaces an earlier one (its spans flushed).

    ``exporter``: ``"jsonl:PATH"`` (the flat JSONL format, written by a background thread),
    ``"console"`` (flat JSON lines on stdout), ``"otlp"`` (OTLP over the protocol the
    ``OTEL_EXPORTER_OTLP_*`` variables choose), ``"none"`` (telemetry off), or any OpenTelemetry
    ``SpanExporter``. Left out, it is ``BLAMESET_EXPORTER`` if set, else ``otlp`` when an
    ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set, else ``jsonl:blameset-spans.jsonl``.
    ``version_set`` defaults to :meth:`VersionSet.from_env`. ``prices`` maps model
    names to the user's own prices (checked before genai-prices). ``batch=False`` exports each span
    as it ends (tests); ``clock`` and ``id_generator`` make spans deterministic in tests.
    ``sampler`` is any OTel sampler (default: the SDK's, parent-based always-on); a sampled-out
    call still runs its roll-ups and prices its usage, it only records no span.
    ``OTEL_SDK_DISABLED=true`` turns telemetry off whatever the arguments say.
    """
    versions = version_set if version_set is not None else VersionSet.from_env()
    pricer = Pricer(prices)
    if exporter is None:
        exporter = default_exporter(os.environ)
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if disabled or exporter == "none":
        new = State(off=True, version_set=versions, service=service, pricer=pricer)
    else:
        new = _build(
            service=service,
            versions=versions,
            exporter=exporter,
            environment=environment,
            resource_attributes=resource_attributes or {},
            pricer=pricer,
            batch=batch,
            clock=clock or time.time_ns,
            id_generator=id_generator,
            processors=processors,
            sampler=sampler,
        )
    from instrument.logs import install_log_context

    install_log_context()
    previous = install(new)
    previous.shutdown()
    return new


def build_state(
    *,
    service: str | None,
    versions: VersionSet,
    exporter: str | SpanExporter,
    prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
    batch: bool = True,
    clock: Clock | None = None,
    id_generator: IdGenerator | None = None,
    sampler: Sampler | None = None,
) -> State:
    """A State that records through ``exporter``, not yet installed (for instrument.testing)."""
    from instrument.logs import install_log_context

    install_log_context()
    return _build(
        service=service,
        versions=versions,
        exporter=exporter,
        environment=None,
        resource_attributes={},
        pricer=Pricer(prices),
        batch=batch,
        clock=clock or time.time_ns,
        id_generator=id_generator,
        processors=(),
        sampler=sampler,
    )


def default_exporter(environ: Mapping[str, str]) -> str:
    """The exporter spec configure() uses when none is given."""
    if environ.get("BLAMESET_EXPORTER"):
        return environ["BLAMESET_EXPORTER"]
    if any(k.startswith("OTEL_EXPORTER_OTLP") and k.endswith("ENDPOINT") for k in environ):
        return "otlp"
    return "jsonl:blameset-spans.jsonl"


def _build(
    *,
    service: str | None,
    versions: VersionSet,
    exporter: str | SpanExporter,
    environment: str | None,
    resource_attributes: Mapping[str, Any],
    pricer: Pricer,
    batch: bool,
    clock: Clock,
    id_generator: IdGenerator | None,
    processors: tuple[SpanProcessor, ...],
    sampler: Sampler | None = None,
) -> State:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from instrument.export import make_exporter

    attrs: dict[str, Any] = dict(resource_attributes)
    if service:
        attrs[contract.SERVICE_NAME] = service
    if "code" in versions:
        attrs.setdefault(contract.SERVICE_VERSION, versions["code"])
    if environment:
        attrs[contract.DEPLOYMENT_ENVIRONMENT] = environment
    attrs.update(versions.attributes)  # the set, its id and every component
    resource = Resource.create(attrs)

    span_exporter, prefers_simple = make_exporter(exporter)
    # shutdown_on_exit=False: we register one atexit hook for whichever State is in force, not
    # one per configure() call (those would pile up, and re-run shutdowns that already failed).
    provider = TracerProvider(
        resource=resource, id_generator=id_generator, sampler=sampler, shutdown_on_exit=False
    )
    for processor in processors:
        provider.add_span_processor(processor)
    if batch and not prefers_simple:
        provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=1000))
    else:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = provider.get_tracer("blameset")
    _warm_prices()
    return State(
        off=False,
        version_set=versions,
        service=service,
        tracer=tracer,
        provider=provider,
        clock=clock,
        pricer=pricer,
    )


_warmed = False


def _warm_prices() -> None:
    """Load genai-prices on a background thread, so the first priced call does not pay ~0.2 s
    inside its span."""
    global _warmed
    if _warmed:
        return
    _warmed = True

    def load() -> None:
        try:
            import genai_prices  # noqa: F401
        except Exception:
            logger.debug("blameset: genai-prices failed to load", exc_info=True)

    threading.Thread(target=load, name="blameset-prices-warmup", daemon=True).start()


def shutdown(timeout_millis: int = 30_000) -> None:
    """Flush what is pending and turn telemetry off (also runs at interpreter exit)."""
    previous = install(State(off=True, version_set=STATE.version_set, service=STATE.service))
    previous.shutdown(timeout_millis)


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Export what is pending now, keeping the pipeline open. True when everything went out."""
    provider = STATE.provider
    if provider is None:
        return True
    try:
        return bool(provider.force_flush(timeout_millis))
    except Exception:
        logger.exception("blameset: flushing spans failed")
        return False
