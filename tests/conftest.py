"""Shared fixtures: an in-memory span pipeline with a hand-moved clock and sequential ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from instrument import VersionSet
from instrument.testing import CapturedSpans, FakeClock, SequentialIds, capture_spans

VS = VersionSet(code="3f2a91c", model="gpt-4o-2024-08-06", prompt="outline@v4", config="t0.7")


@pytest.fixture(autouse=True, scope="session")
def _spill_dir_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing a test spills may land in the user's cache folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BLAMESET_SPILL_DIR", str(tmp_path_factory.mktemp("spill")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_context_leaks() -> Iterator[None]:
    """Every test must leave no span current behind it: a leak would parent the next test's."""
    yield
    from opentelemetry import trace

    from instrument import tracing

    assert not trace.get_current_span().get_span_context().is_valid, "a span was left current"
    assert tracing._current.get() is None, "a blameset recorder was left current"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spans(clock: FakeClock) -> Iterator[CapturedSpans]:
    with capture_spans(version_set=VS, clock=clock, id_generator=SequentialIds()) as captured:
        yield captured
