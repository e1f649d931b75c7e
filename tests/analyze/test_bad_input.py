"""Issue 18's bad inputs: each is stored exactly or refused by name (``FILE:LINE`` or
``FILE@BYTE``), counted per reason under ``skip_bad``, and every reader (the native decoder of
ingest's fast path, the row reader of report, attribute and check) decides a file the same way."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blameset.analyze import fast, open_spans
from blameset.analyze.ingest import ingest, load
from blameset.analyze.readers import (
    MAX_VALUE_DEPTH,
    BadInput,
    ReadReport,
    expand_inputs,
    read_file,
)
from tests.analyze.bad_inputs import (
    CASES,
    T0,
    compressed,
    flat_nested,
    flat_span,
    good_lines,
    lines,
    nested,
    otlp_span,
    per_frame_zstd,
    request,
    truncated,
    write_case,
)


def read(path: Path, *, skip_bad: bool = False) -> tuple[list[dict], ReadReport]:
    report = ReadReport()
    return list(read_file(path, report, skip_bad=skip_bad)), report


def refusal(call) -> str:
    with pytest.raises(BadInput) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_line_is_refused_by_name_by_every_reader(tmp_path: Path, case: str):
    """Ingest (native decoder first) and the row reader give the same FILE:LINE error."""
    path, error = write_case(tmp_path, case)
    by_rows = refusal(lambda: read(path))
    by_ingest = refusal(lambda: ingest([path], tmp_path / "ds"))
    assert by_rows.startswith(error), by_rows
    assert by_ingest == by_rows
    assert not (tmp_path / "ds" / "_delta_log").exists()  # nothing committed


@pytest.mark.parametrize("case", sorted(CASES))
def test_skip_bad_counts_each_refusal_under_its_reason(tmp_path: Path, case: str):
    """With skip_bad the refused line is counted under its reason, the same by every reader,
    and the good lines around it are stored."""
    path, error = write_case(tmp_path, case)
    reason = error.split(": ", 1)[1]
    records, report = read(path, skip_bad=True)
    summary = ingest([path], tmp_path / "ds", skip_bad=True)
    assert report.skipped_lines == summary.skipped_lines >= 1
    ((file, reasons),) = summary.skipped.items()
    assert file == str(path)
    assert all(reason.startswith(r) or r.startswith(reason) for r in reasons), reasons
    assert summary.spans + summary.duplicates == len(records)


def test_empty_ids_are_not_merged_as_duplicates(tmp_path: Path):
    """Two spans with "" ids are refused, never stored as one span and one "duplicate"."""
    path, _ = write_case(tmp_path, "empty ids")
    summary = ingest([path], tmp_path / "ds", skip_bad=True)
    assert (summary.spans, summary.duplicates, summary.skipped_lines) == (0, 0, 1)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_truncated_stream_is_refused_at_its_byte(tmp_path: Path, kind: str):
    """A .gz or .zst cut short is FILE@BYTE (the byte where it ends), never read as a complete
    shorter file; with skip_bad the lines before the cut are stored and the cut counted."""
    data, cut = truncated(kind)
    path = tmp_path / f"cut.jsonl.{'gz' if kind == 'gzip' else 'zst'}"
    path.write_bytes(data)
    expected = f"{path}@{cut}: truncated {kind} stream"
    assert refusal(lambda: read(path)).startswith(expected)
    assert refusal(lambda: ingest([path], tmp_path / "ds")).startswith(expected)
    records, _ = read(path, skip_bad=True)
    summary = ingest([path], tmp_path / "ds2", skip_bad=True)
    assert 0 < summary.spans == len(records) < 600
    assert summary.skipped == {str(path): {f"truncated {kind} stream": 1}}


def test_a_very_short_truncated_zstd_is_refused(tmp_path: Path):
    """A .zst cut inside its first block (no whole line decompressed yet) is refused too."""
    data, _ = truncated("zstd")
    path = tmp_path / "tiny.zst"
    path.write_bytes(data[:40])
    assert refusal(lambda: ingest([path], tmp_path / "ds")).startswith(
        f"{path}@40: truncated zstd stream"
    )


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_corrupt_stream_is_refused_at_a_byte(tmp_path: Path, kind: str):
    """Compressed bytes overwritten in the middle: refused as corrupt at a byte offset."""
    data = bytearray(compressed(kind, 3000))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(range(64))
    path = tmp_path / f"corrupt.{kind}"
    path.write_bytes(bytes(data))
    error = refusal(lambda: read(path))
    assert refusal(lambda: ingest([path], tmp_path / "ds")) == error
    # where the damage stops the decompressor, at its byte; else the garbage it let through
    # is refused at its line (gzip's CRC at the end of the member catches the rest)
    assert re.match(rf"{re.escape(str(path))}(@\d+: corrupt {kind} stream|:\d+: )", error), error


def test_per_frame_zstd_json_starting_with_logs_reads_its_spans(tmp_path: Path):
    """The Collector file exporter's older per-frame zstd JSON: logs and metrics frames are
    counted and passed over, the trace frames read."""
    path = tmp_path / "export.zst"
    path.write_bytes(
        per_frame_zstd(
            {"resourceLogs": [{"scopeLogs": []}]},
            request(otlp_span()),
            {"resourceMetrics": [{"scopeMetrics": []}]},
            request(otlp_span(spanId="eee19b7ec3c1b175"), otlp_span(spanId="eee19b7ec3c1b176")),
        )
    )
    records, report = read(path)
    assert len(records) == 3
    assert report.other_signals == {"logs": 1, "metrics": 1}
    summary = ingest([path], tmp_path / "ds")
    assert summary.spans == 3
    assert summary.other_signal_lines == {"logs": 1, "metrics": 1}


def test_a_per_frame_zstd_file_cut_in_its_last_frame_is_refused(tmp_path: Path):
    """A per-frame file whose last frame is cut: the frames before it are read, the cut is
    FILE@BYTE at the frame's start."""
    whole = per_frame_zstd(request(otlp_span()), request(otlp_span(spanId="eee19b7ec3c1b175")))
    first = 4 + int.from_bytes(whole[:4], "big")
    path = tmp_path / "cut-frames.zst"
    path.write_bytes(whole[:-5])
    assert refusal(lambda: read(path)).startswith(f"{path}@{first}: truncated frame")
    records, report = read(path, skip_bad=True)
    assert len(records) == 1
    assert report.skipped_lines == 1


