"""The engine's request roll-up (DuckDB, out of core) against the polars path: the same rows and
values on scenario datasets of both layouts, on the corner cases of the roll-up's rules, and on
random span forests (Hypothesis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from bench.scenarios import generate, write_dataset
from blameset.analyze import engine, open_spans, request_table
from blameset.analyze._dataset import StagedDataset
from blameset.analyze._requests import traffic
from blameset.analyze.columns import SPAN_SCHEMA
from blameset.analyze.table import with_derived_columns

T0 = 1_793_491_200_000_000_000  # 2026-11-01 UTC, in ns


def ingest_frame(spans: pl.DataFrame, out: Path) -> Path:
    """Store spans as `blameset ingest` does (a Delta table, one commit)."""
    out.mkdir(parents=True, exist_ok=True)
    with StagedDataset(out) as staged:
        staged.write(spans)
        staged.commit()
    return out


def comparable(table: pl.DataFrame) -> pl.DataFrame:
    """Rows in one order, labels as text (categoricals of two runs have their own codes)."""
    labels = [c for c, t in table.schema.items() if t == pl.Categorical]
    out = table.with_columns(pl.col(labels).cast(pl.String))
    return out.sort(out.columns, nulls_last=True)


def assert_same_requests(path: Path, **options: Any) -> pl.DataFrame:
    expected = request_table(open_spans(path))
    got = engine.request_table(path, **options)
    assert got.schema == expected.schema
    assert got.height == expected.height
    assert_frame_equal(comparable(got), comparable(expected), check_exact=False, rel_tol=1e-9)
    return got


@pytest.mark.parametrize(
    "scenario",
    [
        "overlapping",
        "code_errors",
        "tenant_simpson",
        "worker_regression",
        "cross_service_co_release",
    ],
)
def test_scenario_datasets_roll_up_as_the_polars_path_does(tmp_path: Path, scenario: str) -> None:
    """A scenario stored by ingest's writer (Delta) rolls up to the polars path's request table."""
    spans = generate(scenario, 4000, seed=3)
    got = assert_same_requests(ingest_frame(spans, tmp_path / "ds"))
    assert got.height == 4000
    assert got["start"].is_sorted()


def test_the_earlier_layout_with_nanosecond_timestamps_rolls_up_the_same(tmp_path: Path) -> None:
    """A dataset of the earlier layout (hive Parquet, TIMESTAMP(NANOS)) rolls up the same."""
    spans = generate("model_canary", 3000, seed=1)
    write_dataset(spans, tmp_path / "old")
    assert_same_requests(tmp_path / "old")


def test_files_no_commit_holds_are_not_read(tmp_path: Path) -> None:
    """A staged file of an uncommitted ingest in a day folder is invisible to the engine."""
    root = ingest_frame(generate("aa", 1000, seed=0), tmp_path / "ds")
    day = next(root.glob("day=*"))
    generate("aa", 500, seed=9).write_parquet(day / "part-stray-00000.parquet")
    assert engine.request_table(root).height == 1000


def span(
    trace: str, sid: str | None, parent: str | None = None, at: int = 0, **values: Any
) -> dict:
    ms = values.pop("ms", 10.0)
    start = T0 + at * 1_000_000
    return {
        "trace_id": trace,
        "span_id": sid,
        "parent_span_id": parent,
        "name": values.pop("name", f"span-{sid}"),
        "kind": "internal",
        "start": start,
        "end": start + int(ms * 1_000_000),
        "status": values.pop("status", "unset"),
        **values,
    }


def frame(rows: list[dict], versions: tuple[str, ...] = ()) -> pl.DataFrame:
    schema = {**SPAN_SCHEMA, **{v: pl.String() for v in versions}}
    schema.pop("duration_ms")
    schema.pop("is_root")
    base = pl.DataFrame(
        [{c: r.get(c) for c in schema} for r in rows],
        schema={c: (pl.Int64 if c in ("start", "end") else t) for c, t in schema.items()},
    ).with_columns(pl.col("start", "end").cast(pl.Datetime("ns", "UTC")))
    return with_derived_columns(base.with_columns(duration_ms=pl.lit(None, pl.Float64)))


CORNERS = [
    # an ordinary request: LLM call, tool by operation name, queue span
    span("a" * 32, "a1", name="POST /chat", route="/chat", **{"version.code": "v1"}),
    span(
        "a" * 32,
        "a2",
        "a1",
        at=5,
        span_kind="llm",
        model="m1",
        input_tokens=10,
        output_tokens=20,
        cost_usd=0.5,
        ttft_ms=3.0,
        ms=40.0,
    ),
    span("a" * 32, "a3", "a1", at=1, operation="execute_tool", ms=7.0),
    span("a" * 32, "a4", "a1", at=2, span_kind="queue", ms=2.5),
    # the first LLM call has no TTFT (a later one has): the request has none from its calls
    span("b" * 32, "b1", name="job", status="error", tenant_id="t1"),
    span("b" * 32, "b2", "b1", at=1, span_kind="llm", model="m2", input_tokens=1),
    span("b" * 32, "b3", "b1", at=9, span_kind="llm", model="m2", ttft_ms=1.0, output_tokens=4),
    # another tool's GenAI span: no span kind, a model and tokens; a root that says its own
    span("c" * 32, "c1", total_ms=99.0, ttft_ms=5.0, final_status="degraded", tool_ms=1.0),
    span("c" * 32, "c2", "c1", model="m1", input_tokens=3, output_tokens=0, cost_usd=0.1),
    # an orphan: its parent was never captured, so it is a request of its own
    span(
        "d" * 32,
        "d2",
        "d-missing",
        at=3,
        span_kind="llm",
        model="m1",
        output_tokens=8,
        ttft_ms=2.0,
        ms=10.0,
        **{"version.code": "v2"},
    ),
    span("d" * 32, "d3", "d2", at=4, span_kind="tool", ms=1.0),
    # no LLM span at all; a zero queue span (no queue time); an error code of its own
    span("e" * 32, "e1", error_code="TIMEOUT", status="error"),
    span("e" * 32, "e2", "e1", span_kind="queue", ms=0.0),
    # a health check (kept apart) and a plain route of a versioned service (a request)
    span("f" * 32, "f1", name="GET /healthz", route="/api/healthz"),
    span("9" * 32, "91", name="GET /v1/users", route="/v1/users", version_set="code=v1"),
    # a framework's server span around our request span: ours is the request
    span("8" * 32, "81", name="POST /x", route="/x", ms=50.0),
    span("8" * 32, "82", "81", at=1, span_kind="request", name="handle", ms=40.0),
    span("8" * 32, "83", "82", at=2, span_kind="llm", model="m1", input_tokens=5, ms=9.0),
    span("8" * 32, "84", "83", at=3, model="m1", input_tokens=5, output_tokens=2, ms=8.0),
    # a lone span without a span id (broken data): still a request of its own
    span("7" * 32, None, span_kind="llm", model="m1", input_tokens=3),
]


def test_corner_cases_of_the_rules_roll_up_the_same(tmp_path: Path) -> None:
    """Orphans, a first call without TTFT, foreign GenAI spans, roots' own totals, no LLM, a
    probe, a server span around our request span, a call seen by two spans, no span id."""
    got = assert_same_requests(ingest_frame(frame(CORNERS, ("version.code",)), tmp_path / "ds"))
    assert got.height == 8  # the health check is kept apart
    apart = engine.traffic(tmp_path / "ds").apart
    assert_frame_equal(apart, traffic(open_spans(tmp_path / "ds")).apart)
    assert apart.to_dicts() == [{"route": "/api/healthz", "traces": 1}]
    assert "/api/healthz" not in got["route"].cast(pl.String).to_list()
    nested = got.filter(pl.col("route") == "handle").row(0, named=True)
    assert (nested["input_tokens"], nested["llm_calls"]) == (5, 1)


def test_columns_added_by_a_later_ingest_roll_up_the_same(tmp_path: Path) -> None:
    """Files without a version column a later commit added read it as null (schema evolution)."""
    root = ingest_frame(frame(CORNERS[:4]), tmp_path / "ds")
    ingest_frame(frame(CORNERS[4:], ("version.code",)), root)
    got = assert_same_requests(root)
    assert "version.code" in got.columns


@st.composite
def forests(draw: st.DrawFn) -> list[dict]:
    """Random traces: spans whose parents are earlier spans, a missing span or none; kinds,
    tokens, TTFTs and totals present or not. Every span has its own start and a trace one model
    (the rules pick "a model" of the counted calls, and the first call by its start)."""
    rows: list[dict] = []
    clock = iter(range(0, 10**6, 7))
    for t in range(draw(st.integers(1, 6))):
        trace = f"{t:032x}"
        model = draw(st.sampled_from(["m1", "m2"]))
        ids: list[str] = []
        for s in range(draw(st.integers(1, 6))):
            sid = f"{t:08x}{s:08x}"
            parent = draw(st.sampled_from([None, "f" * 16, *ids])) if s else None
            kind = draw(st.sampled_from([None, "llm", "tool", "queue", "request"]))
            maybe = st.none() | st.floats(0, 500, allow_nan=False)
            rows.append(
                span(
                    trace,
                    sid,
                    parent,
                    at=next(clock),
                    ms=draw(st.floats(0, 900, allow_nan=False)),
                    span_kind=kind,
                    model=draw(st.none() | st.just(model)),
                    input_tokens=draw(st.none() | st.integers(0, 10**6)),
                    output_tokens=draw(st.none() | st.integers(0, 10**6)),
                    cost_usd=draw(maybe),
                    ttft_ms=draw(maybe),
                    total_ms=draw(st.none() | st.floats(1, 10**4, allow_nan=False)),
                    status=draw(st.sampled_from(["unset", "error"])),
                    operation=draw(st.none() | st.just("execute_tool")),
                    route=draw(st.none() | st.sampled_from(["/a", "/b"])),
                )
            )
            ids.append(sid)
    return rows


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=forests())
def test_random_span_forests_roll_up_the_same(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict]
) -> None:
    """Any forest of spans (orphans, nested LLM calls, missing values) rolls up the same."""
    root = tmp_path_factory.mktemp("forest")
    frame(rows).write_parquet(root / "spans.parquet")
    expected = request_table(pl.scan_parquet(root / "spans.parquet"))
    got = engine.request_table([root / "spans.parquet"])
    assert_frame_equal(comparable(got), comparable(expected), check_exact=False, rel_tol=1e-9)


def test_low_entropy_trace_ids_are_told_apart(tmp_path: Path) -> None:
    """Trace ids that differ in a few characters (sequential ids under a chunk prefix, where
    DuckDB's own string hash maps 12,000 ids to 9,600 values) are each their own request."""
    chunks = [
        generate("aa", 2000, seed=c).with_columns(
            trace_id=pl.lit(f"{c:08x}") + pl.col("trace_id").str.slice(8)
        )
        for c in range(6)
    ]
    root = ingest_frame(pl.concat(chunks), tmp_path / "ds")
    got = assert_same_requests(root)
    assert got.height == 12_000


def test_models_whose_fast_codes_collide_still_roll_up_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the engine's fast hash gives two models one code, the roll-up codes them again."""
    from dataclasses import replace

    from blameset.analyze.engine import duckdb as duck

    monkeypatch.setattr(
        duck.DuckDBEngine, "dialect", replace(duck.DIALECT, code=lambda expr: "CAST(7 AS UBIGINT)")
    )
    corners = [
        *CORNERS,
        span("6" * 32, "61", span_kind="request", name="two-models", ms=30.0),
        span("6" * 32, "62", "61", at=1, span_kind="llm", model="m2", input_tokens=4, ms=9.0),
    ]
    got = assert_same_requests(ingest_frame(frame(corners, ("version.code",)), tmp_path / "ds"))
    models = got.filter(pl.col("route").is_in(["two-models", "handle"]))["model"]
    assert sorted(models.cast(pl.String).to_list()) == ["m1", "m2"]


def test_corner_cases_roll_up_the_same_in_spark(tmp_path: Path) -> None:
    """Spark (local mode) rolls the corner cases up as polars does: nested LLM spans, orphans,
    two models in one trace, a span without an id."""
    corners = [
        *CORNERS,
        span("6" * 32, "61", span_kind="request", name="two-models", ms=30.0),
        span("6" * 32, "62", "61", at=1, span_kind="llm", model="m2", input_tokens=4, ms=9.0),
    ]
    path = ingest_frame(frame(corners, ("version.code",)), tmp_path / "ds")
    got = assert_same_requests(path, engine="spark")
    nested = got.filter(pl.col("route") == "handle").row(0, named=True)
    assert (nested["input_tokens"], nested["llm_calls"]) == (5, 1)


def test_the_roll_up_leaves_the_engine_as_it_found_it(tmp_path: Path) -> None:
    """After the request table is read, DuckDB's memory limit is back to the one asked for, and
    neither the roll-up's tables nor the spooled table are left behind."""
    path = ingest_frame(frame(CORNERS, ("version.code",)), tmp_path / "ds")
    spill = tmp_path / "spill"
    with engine.open_engine(path, memory_limit="700MB", temp_dir=spill) as opened:
        limit = opened.rows("SELECT current_setting('memory_limit')")
        before = {r[0] for r in opened.rows("SELECT table_name FROM duckdb_tables()")}
        got = engine.traffic(opened).requests
        assert opened.rows("SELECT current_setting('memory_limit')") == limit
        after = {r[0] for r in opened.rows("SELECT table_name FROM duckdb_tables()")}
        assert after == before
        assert not [p for p in spill.iterdir() if p.name.startswith("blameset-requests-")]
    assert got.height == 8


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.one_of(st.none(), st.integers(-(2**63) + 1, 2**63 - 1)),
            st.integers(0, 2**64 - 1),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_the_packed_earliest_code_is_the_code_of_the_first_start(
    rows: list[tuple[int, int | None, int, bool]],
) -> None:
    """DuckDB's packed MIN_BY gives the code of the earliest start among the rows kept (the
    smallest code on a tie), for any start, negative ones too, and any unsigned 64-bit code."""
    import duckdb

    from blameset.analyze.engine.duckdb import DIALECT

    expected: dict[int, int | None] = {}
    for group in sorted({r[0] for r in rows}):
        kept = [(s, c) for g, s, c, k in rows if g == group and k and s is not None]
        expected[group] = min(kept)[1] if kept else None
    con = duckdb.connect()
    con.execute("CREATE TABLE t (g INTEGER, s BIGINT, c UBIGINT, k BOOLEAN)")
    if rows:
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    sql = DIALECT.earliest_code("c", "s", "k")
    got = dict(con.execute(f"SELECT g, {sql} FROM t GROUP BY g").fetchall())
    assert got == expected


def _key_type(path: Path | list[Path] | engine.Source) -> str:
    """The type the roll-up keys traces by, over ``path``."""
    from blameset.analyze.engine._rollup import SPANS
    from blameset.analyze.engine._run import prepare

    with engine.open_engine(path) as opened:
        prepare(opened)
        return str(opened.rows(f"SELECT typeof(trace_id) FROM {SPANS} LIMIT 1")[0][0])


def test_ingest_marks_files_whose_trace_ids_are_all_hex(tmp_path: Path) -> None:
    """Ingest writes the hex mark on a file of W3C trace ids and not on one with another id, and
    the engine keys the marked dataset's traces by a 128-bit integer."""
    hexes = ingest_frame(frame(CORNERS, ("version.code",)), tmp_path / "hex")
    other = ingest_frame(frame([span("trace-1", "s1", name="x")]), tmp_path / "other")
    marks = [
        pl.read_parquet_metadata(f).get("blameset.trace_ids")
        for root in (hexes, other)
        for f in sorted(root.glob("day=*/*.parquet"))
    ]
    assert marks == [f"hex32 rows={len(CORNERS)}", None]
    assert _key_type(hexes) == "UHUGEINT"
    assert _key_type(other) == "VARCHAR"


@pytest.mark.parametrize(
    "ids",
    [
        ["A" * 32, "a" * 32],  # the hex cast takes upper case: these must stay two traces
        ["aaaa_aaaa" + "a" * 23, "a" * 32],  # ... and digit separators
        ["0x" + "a" * 30, "a" * 32],
        ["abc", "a" * 32],
        ["", "a" * 32],
        ["a" * 33, "a" * 32],
    ],
)
def test_trace_ids_an_integer_cannot_hold_exactly_are_keyed_by_text(
    tmp_path: Path, ids: list[str]
) -> None:
    """Data with one trace id the 128-bit key would merge or refuse rolls up by text, as polars
    does: every id its own request."""
    rows = [
        span(trace, f"{i}1", name=f"r{i}", span_kind="request", input_tokens=i + 1)
        for i, trace in enumerate(ids)
    ]
    frame(rows).write_parquet(tmp_path / "spans.parquet")
    assert _key_type([tmp_path / "spans.parquet"]) == "VARCHAR"
    got = assert_same_requests(tmp_path)
    assert got.height == 2


def test_hex_trace_ids_keyed_as_integers_roll_up_as_by_text(tmp_path: Path) -> None:
    """A scenario's hex trace ids, keyed as integers, give the request table the text keys give."""
    spans = generate("worker_regression", 3000, seed=5)
    root = ingest_frame(spans, tmp_path / "ds")
    assert _key_type(root) == "UHUGEINT"
    marked = assert_same_requests(root)
    (tmp_path / "text").mkdir()
    spans.with_columns(trace_id="t-" + pl.col("trace_id")).write_parquet(
        tmp_path / "text" / "spans.parquet"
    )
    assert _key_type([tmp_path / "text" / "spans.parquet"]) == "VARCHAR"
    texts = engine.request_table([tmp_path / "text" / "spans.parquet"])
    assert_frame_equal(comparable(texts), comparable(marked), check_exact=False, rel_tol=1e-9)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(
        st.text(alphabet="0123456789abcdefABCDEF_x", min_size=30, max_size=34)
        | st.sampled_from(["a" * 32, "A" * 32, "0" * 32, "f" * 32]),
        min_size=1,
        max_size=8,
    )
)
def test_any_trace_ids_roll_up_as_the_polars_path_does(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str]
) -> None:
    """Trace ids near the hex form (case, separators, lengths 30-34), on integer keys or text:
    one request per distinct id, as the polars path has them (a repeated id is one trace whose
    two request spans start apart)."""
    root = tmp_path_factory.mktemp("ids")
    rows = [
        span(trace, f"{i:016x}", at=i, name=f"r{i}", span_kind="request", input_tokens=i)
        for i, trace in enumerate(ids)
    ]
    frame(rows).write_parquet(root / "spans.parquet")
    expected = request_table(pl.scan_parquet(root / "spans.parquet"))
    got = engine.request_table([root / "spans.parquet"])
    assert got.height == expected.height == len(set(ids))
    assert_frame_equal(comparable(got), comparable(expected), check_exact=False, rel_tol=1e-9)


