"""Version sets per service (docs/rollup.md, "Requests that cross services"): a request whose
trace crosses several services, each deployed on its own (a gateway, workers below it), is rolled
up with the version set of each service on its path. Another service's components join the
request's version set qualified by the service's name (``worker.code=9c1e0b4``), and what that
service did in the request gets columns of its own (``worker.service_ms``, ``worker.tool_ms``,
``worker.error_rate``), so attribution can blame ``worker.code`` for a change under an unchanged
gateway and see it in the worker's own time as well as in the request's.

Each service writes nothing new: its spans carry its ``service.name`` and its own version set, as
``configure(service=..., version_set=...)`` stamps them. All of it is per-(trace, service)
aggregates; the one join is each span's parent's service, which tells a service's entry spans.
"""

from __future__ import annotations

import hashlib

import polars as pl

from ._tree import parent_key, span_key, trace_key

__all__ = [
    "SERVICE_METRICS",
    "merge_visits",
    "on_path",
    "service_columns",
    "services_of",
    "with_services",
]

SERVICE_METRICS = ("service_ms", "tool_ms", "error_rate")
"""Per other service on a request's path, as ``<service>.<metric>`` columns: the time of its
entry spans (those whose parent is another service's, or none), its tool spans' time, and
whether any of its spans failed (1.0 or 0.0; null when the request did not reach it)."""

TOOL = (pl.col("span_kind") == "tool") | (pl.col("operation") == "execute_tool")


def services_of(spans: pl.LazyFrame) -> list[str]:
    """The services the spans name, sorted."""
    found = spans.select(pl.col("service").drop_nulls().unique()).collect().to_series()
    return sorted(str(s) for s in found.to_list())


def service_columns(service: str) -> list[str]:
    """The metric columns a service's requests get (``worker.tool_ms``, ...)."""
    return [f"{service}.{m}" for m in SERVICE_METRICS]


def with_services(rows: pl.LazyFrame, spans: pl.LazyFrame, services: list[str]) -> pl.LazyFrame:
    """The request rows (keyed by ``_trace``, with the request span's ``service``,
    ``version_set`` and ``version_set_id``) with the other services on each request's path:
    the request's version set extended by their qualified components, its id recomputed, one
    ``version.<service>.<component>`` column per component and the services' metric columns.
    A request that reached no other service keeps its version set as it was."""
    return merge_visits(rows, on_path(rows, _service_visits(spans)), services)


def merge_visits(rows: pl.LazyFrame, visits: pl.LazyFrame, services: list[str]) -> pl.LazyFrame:
    """:func:`with_services` from the visits of the other services on each request's path
    (:func:`on_path`), however they were computed (here from the spans, or by a query engine
    as ``analyze.engine`` does)."""
    pairs = visits.select("service", "vs").unique().collect()
    lookup = _qualified(pairs)
    visits = visits.join(lookup.lazy(), on=["service", "vs"], how="left", nulls_equal=True)
    components = [c for c in lookup.columns if c.startswith("version.")]
    per_trace = visits.group_by("_trace").agg(
        pl.col("_qualified").drop_nulls().str.join(";").alias("_parts"),
        *[pl.col(c).drop_nulls().first() for c in components],
        *[
            pl.col(metric).filter(pl.col("service") == s).first().alias(f"{s}.{metric}")
            for s in services
            for metric in SERVICE_METRICS
        ],
    )
    merged = _merged()
    out = rows.join(per_trace, on="_trace", how="left").with_columns(
        _merged=merged, _moved=pl.col("_parts").fill_null("") != ""
    )
    ids = _ids(
        rows.select("_trace", "version_set").join(per_trace.select("_trace", "_parts"), on="_trace")
    )
    return (
        out.join(ids, on="_merged", how="left")
        .with_columns(
            version_set=pl.col("_merged"),
            version_set_id=pl.when("_moved").then("_merged_id").otherwise("version_set_id"),
        )
        .drop("_parts", "_merged", "_merged_id", "_moved")
    )


def _merged() -> pl.Expr:
    """The request's version set with the other services' qualified parts, sorted; as it was
    when it reached no other service."""
    return (
        pl.when(pl.col("_parts").fill_null("") == "")
        .then(pl.col("version_set"))
        .otherwise(
            pl.concat_str(pl.col("version_set").fill_null(""), pl.lit(";"), pl.col("_parts"))
            .str.strip_chars(";")
            .str.split(";")
            .list.sort()
            .list.join(";")
        )
    )


def _service_visits(spans: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (trace, service): the service's version set (its earliest span's that has
    one), entry-span time, tool time and whether a span of it failed."""
    parents = spans.select(_parent=span_key(), _parent_service=pl.col("service"))
    span_rows = spans.select(
        _trace=trace_key(),
        _parent=parent_key(),
        service=pl.col("service"),
        version_set=pl.col("version_set"),
        start=pl.col("start"),
        _duration=pl.coalesce(
            "duration_ms", (pl.col("end").cast(pl.Int64) - pl.col("start").cast(pl.Int64)) / 1e6
        ),
        _tool=TOOL.fill_null(False),
        _error=(pl.col("status") == "error").fill_null(False),
    ).filter(pl.col("service").is_not_null())
    entry = (pl.col("_parent_service") != pl.col("service")).fill_null(True)
    return (
        span_rows.join(parents, on="_parent", how="left")
        .group_by("_trace", "service")
        .agg(
            vs=pl.col("version_set").sort_by("start").drop_nulls().first(),
            service_ms=pl.col("_duration").filter(entry).sum(),
            tool_ms=pl.col("_duration").filter("_tool").sum(),
            error_rate=pl.col("_error").any().cast(pl.Float64),
        )
    )


def on_path(rows: pl.LazyFrame, per_service: pl.LazyFrame) -> pl.LazyFrame:
    """The visits (per trace and service) of the services other than each request's own."""
    asked = rows.select("_trace", _request_service=pl.col("service"))
    return per_service.join(asked, on="_trace", how="inner").filter(
        (pl.col("service") != pl.col("_request_service")).fill_null(True)
    )


def _qualified(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per distinct (service, version set): the qualified parts (``worker.code=9c1e0b4;...``)
    and one ``version.<service>.<component>`` column per component."""
    rows: list[dict[str, str | None]] = []
    for service, canonical in pairs.iter_rows():
        row: dict[str, str | None] = {"service": service, "vs": canonical, "_qualified": None}
        if canonical:
            parts = [p.partition("=") for p in str(canonical).split(";") if p]
            row["_qualified"] = ";".join(f"{service}.{k}={v}" for k, _, v in parts if k)
            row.update({f"version.{service}.{k}": v for k, _, v in parts if k})
        rows.append(row)
    names = sorted({k for r in rows for k in r if k.startswith("version.")})
    schema = {"service": pl.String, "vs": pl.String, "_qualified": pl.String}
    return pl.DataFrame(rows, schema={**schema, **dict.fromkeys(names, pl.String)})


def _ids(rows: pl.LazyFrame) -> pl.LazyFrame:
    """The fingerprint of each distinct extended version set (sha256, first 12 hex), from the
    requests' own version sets and the parts their other services add."""
    moved = rows.filter(pl.col("_parts").fill_null("") != "")
    merged = moved.select(_merged().unique()).collect().to_series()
    texts = [t for t in merged.to_list() if t is not None]
    return pl.LazyFrame(
        {
            "_merged": texts,
            "_merged_id": [hashlib.sha256(t.encode("utf-8")).hexdigest()[:12] for t in texts],
        },
        schema={"_merged": pl.String, "_merged_id": pl.String},
    )
