"""The fast path of ingest (JSON lines decoded by the native decoder) against the row reader:
the same rows for OTLP JSON and flat JSONL, the row reader's answer wherever the fast path is not
sure, bad lines named by their number in the file whichever chunk they fall in."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blameset.analyze import fast
from blameset.analyze.ingest import ingest, load
from blameset.analyze.readers import BadInput
from blameset.analyze.table import spans_frame
from tests.analyze.test_readers import _flat, attr_values, read, resources, span_strategy

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"


@pytest.fixture(autouse=True)
def native_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path under test is the native decoder (on, whatever BLAMESET_NATIVE says)."""
    if fast._spanjson is None:
        pytest.skip("the native decoder is not built")
    monkeypatch.setattr(fast, "NATIVE", True)


def rows(frame: pl.DataFrame) -> list[dict]:
    """Rows comparable across paths: attributes and resource as parsed JSON, in span order."""
    out = frame.to_dicts()
    for row in out:
        row["attributes"] = json.loads(row["attributes"])
        row["resource"] = json.loads(row["resource"])
    return sorted(out, key=lambda r: (r["trace_id"], r["span_id"], r["start"]))


def any_value(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    if isinstance(v, dict):
        return {
            "kvlistValue": {"values": [{"key": k, "value": any_value(x)} for k, x in v.items()]}
        }
    return {"stringValue": v}


KINDS = ["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]
KIND_NAMES = ["", *(f"SPAN_KIND_{k}" for k in KINDS)]


def otlp_span(span: dict, attrs: dict, id_style: int) -> dict:
    trace = span["trace_id"]
    body = {
        "traceId": [trace.hex(), trace.hex().upper(), base64.b64encode(trace).decode()][id_style],
        "spanId": span["span_id"].hex(),
        "name": span["name"],
        "kind": span["kind"] if id_style % 2 else KIND_NAMES[span["kind"]],
        "startTimeUnixNano": str(span["start"]),
        "endTimeUnixNano": span["start"] + span["length"],
        "status": {"code": span["status"], "message": "boom" if span["status"] == 2 else ""},
        "attributes": [
            {"key": k, "value": any_value(v)} for k, v in {**span["attrs"], **attrs}.items()
        ],
    }
    if span["parent"]:
        body["parentSpanId"] = span["parent"].hex()
    return body


lists = st.lists(st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans()), max_size=3)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(span_strategy, attr_values, resources, st.integers(0, 2), lists),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 4),
)
def test_otlp_json_fast_path_gives_the_row_readers_rows(tmp_path_factory, spans, per_line):
    """Collector-layout lines (several spans a request, ids hex in any case or base64, kinds as
    numbers or names, int64 as strings, arrays in the resource, escapes in any text, metric
    lines between) read to the row reader's table."""
    path = tmp_path_factory.mktemp("otlp") / "spans.jsonl"
    lines = []
    for i in range(0, len(spans), per_line):
        group = spans[i : i + per_line]
        resource = {**group[0][2], "process.command_args": group[0][4]}
        lines.append(
            {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [
                                {"key": k, "value": any_value(v)} for k, v in resource.items()
                            ]
                        },
                        "scopeSpans": [
                            {
                                "scope": {"name": "t"},
                                "spans": [otlp_span(s, a, style) for s, a, _, style, _ in group],
                            }
                        ],
                    }
                ]
            }
        )
        lines.append({"resourceMetrics": [{"scopeMetrics": []}]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    table = fast.otlp_frame(path)
    assert table is not None  # clean input is the fast path's
    slow = spans_frame(read(path)[0])
    assert table.columns == slow.columns
    assert rows(table) == rows(slow)


def test_the_demo_capture_reads_the_same_both_ways(tmp_path: Path):
    """A real Collector capture (Go, Python, .NET services; arrays in resources; metric and log
    lines) gives the row reader's spans and other-signal counts through the fast path."""
    table = fast.otlp_frame(OTLP / "otel-demo-capture.jsonl")
    assert table is not None
    records, report = read(OTLP / "otel-demo-capture.jsonl")
    assert rows(table) == rows(spans_frame(records))
    summary = ingest([OTLP / "otel-demo-capture.jsonl.gz"], tmp_path / "ds")
    assert summary.spans == 547
    assert summary.other_signal_lines == dict(report.other_signals)


@pytest.mark.parametrize(
    "attrs",
    [
        {"gen_ai.usage.input_tokens": "12"},  # a number as a string: int("12") in the row reader
        {"gen_ai.request.model": 5},  # str(5) there
        {"blameset.latency.ttft_ms": True},
        {"blameset.version.prompt": "v1"},  # components without a version set string
        {"gen_ai.request.model": {"nested": [1, {"a": None}]}},
    ],
)
def test_values_the_fast_path_is_not_sure_of_go_to_the_row_reader(tmp_path: Path, attrs: dict):
    """A span whose values the fast path would not turn into the row reader's row: no fast
    table, and ingest still stores the row reader's rows."""
    doc = _flat(
        {
            "trace_id": b"\x01" * 16,
            "span_id": b"\x02" * 8,
            "parent": None,
            "name": "x",
            "kind": 1,
            "start": 1_767_225_600_000_000_000,
            "length": 5,
            "status": 0,
            "attrs": attrs,
        }
    )
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    assert fast.flat_frame(path) is None
    ingest([path], tmp_path / "ds")
    stored = load(tmp_path / "ds").drop("day").collect()
    assert rows(stored) == rows(spans_frame(read(path)[0]))


def _flat_lines(n: int) -> list[str]:
    return [
        json.dumps(
            _flat(
                {
                    "trace_id": i.to_bytes(16, "big"),
                    "span_id": (i + 1).to_bytes(8, "big"),
                    "parent": None,
                    "name": f'op "{i}" é',
                    "kind": 2,
                    "start": 1_767_225_600_000_000_000 + i,
                    "length": 1000,
                    "status": 0,
                    "attrs": {"blameset.version_set": "code=a", "gen_ai.usage.input_tokens": i},
                }
            )
        )
        for i in range(1, n + 1)
    ]


def test_a_bad_line_is_named_by_its_number_in_the_file_whatever_the_chunk(
    tmp_path: Path, monkeypatch
):
    """Chunks of a few lines: the bad line is named by its line in the file, the other chunks
    still go the fast way, and --skip-bad-lines stores every other span once."""
    monkeypatch.setattr(fast, "CHUNK_BYTES", 1000)
    lines = _flat_lines(40)
    lines[27] = '{"trace_id": "broken'
    path = tmp_path / "spans.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(BadInput, match=r"spans\.jsonl\.gz:28: invalid JSON"):
        ingest([path], tmp_path / "ds")
    summary = ingest([path], tmp_path / "ds2", skip_bad=True)
    assert (summary.spans, summary.skipped_lines, summary.duplicates) == (39, 1, 0)
    stored = load(tmp_path / "ds2").collect()
    assert stored.height == 39
    assert stored.get_column("name").str.contains('"', literal=True).all()


def test_a_truncated_stream_keeps_the_lines_before_it(tmp_path: Path, monkeypatch):
    """A gzip file cut short: the error names the compressed byte where it broke (the file's
    end) and the last line read; --skip-bad-lines stores the whole lines before it, as many as
    the row reader reads."""
    monkeypatch.setattr(fast, "CHUNK_BYTES", 2000)
    whole = gzip.compress(("\n".join(_flat_lines(200)) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    end = len(whole) * 2 // 3
    with pytest.raises(BadInput, match=rf"cut\.jsonl\.gz@{end}: truncated gzip stream .* line \d+"):
        ingest([path], tmp_path / "ds")
    records, report = read(path, skip_bad=True)
    summary = ingest([path], tmp_path / "ds2", skip_bad=True)
    assert 0 < summary.spans == len(records)
    assert summary.skipped_lines == report.skipped_lines == 1


def test_otlp_chunks_fall_back_one_by_one(tmp_path: Path, monkeypatch):
    """An OTLP file whose one line the fast path declines (a key-value list value): that chunk
    goes to the row reader, the rest does not, and nothing is lost or doubled."""
    monkeypatch.setattr(fast, "OTLP_CHUNK_BYTES", 2000)
    lines = []
    for i in range(12):
        value = {"kvlistValue": {"values": []}} if i == 5 else {"stringValue": f"v{i}"}
        span = {
            "traceId": f"{i + 1:032x}",
            "spanId": f"{i + 1:016x}",
            "name": "op",
            "kind": 2,
            "startTimeUnixNano": str(1_767_225_600_000_000_000 + i),
            "endTimeUnixNano": str(1_767_225_600_000_000_500 + i),
            "attributes": [{"key": "k", "value": value}],
        }
        request = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}
        lines.append(json.dumps(request))
    path = tmp_path / "otlp.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = ingest([path], tmp_path / "ds")
    assert (summary.spans, summary.duplicates) == (12, 0)
    stored = load(tmp_path / "ds").drop("day").collect()
    assert rows(stored) == rows(spans_frame(read(path)[0]))


def test_the_same_spans_twice_in_one_ingest_are_stored_once(tmp_path: Path, monkeypatch):
    """Duplicates across chunks and files of one ingest, and against the dataset: kept once."""
    monkeypatch.setattr(fast, "CHUNK_BYTES", 3000)
    lines = _flat_lines(30)
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[10:] + lines[:5]) + "\n")
    summary = ingest([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "ds")
    assert (summary.spans, summary.duplicates) == (30, 25)
    again = ingest([tmp_path / "b.jsonl"], tmp_path / "ds")
    assert (again.spans, again.duplicates) == (0, 25)
    stored = load(tmp_path / "ds").collect()
    assert stored.height == 30
    assert stored.select(pl.struct("trace_id", "span_id").n_unique()).item() == 30


def test_a_flat_span_whose_attributes_are_not_an_object_is_bad_input(tmp_path: Path):
    """Neither path turns a non-object attributes or resource into a row: FILE:LINE, exit 2."""
    doc = json.loads(_flat_lines(1)[0])
    doc["attributes"] = ["not", "an", "object"]
    path = tmp_path / "spans.jsonl"
    path.write_text(_flat_lines(1)[0] + "\n" + json.dumps(doc) + "\n")
    assert fast.flat_frame(path) is None
    with pytest.raises(BadInput, match=r"spans\.jsonl:2: flat span whose 'attributes'"):
        ingest([path], tmp_path / "ds")


@pytest.mark.parametrize("escaped", [False, True])
def test_array_values_read_the_same_whether_their_member_is_escaped_or_not(tmp_path: Path, escaped):
    """Arrays decode natively; a member spelled with an escape (``array\\u0056alue``) is left to
    the row reader, and both give the same rows."""
    span = {
        "traceId": "01" * 16,
        "spanId": "02" * 8,
        "name": "x",
        "kind": 2,
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225600000000005",
        "attributes": [
            {"key": "tags", "value": any_value(["a", 1, 2.5, True])},
            {"key": "gen_ai.request.model", "value": any_value("gpt-4o")},
        ],
    }
    doc = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}
    text = json.dumps(doc)
    if escaped:
        text = text.replace('"arrayValue"', '"array\\u0056alue"')
    path = tmp_path / "spans.otlp.jsonl"
    path.write_text(text + "\n")
    frame = fast.otlp_frame(path)
    assert (frame is None) == escaped
    expected = rows(spans_frame(read(path)[0]))
    if frame is not None:
        assert rows(frame) == expected
    ingest([path], tmp_path / "ds")
    assert rows(load(tmp_path / "ds").drop("day").collect()) == expected