def _twins(folder: Path) -> pl.DataFrame:
    """Two requests whose ids a hex cast reads as one integer (upper and lower case)."""
    folder.mkdir(parents=True, exist_ok=True)
    return frame(
        [
            span("A" * 32, "s1", name="upper", span_kind="request", input_tokens=1),
            span("a" * 32, "s2", at=1, name="lower", span_kind="request", input_tokens=2),
        ]
    )


def test_a_mark_is_trusted_only_for_the_file_it_was_written_for(tmp_path: Path) -> None:
    """Trace ids are keyed by text when one file of several is unmarked, when a file's mark
    names another row count (a merge that kept a footer), or when a glob-like file name stands
    for an unmarked file too; non-UTF-8 metadata is no error."""
    import pyarrow.parquet as pq

    mark = "blameset.trace_ids"
    twins = _twins(tmp_path)
    marked = frame([span("b" * 32, "m1", name="marked", span_kind="request")])
    marked.write_parquet(tmp_path / "b*.parquet", metadata={mark: "hex32 rows=1"})
    twins.write_parquet(tmp_path / "bx.parquet")
    twins.write_parquet(tmp_path / "stale.parquet", metadata={mark: "hex32 rows=1"})
    table = marked.to_arrow().replace_schema_metadata({b"\xff": b"\xfe"})
    pq.write_table(table, tmp_path / "binary.parquet")
    cases = [
        [tmp_path / "b*.parquet", tmp_path / "bx.parquet"],  # marked + unmarked
        [tmp_path / "stale.parquet"],
        engine.Source((str(tmp_path / "b*.parquet"),)),  # DuckDB expands the glob: bx too
    ]
    for case in cases:
        assert _key_type(case) == "VARCHAR", case
    assert _key_type(engine.Source((str(tmp_path / "b[*].parquet"),))) == "UHUGEINT"
    assert _key_type([tmp_path / "binary.parquet"]) == "UHUGEINT"  # checked on its ids
    got = engine.request_table([tmp_path / "stale.parquet"])
    assert sorted(got["route"].cast(pl.String).to_list()) == ["lower", "upper"]


