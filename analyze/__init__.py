"""blameset analyze: trace files of blameset and other tools into one span table (polars), the
request roll-up, a Parquet dataset, the contract check, reports, and attribution of regressions and
cost spikes to the version_set change (and component) behind them.

From a notebook::

    from blameset import analyze
    spans = analyze.load("dataset/")          # or analyze.open_spans(["spans.jsonl"])
    analyze.report(spans, by=["version_set"])  # a Report: .to_polars(), .to_dict()
    result = analyze.attribute(spans)          # an Attribution: findings, cost decomposition
"""

from .attribute import Attribution, Finding, attribute, request_table
from .check import Coverage, coverage
from .costs import decompose
from .gate import check_design
from .ingest import IngestSummary, ingest, load
from .readers import BadInput, ReadReport, expand_inputs, read_file
from .report import Report, report
from .source import open_spans
from .table import SPAN_SCHEMA, requests, spans_frame

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
