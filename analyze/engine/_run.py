"""Running the roll-up's SQL on an engine and handing the result to polars: the request table
:func:`analyze.request_table` gives, computed out of core."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import polars as pl

from .._requests import Traffic, _label_columns
from .._services import SERVICE_METRICS, merge_visits, on_path
from .._tree import MAX_DEPTH
from ._rollup import (
    FILES,
    FIXES,
    LABELS,
    LINKS,
    MODELS,
    ORPHANS,
    PER,
    PER_FIXED,
    ROLES,
    SPANS,
    Dialect,
    fixed_per_sql,
    fixes_sql,
    links_sql,
    models_sql,
    orphans_sql,
    per_trace_sql,
    request_columns,
    roles_sql,
    rollup_sql,
    spans_sql,
    visits_sql,
    walk_start_sql,
    walk_step_sql,
)

__all__ = [
    "Engine",
    "Rollup",
    "collect",
    "llm_roles",
    "prepare",
    "request_schema",
    "request_table",
    "to_traffic",
    "traffic",
]


@runtime_checkable
class Engine(Protocol):
    """What the roll-up needs of an engine: its dialect, the files' columns, views, tables
    (materialized: what a loop reads again), results."""

    dialect: Dialect
    in_process: bool
    """Whether the engine's memory is this process's (DuckDB): then the request table waits on
    disk until the engine has released its memory (:func:`traffic`)."""

    def columns(self) -> dict[str, str]: ...

    def view(self, name: str, sql: str) -> None: ...

    def trace_ids_hex(self) -> bool:
        """Whether every trace id of the files is one :attr:`Dialect.trace_key` reads exactly
        (False where the dialect has none)."""
        ...

    def table(self, name: str, sql: str) -> int:
        """Materialize ``sql`` as ``name``; its row count."""
        ...

    def drop(self, name: str) -> None: ...

    def release(self) -> None:
        """Hand back to the system the memory of the tables dropped so far (best effort: it
        never fails the run)."""
        ...

    def frames(self, sql: str) -> Iterator[pl.DataFrame]: ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def versions_of(columns: dict[str, str]) -> list[str]:
    return sorted(c for c in columns if c.startswith("version."))


def prepare(engine: Engine) -> list[str]:
    """Make the span view over the engine's files and the models table; the
    ``version.<component>`` columns. Traces are keyed by an integer where the engine can make
    one of every trace id exactly (:meth:`Engine.trace_ids_hex`), else by their text. The
    models' codes are the engine's fast hash, unless two of the data's models share one: then
    the view is made again with the salted, stronger hash."""
    columns = engine.columns()
    versions = versions_of(columns)
    keys = engine.dialect.trace_key is not None and engine.trace_ids_hex()
    engine.view(SPANS, spans_sql(engine.dialect, columns, versions, int_keys=keys))
    engine.table(MODELS, models_sql())
    if not _distinct_codes(engine):
        engine.view(
            SPANS, spans_sql(engine.dialect, columns, versions, strong_codes=True, int_keys=keys)
        )
        engine.table(MODELS, models_sql())
        if not _distinct_codes(engine):
            raise RuntimeError("two models of the data share a code; no request table")
    return versions


def _distinct_codes(engine: Engine) -> bool:
    found = engine.rows(f"SELECT COUNT(*), COUNT(DISTINCT model_code) FROM {MODELS}")[0]
    return int(found[0]) == int(found[1])


def llm_roles(engine: Engine) -> bool:
    """Make the roles table (rule 2 of docs/rollup.md) of the traces :data:`PER` counts more
    than one LLM span in; False when there are none (then every LLM span counts and is a call).
    The walk goes up one level of parent links per step, every LLM span's walker at once, and
    keeps what a walker knows when it stops. :data:`LINKS` is kept, for :func:`_rollup.fixes_sql`
    to read."""
    if engine.table(LINKS, links_sql()) == 0:
        engine.drop(LINKS)
        return False
    walking = engine.table("blameset_walk_0", walk_start_sql())
    steps: list[str] = []
    while walking and len(steps) < MAX_DEPTH:
        last = steps[-1] if steps else "blameset_walk_0"
        walkers = f"(SELECT * FROM {last} WHERE NOT done)" if steps else last
        steps.append(f"blameset_step_{len(steps) + 1}")
        engine.table(steps[-1], walk_step_sql(walkers))
        walking = int(engine.rows(f"SELECT COUNT(*) FROM {steps[-1]} WHERE NOT done")[0][0])
    # a walker still going after MAX_DEPTH levels (a cycle in broken data) keeps what it knows
    finished = (
        " UNION ALL ".join(
            f"SELECT trace_id, walker, nearest, covered FROM {s} "
            f"WHERE done OR {i == len(steps) - 1}"
            for i, s in enumerate(steps)
        )
        or "SELECT trace_id, walker, nearest, covered FROM blameset_walk_0 WHERE FALSE"
    )
    engine.table(ROLES, roles_sql(f"({finished})"))
    for name in [*steps, "blameset_walk_0"]:
        engine.drop(name)
    return True


def request_schema(versions: list[str]) -> dict[str, pl.DataType]:
    """The request table's polars schema (as :func:`analyze.request_table` types it)."""
    text = {*LABELS, "model", *versions}
    special: dict[str, pl.DataType] = {
        "start": pl.Datetime("ns", "UTC"),
        "input_tokens": pl.Int64(),
        "output_tokens": pl.Int64(),
        "llm_calls": pl.UInt32(),
    }
    return {
        c: pl.Categorical() if c in text else special.get(c, pl.Float64())
        for c in request_columns(versions)
    }


