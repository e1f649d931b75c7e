"""The processor chain of blameset's provider: every processor a user adds sees every span, ours
and a library's, at each hook it implements, in the order added and after the context processor
stamped the span; only the calls that cannot do anything are left out."""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from blameset import instrument
from blameset.instrument import VersionSet, contract, request_context, traced
from blameset.instrument._ecosystem import ContextSpanProcessor, ProcessorChain


class Keep(SpanExporter):
    """Keeps what it is handed."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class Watch(SpanProcessor):
    """Records each hook it is called at: (hook, span name, tenant seen on the span then)."""

    def __init__(self, calls: list[tuple[str, str, object]], tag: str) -> None:
        self.calls = calls
        self.tag = tag

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        tenant = (span.attributes or {}).get(contract.TENANT_ID)
        self.calls.append((f"{self.tag}.start", span.name, tenant))

    def _on_ending(self, span: Span) -> None:
        self.calls.append((f"{self.tag}.ending", span.name, None))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append((f"{self.tag}.end", span.name, None))


def test_user_processors_see_every_span_at_every_hook_in_order() -> None:
    """Two user processors get start, ending and end of our span and of a library's, in the
    order added, the library's span already stamped with the tenant when they see it start."""
    calls: list[tuple[str, str, object]] = []
    exporter = Keep()
    with instrument.configured(
        service="svc",
        version_set=VersionSet(code="c1"),
        exporter=exporter,
        batch=False,
        processors=(Watch(calls, "a"), Watch(calls, "b")),
    ) as state:
        library = state.provider.get_tracer("some.library")

        @traced("handler")
        def handler() -> None:
            with library.start_as_current_span("library work"):
                pass

        with request_context(tenant="acme"):
            handler()
    assert calls == [
        ("a.start", "handler", "acme"),
        ("b.start", "handler", "acme"),
        ("a.start", "library work", "acme"),
        ("b.start", "library work", "acme"),
        ("a.ending", "library work", None),
        ("b.ending", "library work", None),
        ("a.end", "library work", None),
        ("b.end", "library work", None),
        ("a.ending", "handler", None),
        ("b.ending", "handler", None),
        ("a.end", "handler", None),
        ("b.end", "handler", None),
    ]
    assert sorted(s.name for s in exporter.spans) == ["handler", "library work"]
    library_span = next(s for s in exporter.spans if s.name == "library work")
    assert (library_span.attributes or {}).get(contract.TENANT_ID) == "acme"


def test_the_chain_skips_only_inherited_no_ops_and_the_context_processor_on_our_spans() -> None:
    """A processor's inherited no-op hooks are not called; the context processor is passed over
    on the spans of the tracer it names as ours, and called on everyone else's."""
    chain = ProcessorChain()
    context = ContextSpanProcessor(own_scope=object())
    calls: list[tuple[str, str, object]] = []
    watch = Watch(calls, "w")

    class EndOnly(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            calls.append(("e.end", span.name, None))

    end_only = EndOnly()
    for processor in (context, watch, end_only):
        chain.add_span_processor(processor)
    hooks = chain._hooks
    assert hooks.starts == (context.on_start, watch.on_start)
    assert hooks.own_starts == (watch.on_start,)
    assert hooks.own_ends == (watch.on_end, end_only.on_end)
    assert hooks.ends == (context.on_end, watch.on_end, end_only.on_end)
    assert hooks.endings == hooks.own_endings == (watch._on_ending,)
