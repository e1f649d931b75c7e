"""Running the roll-up's SQL on an engine and handing the result to polars: the request table
:func:`analyze.request_table` gives, computed out of core."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import polars as pl

from .._tree import MAX_DEPTH
from ._rollup import (
    LABELS,
    LINKS,
    ROLES,
    SPANS,
    Dialect,
    links_sql,
    request_columns,
    roles_sql,
    rollup_sql,
    spans_sql,
    walk_start_sql,
    walk_step_sql,
)

__all__ = ["Engine", "llm_roles", "prepare", "request_schema", "request_table", "to_requests"]


@runtime_checkable
class Engine(Protocol):
    """What the roll-up needs of an engine: its dialect, the files' columns, views, tables
    (materialized: what a loop reads again), results."""

    dialect: Dialect

    def columns(self) -> dict[str, str]: ...

    def view(self, name: str, sql: str) -> None: ...

    def table(self, name: str, sql: str) -> int:
        """Materialize ``sql`` as ``name``; its row count."""
        ...

    def drop(self, name: str) -> None: ...

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
    """Make the span view over the engine's files; the ``version.<component>`` columns."""
    columns = engine.columns()
    versions = versions_of(columns)
    engine.view(SPANS, spans_sql(engine.dialect, columns, versions))
    return versions


def llm_roles(engine: Engine) -> bool:
    """Make the roles table (rule 2 of docs/rollup.md) of the traces holding more than one LLM
    span; False when there are none (then every LLM span counts and is a call). The walk goes
    up one level of parent links per step, every LLM span's walker at once, and keeps what a
    walker knows when it stops."""
    if engine.table(LINKS, links_sql()) == 0:
        engine.drop(LINKS)
        return False
    walking = engine.table("blameset_walk_0", walk_start_sql(engine.dialect))
    finished: list[str] = []
    step = 0
    while walking and step < MAX_DEPTH:
        step += 1
        stepped = f"blameset_step_{step}"
        engine.table(stepped, walk_step_sql(f"blameset_walk_{step - 1}"))
        engine.table(
            f"blameset_done_{step}", f"SELECT walker, nearest, covered FROM {stepped} WHERE done"
        )
        finished.append(f"blameset_done_{step}")
        walking = engine.table(
            f"blameset_walk_{step}",
            f"SELECT walker, at_key, nearest, covered FROM {stepped} WHERE NOT done",
        )
        engine.drop(stepped)
        engine.drop(f"blameset_walk_{step - 1}")
    union = " UNION ALL ".join(f"SELECT * FROM {f}" for f in finished) or (
        f"SELECT walker, nearest, covered FROM blameset_walk_{step}"
    )
    engine.table(ROLES, roles_sql(f"({union})"))
    for name in [*finished, f"blameset_walk_{step}", LINKS]:
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


def to_requests(frames: Iterator[pl.DataFrame], versions: list[str]) -> pl.DataFrame:
    """Batches of the roll-up's result as the request table: ns times, categorical labels (cast
    batch by batch, so millions of requests are never held as strings)."""
    schema = request_schema(versions)
    casts = [
        pl.col("start").cast(pl.Int64).cast(pl.Datetime("ns", "UTC")),
        *(pl.col(c).cast(t) for c, t in schema.items() if c != "start"),
    ]
    parts = [f.select(casts) for f in frames if f.height]
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts, rechunk=True)


def rollup(engine: Engine) -> tuple[str, list[str]]:
    """The roll-up's SQL over the engine's files (views and the roles table made) and the
    version columns."""
    versions = prepare(engine)
    with_roles = llm_roles(engine)
    return rollup_sql(engine.dialect, versions, with_roles=with_roles), versions


def request_table(engine: Engine) -> pl.DataFrame:
    """The request table of the engine's dataset, sorted by start."""
    sql, versions = rollup(engine)
    return to_requests(engine.frames(sql), versions)