_COMPACT_EVERY = 8
"""Batches cast, then copied together into memory of polars' own: a column the cast leaves as it
was (the numbers) still points into the engine's Arrow batch, which keeps the whole batch, text
and all, alive; measured at 10M spans, 1.5 GB held for a 0.5 GB request table. A spooled batch
is written at once instead (the file holds its own copy): holding 8 cast batches beside the
engine cost about 0.8 GB at 30M spans."""


def to_traffic(
    frames: Iterator[pl.DataFrame],
    versions: list[str],
    *,
    keyed: bool = False,
    spool: Path | None = None,
) -> Traffic:
    """Batches of the roll-up's result as the request table (ns times, categorical labels, cast
    batch by batch so millions of requests are never held as strings) and the traces kept
    apart, counted by route (as :func:`analyze._requests.traffic` gives them). ``keyed``: the
    rows keep ``_trace`` and ``service`` and their version set as text, for
    :func:`with_services` to finish. ``spool``: a folder where the cast parts wait (Arrow IPC)
    until ``frames`` is exhausted, so an engine in this process can release its memory before
    the table takes its own."""
    schema = request_schema(versions)
    if keyed:
        schema.update(
            version_set=pl.String(),
            version_set_id=pl.String(),
            _trace=pl.String(),
            service=pl.String(),
        )
    casts = [
        pl.col("start").cast(pl.Int64).cast(pl.Datetime("ns", "UTC")),
        *(pl.col(c).cast(t) for c, t in schema.items() if c != "start"),
    ]
    parts: list[pl.DataFrame] = []
    pending: list[pl.DataFrame] = []
    apart: list[pl.DataFrame] = []
    for frame in frames:
        flag = frame.get_column("apart").fill_null(False)
        if flag.any():
            apart.append(frame.filter(flag).select(pl.col("route").cast(pl.String)))
            frame = frame.filter(~flag)
        if frame.height:
            pending.append(frame.select(casts))
        if len(pending) == (1 if spool is not None else _COMPACT_EVERY):  # spooled: at once
            parts.append(_kept(pl.concat(pending, rechunk=True), spool, len(parts)))
            pending = []
    if pending:
        parts.append(_kept(pl.concat(pending, rechunk=True), spool, len(parts)))
    if spool is not None:  # the engine is done: the parts come back from disk
        parts = [_read_back(part) for part in parts]
    # sorted here, not in the engine: an ORDER BY of millions of wide rows under the memory
    # limit is an external sort that spills them all, where polars sorts one column's order
    requests = _sorted_by_start(parts) if parts else pl.DataFrame(schema=schema)
    routes = pl.concat(apart) if apart else pl.DataFrame(schema={"route": pl.String})
    counted = (
        routes.group_by("route")
        .agg(traces=pl.len())
        .sort("traces", "route", descending=[True, False])
    )
    return Traffic(requests, counted)


def _kept(part: pl.DataFrame, spool: Path | None, i: int) -> pl.DataFrame:
    """The part, or when spooling an empty frame naming its file (read by :func:`_read_back`)."""
    if spool is None:
        return part
    path = spool / f"part-{i:05d}.arrow"
    part.write_ipc(path, compression="uncompressed")
    return pl.DataFrame({"_spooled": [str(path)]})


def _read_back(part: pl.DataFrame) -> pl.DataFrame:
    if part.columns != ["_spooled"]:
        return part
    path = Path(part.item())
    out = pl.read_ipc(path)
    path.unlink()
    return out


def services_of(engine: Engine) -> list[str]:
    """The services the engine's spans name, sorted (none when the files have no such column)."""
    if "service" not in engine.columns():
        return []
    found = engine.rows(f"SELECT DISTINCT service FROM {FILES} WHERE service IS NOT NULL")
    return sorted(str(r[0]) for r in found)


