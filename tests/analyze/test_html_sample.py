"""The HTML page's service map reads a sample of traces: whole traces, however their spans are
spread over the data, and no more traces than asked for."""

from __future__ import annotations

import polars as pl

from blameset.analyze.html import _call_edges, _call_sample


def spans(rows: list[tuple[str, str, str | None, str]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows, schema=["trace_id", "span_id", "parent_span_id", "name"], orient="row"
    )


def test_a_sampled_trace_comes_with_all_of_its_spans() -> None:
    """Traces are named by the first spans read; their later spans (after other traces') are in
    the sample too, and a third trace is left out when two are asked for."""
    data = spans(
        [
            ("t1", "a", None, "POST /chat"),
            ("t2", "x", None, "POST /chat"),
            ("t3", "p", None, "POST /other"),
            ("t1", "b", "a", "llm"),
            ("t2", "y", "x", "llm"),
            ("t2", "z", "y", "tool"),
        ]
    )
    sample = _call_sample(data, max_traces=2)
    assert sorted(sample["span_id"].to_list()) == ["a", "b", "x", "y", "z"]
    edges = {(r["caller"], r["name"]): r["len"] for r in _call_edges(sample).iter_rows(named=True)}
    assert edges == {("POST /chat", "llm"): 2, ("llm", "tool"): 1}