def test_a_bad_frame_inside_a_per_frame_file_is_named_at_its_byte(tmp_path: Path):
    """A frame holding a span without a start is refused at the frame's byte offset."""
    whole = per_frame_zstd(request(otlp_span()), request(otlp_span(startTimeUnixNano=None)))
    first = 4 + int.from_bytes(whole[:4], "big")
    path = tmp_path / "frames.zst"
    path.write_bytes(whole)
    assert refusal(lambda: read(path)).startswith(
        f"{path}@{first}: span without a startTimeUnixNano"
    )


def test_protobuf_spans_without_ids_are_refused(tmp_path: Path):
    """OTLP protobuf: a span whose ids are empty is refused at its frame, not stored."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    message = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(name="x", start_time_unix_nano=5)])])
        ]
    )
    path = tmp_path / "trace.pb"
    path.write_bytes(message.SerializeToString())
    assert refusal(lambda: read(path)) == (
        f"{path}@0: span without a trace_id (OTLP requires one; spans without it are not told "
        "apart)"
    )


def test_an_attribute_at_the_depth_limit_is_stored_and_read_back(tmp_path: Path):
    """A value nested exactly MAX_VALUE_DEPTH deep is stored (by both layouts) and loads."""
    otlp = tmp_path / "deep.jsonl"
    otlp.write_bytes(
        lines(request(otlp_span(attributes=[{"key": "d", "value": nested(MAX_VALUE_DEPTH)}])))
    )
    flat = tmp_path / "deep-flat.jsonl"
    flat.write_bytes(
        lines(flat_span(span_id="eee19b7ec3c1b175", attributes={"d": flat_nested(MAX_VALUE_DEPTH)}))
    )
    summary = ingest([otlp, flat], tmp_path / "ds")
    assert summary.spans == 2
    stored = load(tmp_path / "ds").collect()
    for text in stored.get_column("attributes"):
        value = json.loads(text)["d"]
        depth = 0
        while isinstance(value, dict):
            value, depth = value["k"], depth + 1
        assert (depth, value) == (MAX_VALUE_DEPTH, "x")


def test_folder_of_only_dot_files_says_so(tmp_path: Path):
    """A folder holding only hidden files is refused, naming the folder and why."""
    folder = tmp_path / "spill"
    folder.mkdir()
    (folder / ".part-1.jsonl").write_bytes(good_lines(1))
    error = refusal(lambda: expand_inputs([folder]))
    assert error.startswith(f"{folder}: holds only hidden files")
    assert expand_inputs([folder / ".part-1.jsonl"]) == [folder / ".part-1.jsonl"]


def test_a_glob_matching_nothing_is_refused(tmp_path: Path):
    """A pattern that matches no file is an error, not an ingest of nothing."""
    assert refusal(lambda: expand_inputs([str(tmp_path / "*.jsonl")])).endswith(
        "no file matches this pattern"
    )


def test_special_files_are_refused_by_type_without_being_opened(tmp_path: Path):
    """A FIFO (named, or inside a folder) and a device are refused by their type: no open,
    so nothing blocks and nothing is read."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    assert "a FIFO: refused without reading it" in refusal(lambda: expand_inputs([fifo]))
    assert refusal(lambda: expand_inputs([tmp_path])).startswith(f"{fifo}: not a regular file")
    assert "a device" in refusal(lambda: expand_inputs(["/dev/zero"]))
    assert "a device" in refusal(lambda: ingest(["/dev/zero"], tmp_path / "ds"))