def _sorted_by_start(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The parts as one table sorted by start, one column at a time, each unsorted column let go
    once its sorted copy is made (``parts`` is emptied): a whole-table sort holds the table twice,
    1.6 GB more at 30M spans."""
    table = pl.concat(parts, rechunk=False)
    parts.clear()
    order = table.get_column("start").arg_sort()
    columns: list[pl.Series] = []
    for name in table.columns:
        columns.append(table.get_column(name).gather(order))
        table = table.drop(name)
    return pl.DataFrame(columns)


@dataclass(frozen=True, slots=True)
class Rollup:
    """The roll-up's SQL, the version columns, and the tables it reads (to drop once read)."""

    sql: str
    versions: list[str]
    tables: list[str]

    def drop(self, engine: Engine) -> None:
        for name in self.tables:
            engine.drop(name)


def rollup(
    engine: Engine, *, order: bool = True, keyed: bool = False, random_key: bool = False
) -> Rollup:
    """The roll-up's SQL over the engine's files, the version columns and the tables the SQL
    reads (:class:`Rollup`): the views, the roles
    table, the per-trace table (one pass over the spans) and, when some trace has no request
    span, its orphan roots are made first. ``keyed``, ``random_key``: see
    :func:`_rollup.rollup_sql`."""
    versions = prepare(engine)
    d = engine.dialect
    engine.table(PER, per_trace_sql(d))
    tables = [PER, MODELS]
    per = PER
    if llm_roles(engine):  # the traces with several LLM spans get their LLM sums redone
        engine.table(FIXES, fixes_sql(d))
        for name in (ROLES, LINKS):
            engine.drop(name)
        engine.view(PER_FIXED, fixed_per_sql())
        per = PER_FIXED
        tables += [PER_FIXED, FIXES]
    lacking = int(engine.rows(f"SELECT COUNT(*) FROM {PER} WHERE NOT pick")[0][0])
    if lacking:
        engine.table(ORPHANS, orphans_sql(d))
        tables.append(ORPHANS)
    sql = rollup_sql(
        d, versions, orphans=lacking > 0, order=order, keyed=keyed, random_key=random_key, per=per
    )
    return Rollup(sql, versions, tables)


def traffic(engine: Engine) -> Traffic:
    """The request table of the engine's dataset (sorted by start) and its traces kept apart;
    when the spans name several services, each request with the version set of every service
    on its path (docs/rollup.md, "Requests that cross services"), as the polars path has it."""
    services = services_of(engine)
    keyed = len(services) > 1
    made = rollup(engine, order=False, keyed=keyed)
    visits = collect(engine, visits_sql()) if keyed else None

    def frames() -> Iterator[pl.DataFrame]:
        try:
            yield from engine.frames(made.sql)
        finally:  # read (or failed): the request table may have the memory
            made.drop(engine)
        engine.release()

    if engine.in_process:  # measured at 30M spans: peak 4.4 GB without the spool, 2.5 GB with
        # beside the engine's own spill files (a folder the user chose for bulk), not in /tmp,
        # which may be memory
        spill = getattr(engine, "temp_dir", None)
        with tempfile.TemporaryDirectory(prefix="blameset-requests-", dir=spill) as folder:
            found = to_traffic(frames(), made.versions, keyed=keyed, spool=Path(folder))
    else:
        found = to_traffic(frames(), made.versions, keyed=keyed)
    if visits is None:
        return found
    return Traffic(with_services(found.requests, visits, services), found.apart)


def collect(engine: Engine, sql: str) -> pl.DataFrame:
    """The whole result of ``sql``, for results small enough to hold (aggregates, visits)."""
    parts = list(engine.frames(sql))
    return pl.concat(parts) if parts else pl.DataFrame()


def with_services(
    requests: pl.DataFrame, visits: pl.DataFrame, services: list[str]
) -> pl.DataFrame:
    """The keyed request table (:func:`to_traffic`) with the other services on each request's
    path merged in by ``analyze._services``' rules, in the polars path's columns and types."""
    rows = requests.lazy()
    merged = merge_visits(rows, on_path(rows, visits.lazy()), services).collect()
    versions = sorted(c for c in merged.columns if c.startswith("version."))
    per_service = [f"{s}.{m}" for s in services for m in SERVICE_METRICS]
    columns = request_columns(versions)
    at = columns.index("model")
    ordered = [*columns[:at], *per_service, *columns[at:]]
    return (  # the joins do not keep the rows' order: sorted again, as the polars path sorts last
        merged.select(ordered)
        .with_columns(pl.col(_label_columns(versions)).cast(pl.Categorical))
        .sort("start")
    )


def request_table(engine: Engine) -> pl.DataFrame:
    """The request table of the engine's dataset, sorted by start."""
    return traffic(engine).requests
