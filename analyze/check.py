"""Check telemetry against the contract, the way the book's design gate checks documents: per
service and span kind, the share of spans carrying each field the contract requires, and the gaps
under a minimum coverage. Users run it in their own CI over a sample of exported spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["Coverage", "coverage", "log_coverage"]

_LLM = (pl.col("span_kind") == "llm") | pl.col("operation").is_in(
    ["chat", "text_completion", "embeddings", "generate_content"]
)
_REQUEST = (pl.col("span_kind") == "request") | (pl.col("span_kind").is_null() & pl.col("is_root"))
_FAILED = (pl.col("final_status") == "failure") | (pl.col("status") == "error")
_ANSWERED = _LLM & (pl.col("status") != "error").fill_null(True)
"""LLM calls that returned: a call that raised has no usage, cost or first token to report."""

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
    ("ttft_ms", _ANSWERED, pl.col("ttft_ms").is_not_null()),
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


def coverage(spans: pl.LazyFrame) -> list[Coverage]:
    """The share of spans carrying each required field, per service and span kind."""
    kind = pl.coalesce("span_kind", "kind").alias("kind_label")
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