def test_folders_keep_their_files_in_a_stable_order_and_skip_hidden_ones(tmp_path: Path):
    """Files under nested folders come sorted; hidden files and folders are passed over."""
    for rel in ("b/2.jsonl", "a/1.jsonl", "a/.hidden", ".git/x.jsonl", "c.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(good_lines(1))
    assert [p.relative_to(tmp_path).as_posix() for p in expand_inputs([tmp_path])] == [
        "a/1.jsonl",
        "b/2.jsonl",
        "c.jsonl",
    ]


def test_the_fast_path_steps_aside_for_a_cut_metrics_line():
    """The native path does not count a cut metrics line as metrics: it hands the chunk to the
    row reader, which names it (so ingest and report refuse the same file)."""
    chunk = good_lines(2) + b'{"resourceMetrics":[{"resource":{"attr\n'
    assert fast.FastReader().read(chunk, "otlp") is None
    assert fast.FastReader().read(good_lines(2) + b'{"resourceMetrics":[]}\n', "otlp") is not None


def test_an_oversized_line_is_refused_by_number_and_the_rest_read(tmp_path: Path, monkeypatch):
    """A line longer than MAX_LINE_BYTES is refused at its number; with skip_bad the lines
    around it are read (by the row reader and by ingest's chunks, which it spans)."""
    from blameset.analyze import readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 50_000)
    monkeypatch.setattr(fast, "OTLP_CHUNK_BYTES", 8_000)
    huge = request(otlp_span(spanId="00000000000000ff", name="x" * 200_000))
    path = tmp_path / "long.jsonl"
    path.write_bytes(good_lines(30) + lines(huge) + good_lines(30).replace(b'"op"', b'"op2"'))
    for call in (lambda: read(path), lambda: ingest([path], tmp_path / "ds")):
        assert refusal(call).startswith(f"{path}:31: line longer than the maximum line size")
    records, report = read(path, skip_bad=True)
    summary = ingest([path], tmp_path / "ds2", skip_bad=True)
    assert len(records) == 60  # the same 30 ids twice: 30 distinct spans
    assert summary.spans == 30 and summary.duplicates == 30
    assert report.skipped_lines == summary.skipped_lines == 1
    first = tmp_path / "long-first.jsonl"
    first.write_bytes(lines(huge) + good_lines(3))
    assert refusal(lambda: ingest([first], tmp_path / "ds3")).startswith(f"{first}:1: line longer")


