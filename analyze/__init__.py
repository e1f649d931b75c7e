"""blameset analyze: trace files of blameset and other tools into one span table (polars), the
request roll-up, a Parquet dataset, the contract check, reports, and attribution of regressions and
cost spikes to the version_set change (and component) behind them.

From a notebook::

    from blameset import analyze
    spans = analyze.load("dataset/")          # or analyze.open_spans(["spans.jsonl"])
    analyze.report(spans, by=["version_set"])  # a Report: .to_polars(), .to_dict()
    result = analyze.attribute(spans)          # an Attribution: findings, cost decomposition

What this package exports is the surface for users. Its modules, for those who need a step on
its own: ``ingest`` (inputs to a Parquet dataset, and how to add a column, alias or format),
``readers`` (the row reader: every input format, bad input named by file and line), ``fast``
(the chunked native/DuckDB decoders ingest runs first), ``columns`` and ``aliases`` (the one
declaration of the span table's columns and the attribute names they are read from), ``table``
(the span table and the request roll-up), ``source`` (a dataset or trace files as spans),
``check`` (contract coverage), ``gate`` (the design-doc gate), ``report``, ``attribute`` (the
attribution method, its steps in private modules), ``stats`` (bootstrap, CMH, BH, PELT, LMDI),
``costs`` (the cost decomposition), ``judge`` (the canary gate: pass, fail or not yet) and
``html`` (the self-contained report page), ``engine`` (the same roll-up in DuckDB or Spark, out of
core). Modules whose
names start with ``_`` are implementation.
"""

from ._money import usd
from ._prose import describe_finding, headline
from ._requests import traffic
from .attribute import Attribution, Finding, attribute, request_table
from .check import CheckResult, Coverage, check, coverage
from .costs import decompose
from .gate import GateResult, check_design
from .html import write_html
from .ingest import IngestSummary, ingest, load
from .readers import BadInput, ReadReport, expand_inputs, read_file
from .report import Report, report
from .source import open_spans
from .table import SPAN_SCHEMA, request_flags, requests, spans_frame

__all__ = [
    "SPAN_SCHEMA",
    "Attribution",
    "BadInput",
    "CheckResult",
    "Coverage",
    "Finding",
    "GateResult",
    "IngestSummary",
    "ReadReport",
    "Report",
    "attribute",
    "check",
    "check_design",
    "coverage",
    "decompose",
    "describe_finding",
    "expand_inputs",
    "headline",
    "ingest",
    "load",
    "open_spans",
    "read_file",
    "report",
    "request_flags",
    "request_table",
    "requests",
    "spans_frame",
    "traffic",
    "usd",
    "write_html",
]