_HEX = st.integers(0, 2**128 - 1).map(lambda n: f"{n:032x}") | st.integers(0, 2**64).map(
    lambda n: f"{n:032x}"
)


def _spelled(text: str, how: str, at: int) -> str:
    """A 128-bit id as W3C writes it, or as some other tool might: upper or mixed case, a
    separator at ``at``, leading zeros dropped, a 0x prefix."""
    if how == "upper":
        return text.upper()
    if how == "mixed":
        return "".join(c.upper() if i % 2 else c for i, c in enumerate(text))
    if how == "sep":
        return text[:at] + "_" + text[at:]
    if how == "short":
        return text.lstrip("0") or "0"
    return text if how == "same" else "0x" + text


_HOWS = st.sampled_from(["same", "upper", "mixed", "sep", "short", "0x"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.lists(_HEX, min_size=1, max_size=3, unique=True),
    extra=st.lists(st.tuples(st.integers(0, 2), _HOWS, st.integers(1, 31)), max_size=4),
    ingested=st.booleans(),
)
def test_one_id_written_several_ways_is_never_one_trace(
    tmp_path_factory: pytest.TempPathFactory,
    base: list[str],
    extra: list[tuple[int, str, int]],
    ingested: bool,
) -> None:
    """W3C ids beside the same 128-bit values spelled otherwise (case, '_', no leading zeros,
    0x), stored by ingest (marked) or as a bare file: each distinct text is its own request, as
    the polars path has them, and the engine keys by integer exactly when every id is W3C's."""
    root = tmp_path_factory.mktemp("spellings")
    ids = [*base, *(_spelled(base[i % len(base)], how, at) for i, how, at in extra)]
    rows = [
        span(trace, f"{i:016x}", at=i, name=f"r{i}", span_kind="request", input_tokens=i)
        for i, trace in enumerate(ids)
    ]
    spans = frame(rows)
    if ingested:
        ingest_frame(spans, root / "ds")
        path: Path | list[Path] = root / "ds"
    else:
        spans.write_parquet(root / "spans.parquet")
        path = [root / "spans.parquet"]
    w3c = all(len(i) == 32 and i == i.lower() and "_" not in i and "x" not in i for i in ids)
    assert _key_type(path) == ("UHUGEINT" if w3c else "VARCHAR")
    expected = request_table(open_spans(path))
    got = engine.request_table(path)
    assert got.height == expected.height == len(set(ids))
    assert_frame_equal(comparable(got), comparable(expected), check_exact=False, rel_tol=1e-9)