times = st.one_of(
    st.none(),
    st.integers(-(2**64), 2**64),
    st.integers(0, 2**63 - 1),
    st.integers(10**30, 10**400).map(str),
)
ids = st.sampled_from(["", "0" * 32, "5b8efff798038103d269b633813fc60c"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=times,
    end=times,
    trace=ids,
    depth=st.integers(0, MAX_VALUE_DEPTH + 2),
    input_tokens=st.one_of(st.integers(-(2**64), 2**64), st.integers(0, 10**6)),
    layout=st.sampled_from(["otlp", "flat"]),
)
def test_readers_store_a_span_exactly_or_refuse_it_alike(
    tmp_path_factory, start, end, trace, depth, input_tokens, layout
):
    """Whatever the times, ids, nesting and token counts: ingest stores the span with exactly
    those values or refuses it with the row reader's error; never null, never negative."""
    folder = tmp_path_factory.mktemp("span")
    if layout == "otlp":
        doc = request(
            otlp_span(
                traceId=trace,
                startTimeUnixNano=None if start is None else str(start),
                endTimeUnixNano=None if end is None else str(end),
                attributes=[
                    {"key": "d", "value": nested(depth)},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(input_tokens)}},
                ],
            )
        )
    else:
        doc = flat_span(
            trace_id=trace,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes={"d": flat_nested(depth), "gen_ai.usage.input_tokens": input_tokens},
        )
        if start is None:
            doc["start_time_unix_nano"] = None  # present, but null: a missing start
    path = folder / "span.jsonl"
    path.write_bytes(lines(doc))
    try:
        records, _ = read(path)
    except BadInput as exc:
        error = str(exc)
    else:
        error = None
    if error is not None:
        assert refusal(lambda: ingest([path], folder / "ds")) == error
        return
    assert ingest([path], folder / "ds").spans == 1
    stored = load(folder / "ds").select(
        start_ns=pl.col("start").dt.epoch("ns"),
        end_ns=pl.col("end").dt.epoch("ns"),
        input_tokens="input_tokens",
    )
    (row,) = stored.collect().iter_rows(named=True)
    assert row["start_ns"] == start == records[0]["start_ns"]
    assert row["end_ns"] == (None if end in (None, "") else end)
    assert row["input_tokens"] == input_tokens
    assert row["start_ns"] >= 0
    assert row["end_ns"] is None or row["end_ns"] >= row["start_ns"]


def test_report_reads_what_ingest_stored_from_every_good_case(tmp_path: Path):
    """open_spans (report's reader) over the stored dataset and over the files agree."""
    path = tmp_path / "good.jsonl"
    path.write_bytes(good_lines(5) + lines(flat_span(span_id="00000000000000aa")))
    ingest([path], tmp_path / "ds")
    stored = open_spans([tmp_path / "ds"]).collect()
    direct = open_spans([path]).collect()
    assert stored.height == direct.height == 6
    assert sorted(stored.get_column("span_id")) == sorted(direct.get_column("span_id"))
    assert stored.get_column("start").min() == pl.Series([T0]).cast(pl.Datetime("ns", "UTC"))[0]


