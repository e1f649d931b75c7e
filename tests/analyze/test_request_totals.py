"""``blameset ingest``'s summary (requests, tokens, cost) is computed by a narrow pass
(``request_totals``) instead of the full roll-up: held here to the sums of ``requests()`` on the
same data, over traces of every shape the roll-up's rules tell apart (nested LLM spans, FastAPI
server spans around ours, probes kept apart, orphans, a trace whose spans come in two files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blameset.analyze import open_spans, requests
from blameset.analyze.ingest import ingest, load
from blameset.analyze.table import request_totals
from blameset.instrument import contract

from .test_rollup import Trace, _server

SHAPES = (
    "nested",
    "stacked",
    "agent",
    "server_around_ours",
    "server_only",
    "probe",
    "orphans",
    "single",
    "nested_request",
    "no_usage",
)


def _build(shape: str, tokens: int) -> Trace:
    """One trace of this shape, its usage scaled by ``tokens``."""
    t = Trace()
    usage = (tokens, tokens // 3 + 1)
    if shape == "nested":
        t.openai_v2(t.ours(t.request(), usage), usage)
    elif shape == "stacked":
        t.openai_v2(t.openinference(t.ours(t.request(), None), usage), usage)
    elif shape == "agent":
        agent = t.ours(t.request(), None)
        t.openai_v2(agent, usage)
        t.openai_v2(t.span("step", agent), (tokens + 1, 2))
    elif shape == "server_around_ours":
        t.openai_v2(t.ours(t.request(parent=_server(t, "/v1/outline", "POST")), usage), usage)
    elif shape == "server_only":
        t.openai_v2(_server(t, "/v1/chat", "POST"), usage)
    elif shape == "probe":
        _server(t, "/health", resource={"service.name": "outline-api"})
    elif shape == "orphans":
        missing = {"span_id": "f" * 16}
        t.openai_v2(t.span("a", missing), usage)
        t.openai_v2(t.span("b", missing), (tokens + 2, 1))
    elif shape == "single":
        t.ours(t.request(), usage)
    elif shape == "nested_request":
        outer = t.ours(t.request(), usage)
        t.openai_v2(t.request("inner", parent=outer), (tokens + 3, 1))
    else:
        t.span("step", t.request(), **{contract.SPAN_KIND: "step"})
    return t


def _write(path: Path, spans: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in spans))
    return path


def _sums(rolled: pl.LazyFrame) -> tuple[int, int, int, float]:
    row = rolled.select(
        pl.len(),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
        pl.col("cost_usd").sum(),
    ).collect()
    n, inp, out, cost = row.row(0)
    return int(n), int(inp or 0), int(out or 0), float(cost or 0.0)


def _assert_same(got: tuple[int, int, int, float], want: tuple[int, int, int, float]) -> None:
    assert got[:3] == want[:3]
    assert got[3] == pytest.approx(want[3], rel=1e-12, abs=1e-15)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    traces=st.lists(
        st.tuples(st.sampled_from(SHAPES), st.integers(1, 5000)), min_size=1, max_size=30
    ),
    split=st.integers(0, 200),
)
def test_ingest_summary_equals_the_roll_up_sums(
    tmp_path_factory: pytest.TempPathFactory, traces: list[tuple[str, int]], split: int
) -> None:
    """Any mix of trace shapes, split across two files at any span (a trace may straddle
    them): ingest's requests, tokens and cost equal the sums of requests() on the dataset."""
    spans = [s for shape, n in traces for s in _build(shape, n).spans]
    cut = min(split, len(spans))
    tmp = tmp_path_factory.mktemp("totals")
    files = [_write(tmp / "a.jsonl", spans[:cut]), _write(tmp / "b.jsonl", spans[cut:])]
    summary = ingest(files, tmp / "ds")
    got = (summary.requests, summary.input_tokens, summary.output_tokens, summary.cost_usd)
    _assert_same(got, _sums(requests(load(tmp / "ds"))))


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_alone_totals_as_the_roll_up(tmp_path: Path, shape: str) -> None:
    """One trace of each shape, read directly: request_totals equals requests()' sums."""
    path = _write(tmp_path / "s.jsonl", _build(shape, 120).spans)
    spans = open_spans([str(path)])
    _assert_same(tuple(request_totals(spans)), _sums(requests(spans)))  # type: ignore[arg-type]


def test_a_trace_whose_spans_all_have_parents_is_no_request(tmp_path: Path) -> None:
    """Two spans naming each other as parent, and a lone span naming itself (broken data): no
    root, so no request row and their usage not counted; the healthy trace still is."""
    t = Trace()
    a = t.openai_v2(t.span("x", {"span_id": "0" * 15 + "1"}), (7, 1))
    t.spans[0]["parent_span_id"] = a["span_id"]
    lone = Trace()
    itself = lone.openai_v2(lone.span("y", {"span_id": "0" * 15 + "2"}), (9, 1))
    lone.spans.remove(itself)
    lone.spans[0]["parent_span_id"] = lone.spans[0]["span_id"]
    ok = _build("single", 40)
    path = _write(tmp_path / "s.jsonl", t.spans + lone.spans + ok.spans)
    spans = open_spans([str(path)])
    want = _sums(requests(spans))
    assert want[0] == 1
    _assert_same(tuple(request_totals(spans)), want)  # type: ignore[arg-type]
