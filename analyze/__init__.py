"""blameset analyze: trace files of blameset and other tools into one span table (polars), the
request roll-up, a Parquet dataset, and the contract check. Attribution builds on these."""

from analyze.check import Coverage, coverage
from analyze.gate import check_design
from analyze.ingest import IngestSummary, ingest, load
from analyze.readers import BadInput, ReadReport, expand_inputs, read_file
from analyze.table import SPAN_SCHEMA, requests, spans_frame

__all__ = [
    "SPAN_SCHEMA",
    "BadInput",
    "Coverage",
    "IngestSummary",
    "ReadReport",
    "check_design",
    "coverage",
    "expand_inputs",
    "ingest",
    "load",
    "read_file",
    "requests",
    "spans_frame",
]
