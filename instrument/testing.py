"""Test helpers for users' tests and ours: collect finished spans in memory, with exact clocks/ids.

with capture_spans() as spans:
    handle(request)
assert spans.one("generate_outline").attributes["blameset.final_status"] == "success"
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler

from . import _config, _global, _runtime
from ._records import span_to_dict
from ._version_set import VersionSet
from .cost import ModelPrice

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["CapturedSpans", "FakeClock", "SequentialIds", "capture_spans"]


class CapturedSpans(SpanExporter):
    """Finished spans in the order they ended; also an exporter, so it plugs into configure()."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
            self._arrived.notify_all()
        return SpanExportResult.SUCCESS

    def wait_for(self, name: str, timeout: float = 30.0) -> ReadableSpan:
        """The first span named ``name``, waiting (up to ``timeout`` seconds) for it to end in
        another thread: a server's, say. Fails loudly when it never comes."""
        with self._arrived:
            found = self._arrived.wait_for(
                lambda: next((s for s in self._spans if s.name == name), None), timeout
            )
        if found is None:
            raise AssertionError(f"no span named {name!r} within {timeout} s: {self.names()}")
        return found

    @property
    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)

    def __len__(self) -> int:
        return len(self._spans)

    def __iter__(self) -> Iterator[ReadableSpan]:
        return iter(self.spans)

    def names(self) -> list[str]:
        return [s.name for s in self.spans]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        """The single span with this name; fails loudly when there are none or several."""
        found = self.named(name)
        if len(found) != 1:
            raise AssertionError(
                f"expected one span named {name!r}, found {len(found)}: {self.names()}"
            )
        return found[0]

    def attributes(self, name: str) -> Mapping[str, Any]:
        return dict(self.one(name).attributes or {})

    def as_dicts(self) -> list[dict[str, Any]]:
        """The spans in the flat JSONL format."""
        return [span_to_dict(s) for s in self.spans]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


class FakeClock:
    """A clock for exact span times: starts at ``start_ns`` and moves only when told."""

    def __init__(self, start_ns: int = 1_767_225_600_000_000_000) -> None:  # 2026-01-01 UTC
        self.now_ns = start_ns
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ms: float) -> None:
        with self._lock:
            self.now_ns += int(ms * 1_000_000)


class SequentialIds(IdGenerator):
    """Deterministic trace and span ids: 1, 2, 3, ..."""

    def __init__(self) -> None:
        self._trace = 0
        self._span = 0
        self._lock = threading.Lock()

    def generate_span_id(self) -> int:
        with self._lock:
            self._span += 1
            return self._span

    def generate_trace_id(self) -> int:
        with self._lock:
            self._trace += 1
            return self._trace


@contextmanager
def capture_spans(
    *,
    version_set: VersionSet | None = None,
    service: str = "test-service",
    clock: _runtime.Clock | None = None,
    id_generator: IdGenerator | None = None,
    prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
    sampler: Sampler | None = None,
) -> Iterator[CapturedSpans]:
    """Record spans in memory for the block; the configuration in force before comes back after.

    Spans are exported as each one ends (no batching), so a test reads them right away. The
    version set defaults to the one configured now (empty when nothing was configured).
    """
    captured = CapturedSpans()
    previous = _runtime.current_state()
    globals_before = _global.saved()
    state = _config.build_state(
        _config.Options(
            service=service,
            versions=version_set if version_set is not None else previous.version_set,
            exporter=captured,
            prices=prices,
            batch=False,
            clock=clock,
            id_generator=id_generator,
            sampler=sampler,
        )
    )
    _runtime.install(state)
    try:
        yield captured
    finally:
        _runtime.install(previous)
        _global.restore(globals_before)  # a global provider set for the block goes with it
        state.shutdown()
