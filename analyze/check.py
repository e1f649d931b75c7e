"""Check telemetry against the contract, the way the book's design gate checks documents: per
service and span kind, the share of spans carrying each field the contract requires, and the gaps
under a minimum coverage. Users run it in their own CI over a sample of exported spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from blameset.instrument import contract

from .ingest import load
from .readers import ReadReport, expand_inputs, read_file
from .table import request_flags, spans_frame

__all__ = ["CheckResult", "Coverage", "check", "coverage", "log_coverage"]

_LLM = (pl.col("span_kind") == "llm") | pl.col("operation").is_in(
    ["chat", "text_completion", "embeddings", "generate_content"]
)
_REQUEST = (
    pl.col("is_request")
    & ~pl.col("apart")
    & (pl.col("span_kind").is_null() | (pl.col("span_kind") == "request"))
)
"""Each trace's request span, by the roll-up's rules (docs/rollup.md): not a framework's server
span around ours, not a health check or a docs page (no traffic); and never a blameset span of
another kind (an LLM call traced outside any request is not asked for a request's fields)."""
_FAILED = (pl.col("final_status") == "failure") | (pl.col("status") == "error")
_ANSWERED = _LLM & (pl.col("status") != "error").fill_null(True)
"""LLM calls that returned: a call that raised has no usage, cost or first token to report."""


def _flag(name: str) -> pl.Expr:
    """Whether a span's attribute ``name`` is true (read from the attributes' JSON)."""
    return (pl.col("attributes").str.json_path_match(f"$['{name}']") == "true").fill_null(False)


_STREAMED = _ANSWERED & _flag(contract.LLM_STREAMED) & ~_flag(contract.STREAM_CLOSED_EARLY)
"""Streamed calls that ran to their end: each has a first token. Only a streamed call has one (a
whole answer's TTFT would be its duration); a stream closed early may have handed over nothing."""

# (field, which spans must carry it, the expression that says a span carries it)
REQUIRED: tuple[tuple[str, pl.Expr, pl.Expr], ...] = (
    ("trace_id", pl.lit(True), pl.col("trace_id").is_not_null()),
    ("version_set", pl.lit(True), pl.col("version_set").is_not_null()),
    ("version_set_id", pl.lit(True), pl.col("version_set_id").is_not_null()),
    ("final_status", _REQUEST, pl.col("final_status").is_not_null()),
    (
        "latency roll-ups (total_ms, tool_ms)",
        _REQUEST,
        pl.col("total_ms").is_not_null() & pl.col("tool_ms").is_not_null(),
    ),
    ("error code on failures", _REQUEST & _FAILED, pl.col("error_code").is_not_null()),
    (
        "tokens",
        _ANSWERED,
        pl.col("input_tokens").is_not_null() & pl.col("output_tokens").is_not_null(),
    ),
    ("cost", _ANSWERED, pl.col("cost_usd").is_not_null()),
    ("ttft on streamed calls", _STREAMED, pl.col("ttft_ms").is_not_null()),
)


@dataclass(frozen=True, slots=True)
class Coverage:
    service: str
    kind: str
    field: str
    spans: int
    covered: int

    @property
    def share(self) -> float:
        return self.covered / self.spans if self.spans else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind,
            "field": self.field,
            "spans": self.spans,
            "covered": self.covered,
            "share": self.share,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The coverage rows of one check and the gate over them: a row under ``min_coverage``
    percent is a gap, and any gap fails the check."""

    min_coverage: float
    rows: list[Coverage]

    def is_gap(self, row: Coverage) -> bool:
        return row.share * 100 < self.min_coverage

    @property
    def gaps(self) -> list[Coverage]:
        return [r for r in self.rows if self.is_gap(r)]

    @property
    def ok(self) -> bool:
        return not self.gaps

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``blameset check --json``."""
        return {
            "min_coverage": self.min_coverage,
            "rows": [r.to_dict() for r in self.rows],
            "gaps": len(self.gaps),
        }


def check(inputs: Sequence[str], min_coverage: float = 100.0) -> CheckResult:
    """Coverage of span files, ingested dataset folders and flat log files (``*.logs.jsonl``)
    against the contract. A folder holding Parquet files is read as a dataset (spans only: log
    records are not stored there); anything else as trace files, folders or globs. Raises
    :class:`~blameset.analyze.readers.BadInput` naming the file and line it cannot read."""
    if not 0 <= min_coverage <= 100:
        raise ValueError(f"min_coverage is a percent (0-100), not {min_coverage:g}")
    report = ReadReport(keep_logs=True)
    datasets = [i for i in inputs if Path(i).is_dir() and next(Path(i).rglob("*.parquet"), None)]
    files = [i for i in inputs if i not in datasets]
    records = [r for p in expand_inputs(files) for r in read_file(p, report)]
    rows = coverage(spans_frame(records).lazy()) if records else []
    for folder in datasets:  # an ingested dataset: spans only (log records are not stored)
        rows += coverage(load(folder))
    rows += log_coverage(report.logs)
    return CheckResult(min_coverage, rows)


def coverage(spans: pl.LazyFrame) -> list[Coverage]:
    """The share of spans carrying each required field, per service and span kind."""
    kind = pl.coalesce("span_kind", "kind").alias("kind_label")
    spans = request_flags(spans)
    rows: list[Coverage] = []
    for name, applies, carried in REQUIRED:
        table = (
            spans.filter(applies)
            .group_by(pl.col("service").fill_null("(no service)"), kind)
            .agg(n=pl.len(), covered=carried.sum())
            .sort("service", "kind_label")
            .collect()
        )
        rows += [
            Coverage(r["service"], r["kind_label"], name, int(r["n"]), int(r["covered"]))
            for r in table.iter_rows(named=True)
        ]
    return rows


def _has_version_set_id(record: dict[str, object]) -> bool:
    attributes = record.get("attributes")
    return isinstance(attributes, dict) and bool(attributes.get("blameset.version_set.id"))


def log_coverage(logs: list[dict[str, object]]) -> list[Coverage]:
    """Log records (the flat log format) carrying trace_id and the version set id."""
    if not logs:
        return []
    by_service: dict[str, list[dict[str, object]]] = {}
    for log in logs:
        resource = log.get("resource")
        service = resource.get("service.name") if isinstance(resource, dict) else None
        by_service.setdefault(str(service or "(no service)"), []).append(log)
    rows = []
    for service, records in sorted(by_service.items()):
        for name, test in (
            ("trace_id", lambda r: bool(r.get("trace_id"))),
            (
                "version_set_id",
                _has_version_set_id,
            ),
        ):
            rows.append(Coverage(service, "log", name, len(records), sum(map(test, records))))
    return rows
