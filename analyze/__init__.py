"""blameset analyze: trace files of blameset and other tools into one span table (polars), the
request roll-up, a Parquet dataset, the contract check, reports, and attribution of regressions and
cost spikes to the version_set change (and component) behind them.

From a notebook::

    import analyze
    spans = analyze.load("dataset/")          # or analyze.open_spans(["spans.jsonl"])
    analyze.report(spans, by=["version_set"])  # a Report: .to_polars(), .to_dict()
    result = analyze.attribute(spans)          # an Attribution: findings, cost decomposition
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyze.attribute import Attribution, Finding, attribute, request_table
    from analyze.check import Coverage, coverage
    from analyze.costs import decompose
    from analyze.gate import check_design
    from analyze.ingest import IngestSummary, ingest, load
    from analyze.readers import BadInput, ReadReport, expand_inputs, read_file
    from analyze.report import Report, report
    from analyze.source import open_spans
    from analyze.table import SPAN_SCHEMA, requests, spans_frame

# Loaded on first use, so `blameset ingest` does not pay for numpy and attribution it never runs
# (numpy's BLAS threads alone took ~4% of an ingest's CPU).
_WHERE = {
    "Attribution": "analyze.attribute",
    "Finding": "analyze.attribute",
    "attribute": "analyze.attribute",
    "request_table": "analyze.attribute",
    "Coverage": "analyze.check",
    "coverage": "analyze.check",
    "decompose": "analyze.costs",
    "check_design": "analyze.gate",
    "IngestSummary": "analyze.ingest",
    "ingest": "analyze.ingest",
    "load": "analyze.ingest",
    "BadInput": "analyze.readers",
    "ReadReport": "analyze.readers",
    "expand_inputs": "analyze.readers",
    "read_file": "analyze.readers",
    "Report": "analyze.report",
    "report": "analyze.report",
    "open_spans": "analyze.source",
    "SPAN_SCHEMA": "analyze.table",
    "requests": "analyze.table",
    "spans_frame": "analyze.table",
}


__all__ = [
    "SPAN_SCHEMA",
    "Attribution",
    "BadInput",
    "Coverage",
    "Finding",
    "IngestSummary",
    "ReadReport",
    "Report",
    "attribute",
    "check_design",
    "coverage",
    "decompose",
    "expand_inputs",
    "ingest",
    "load",
    "open_spans",
    "read_file",
    "report",
    "request_table",
    "requests",
    "spans_frame",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analyze' has no attribute {name!r}")