def test_a_mode_000_file_is_permission_denied_not_a_bad_stream(tmp_path: Path):
    """An unreadable file is named with the OS's reason (only checkable without root's
    override; the CLI test runs it with the capability dropped)."""
    path = tmp_path / "locked.jsonl"
    path.write_bytes(good_lines(1))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with permission to read any file (tests/cli covers it)")
        assert refusal(lambda: read(path)) == f"{path}: cannot read (permission denied)"
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def _parquet_spans(n: int = 6) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace_id": [f"{i // 2 + 1:032x}" for i in range(n)],
            "span_id": [f"{i + 1:016x}" for i in range(n)],
            "parent_span_id": [None if i % 2 == 0 else f"{i:016x}" for i in range(n)],
            "name": ["op"] * n,
            "start_time_unix_nano": [T0 + i for i in range(n)],
            "end_time_unix_nano": [T0 + i + 1000 for i in range(n)],
        }
    )


@pytest.mark.parametrize("statistics", [True, False])
@pytest.mark.parametrize("as_folder", [False, True])
def test_parquet_spans_without_a_trace_id_are_refused_by_file_and_row(
    tmp_path: Path, statistics: bool, as_folder: bool
):
    """A Parquet span without a trace id is refused at its row, by the in-memory path and the
    engines alike (the engines' joins dropped it, the in-memory path merged them)."""
    from blameset.analyze.engine import dataset_source

    spans = _parquet_spans().with_columns(
        trace_id=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise("trace_id")
    )
    folder = tmp_path / "spans"
    folder.mkdir()
    path = folder / "part.parquet"
    spans.write_parquet(path, statistics=statistics)
    where = folder if as_folder else path
    for call in (lambda: open_spans([where]), lambda: dataset_source([where])):
        assert f"{path.name} row 4: 1 span(s) without a trace_id" in refusal(call)


def test_parquet_without_an_id_column_is_refused(tmp_path: Path):
    """A Parquet file with no trace_id column is refused by name, not read as one request."""
    from blameset.analyze.engine import dataset_source

    path = tmp_path / "spans.parquet"
    _parquet_spans().drop("trace_id").write_parquet(path)
    for call in (lambda: open_spans([path]), lambda: dataset_source([path])):
        assert "no trace_id column" in refusal(call)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_report_on_parquet_without_trace_ids_exits_2_naming_the_file(tmp_path: Path, engine: str):
    """The command line says which file and row, with exit 2 and no traceback."""
    from typer.testing import CliRunner

    from blameset.cli.app import app

    path = tmp_path / "spans.parquet"
    _parquet_spans().with_columns(trace_id=pl.lit(None, pl.String)).write_parquet(path)
    result = CliRunner().invoke(app, ["report", str(path), "--engine", engine])
    assert result.exit_code == 2
    assert "spans.parquet row 1: 6 span(s) without a trace_id" in result.output
    assert "Traceback" not in result.output


def test_an_empty_parquet_file_beside_spans_is_read_not_refused(tmp_path: Path):
    """A file with no row groups (an empty partition's) holds no span to refuse."""
    from blameset.analyze.engine import dataset_source

    spans = _parquet_spans()
    spans.write_parquet(tmp_path / "a.parquet")
    spans.clear().write_parquet(tmp_path / "b.parquet")
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    assert open_spans(paths).collect().height == spans.height
    assert len(dataset_source(paths).files) == 2


def test_a_file_that_is_no_parquet_is_refused_by_name(tmp_path: Path):
    """A truncated Parquet file among good ones is named, not a DuckDB traceback."""
    from blameset.analyze.engine import dataset_source

    _parquet_spans().write_parquet(tmp_path / "good.parquet")
    bad = tmp_path / "cut.parquet"
    bad.write_bytes((tmp_path / "good.parquet").read_bytes()[:40])
    paths = [tmp_path / "good.parquet", bad]
    for call in (lambda: open_spans(paths), lambda: dataset_source(paths)):
        message = refusal(call)
        assert message.startswith(f"{bad}") or message.startswith(f"{bad.resolve()}")
        assert "not a readable Parquet file" in message
