"""The native decoder (analyze/_spanjson.c) against Python's json and the row reader: whatever
bytes it is given it answers with columns or a reason, never a crash; what it accepts, Python's
json accepts too and the row reader reads to the same rows; what the Collector writes, it
accepts."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blameset.analyze import fast
from blameset.analyze.readers import BadInput
from blameset.analyze.table import spans_frame
from tests.analyze.test_ingest_fast import any_value, rows
from tests.analyze.test_readers import read

native = pytest.importorskip("blameset.analyze._spanjson")

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"


def decode(data: bytes, layout: str) -> Any:
    return native.decode(data, layout, fast._ATTR_KEYS, fast._RESOURCE_KEYS)


def test_ci_builds_the_native_decoder():
    """CI installs with a C compiler: a build that silently fell back to the row reader fails."""
    assert fast.NATIVE or not os.environ.get("CI")


FLAT_SEED: dict[str, Any] = {
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "parent_span_id": None,
    "name": "POST /v1/outline",
    "kind": "server",
    "start_time_unix_nano": 1_767_225_600_000_000_000,
    "end_time_unix_nano": 1_767_225_600_250_000_000,
    "status": "error",
    "status_message": "upstream timeout",
    "resource": {"service.name": "writer-api", "blameset.version_set": "code=1;prompt=p@v2"},
    "attributes": {
        "blameset.span.kind": "request",
        "http.route": "/v1/outline",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "blameset.cost.usd": 0.0012,
        "blameset.latency.ttft_ms": 80.5,
        "blameset.error.code": "UPSTREAM_TIMEOUT",
        "tags": ["a", 1],
        "tag.\u00e9": '\u00fc " \\ \n',  # escapes in key and value once ensure_ascii writes them
    },
    "events": [{"name": "retry", "time_unix_nano": 1}],
}


OTLP_SEED: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    {"key": k, "value": any_value(v)} for k, v in FLAT_SEED["resource"].items()
                ]
                + [{"key": "process.command_args", "value": any_value(["run", "-v"])}]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "blameset", "version": "0.1"},
                    "spans": [
                        {
                            "traceId": "0AF7651916CD43DD8448EB211C80319C",
                            "spanId": "t61rcWkgMzE=",
                            "parentSpanId": "",
                            "name": "POST /v1/outline",
                            "kind": "SPAN_KIND_SERVER",
                            "startTimeUnixNano": "1767225600000000000",
                            "endTimeUnixNano": 1_767_225_600_250_000_000,
                            "status": {"code": 2, "message": "upstream timeout"},
                            "attributes": [
                                {"key": k, "value": any_value(v)}
                                for k, v in FLAT_SEED["attributes"].items()
                            ]
                            + [{"key": "meta", "value": any_value({"a": 1, "b": [True]})}],
                            "events": [
                                {
                                    "timeUnixNano": "5",
                                    "name": "retry",
                                    "attributes": [{"key": "n", "value": {"intValue": "2"}}],
                                }
                            ],
                            "links": [],
                            "droppedAttributesCount": 0,
                        }
                    ],
                }
            ],
        }
    ]
}


def row_reader_rows(data: bytes, tmp: Path) -> list[dict] | None:
    """The row reader's rows of these lines, or None where it reports bad input."""
    path = tmp / "lines.jsonl"
    path.write_bytes(data)
    try:
        records, report = read(path)
    except BadInput:
        return None
    if report.skipped_lines:
        return None
    return rows(spans_frame(records))


def check_against_python(data: bytes, layout: str, tmp: Path) -> Any:
    """The decoder's answer, after holding what it accepted to json and the row reader."""
    result = decode(data, layout)
    if isinstance(result, str):
        return result
    for line in data.split(b"\n"):
        if line.strip():
            json.loads(line.decode("utf-8"))  # accepted: Python's json must take it too
    raw = pl.Series(result).struct.unnest()
    table = fast.table_from_raw(raw)
    if table is not None:  # taken as it is: the row reader must agree, row for row
        expected = row_reader_rows(data, tmp)
        assert expected is not None, f"the row reader refuses what native took: {data[:300]!r}"
        assert rows(table) == expected
    return result


def test_the_seeds_are_accepted(tmp_path: Path):
    """The mutation seeds themselves decode natively, as the row reader reads them."""
    for seed, layout in ((FLAT_SEED, "flat"), (OTLP_SEED, "otlp")):
        data = (json.dumps(seed) + "\n").encode()
        result = check_against_python(data, layout, tmp_path)
        assert not isinstance(result, str), result
        assert result.rows == 1


@pytest.mark.parametrize(
    "name", ["otel-demo-capture.jsonl", "python-style-base64-ids.jsonl"], ids=lambda n: n
)
def test_collector_files_are_accepted_and_match_the_row_reader(tmp_path: Path, name: str):
    """Real Collector captures decode natively, row for row as the row reader reads them."""
    data = (OTLP / name).read_bytes()
    spans = [line for line in data.split(b"\n") if line.startswith(b'{"resourceSpans"')]
    payload = b"\n".join(spans) + b"\n"
    result = check_against_python(payload, "otlp", tmp_path)
    assert not isinstance(result, str), result


REPLACEMENTS = [
    None,
    "",
    0,
    -1,
    7,
    1.5,
    -0.0,
    1e300,
    2**63,
    True,
    False,
    "x",
    "\u00e9\U0001f600",
    'a\\b"c\n',
    "12",
    "SPAN_KIND_CLIENT",
    "Server",
    "AAAAAAAAAAAAAAAAAAAAAA==",
    "AAAAAAAAAAA=",
    "0af7651916cd43dd8448eb211c80319c",
    "b7ad6b7169203331",
    [],
    {},
    [1, "a"],
    {"stringValue": "s"},
    {"intValue": "9"},
    {"doubleValue": 3},
    {"boolValue": True},
    {"bytesValue": "AQI="},
    {"arrayValue": {"values": [{"intValue": 1}]}},
    {"kvlistValue": {"values": [{"key": "k"}]}},
    {"stringValue": "a", "intValue": "1"},
]


def _paths(node: Any, at: tuple = ()) -> list[tuple]:
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*at, i))
    return out


def _mutate(doc: Any, path: tuple, op: int, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return value if op == 0 else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == 0:
        parent[last] = value
    elif op == 1 and isinstance(parent, dict):
        del parent[last]
    elif op == 1:
        parent.pop(last)
    elif op == 2 and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    elif op == 2:  # a second member of the same name, written as text below
        parent[f"{last}\x00dup"] = value
    return doc


def _dumps(doc: Any, ascii_only: bool, compact: bool) -> str:
    text = json.dumps(doc, ensure_ascii=ascii_only, separators=(",", ":") if compact else None)
    # duplicated members: "name\u0000dup" -> "name" (json.dumps escaped the NUL)
    return text.replace("\\u0000dup", "")


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["flat", "otlp"]),
    st.data(),
    st.booleans(),
    st.booleans(),
)
def test_mutated_lines_are_refused_or_read_as_the_row_reader_reads_them(
    tmp_path: Path, layout: str, data: st.DataObject, ascii_only: bool, compact: bool
):
    """Values of every type in every place, members dropped or given twice: the decoder refuses,
    or its rows are the row reader's."""
    seed = FLAT_SEED if layout == "flat" else OTLP_SEED
    paths = _paths(seed)
    path = data.draw(st.sampled_from(paths))
    doc = _mutate(
        seed, path, data.draw(st.integers(0, 2)), data.draw(st.sampled_from(REPLACEMENTS))
    )
    line = _dumps(doc, ascii_only, compact)
    check_against_python((line + "\n").encode(), layout, tmp_path)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["flat", "otlp"]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)), max_size=4),
)
def test_bytes_edited_anywhere_never_crash_the_decoder(layout: str, edits: list):
    """Byte-level damage (flipped, inserted, deleted): columns or a reason, and what is accepted
    is JSON Python reads."""
    seed = FLAT_SEED if layout == "flat" else OTLP_SEED
    data = bytearray((json.dumps(seed) + "\n").encode())
    for at, byte, op in edits:
        at %= len(data)
        if op == 0:
            data[at] = byte
        elif op == 1:
            data.insert(at, byte)
        elif len(data) > 1:
            del data[at]
    result = decode(bytes(data), layout)
    if not isinstance(result, str):
        for line in bytes(data).split(b"\n"):
            if line.strip():
                json.loads(line.decode("utf-8"))
        assert pl.Series(result).len() == result.rows


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["flat", "otlp"]))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes, layout: str):
    """Random bytes give columns or a reason, never a crash."""
    result = decode(data, layout)
    assert isinstance(result, str) or pl.Series(result).len() == result.rows


ONE_SPAN = (
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": '
    b'"0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "a", '
    b'"startTimeUnixNano": "5"}]}]}]}'
)


@pytest.mark.parametrize(
    ("layout", "line", "reason"),
    [
        ("flat", b'{"name": "\xff"}', "not UTF-8"),
        ("flat", b'{"name": "\\ud800"}', "lone surrogate"),
        ("flat", b'{"name": "a", "name": "b"}', "duplicated member"),
        ("flat", b'{"x": NaN}', "bad number"),
        ("flat", b'{"trace_id": "0af7651916cd43dd8448eb211c80319"}', "id of another size"),
        ("otlp", ONE_SPAN + b' {"b": 2}', "more than one value on a line"),
        ("otlp", ONE_SPAN + b"\n\n", "blank line"),
        ("otlp", b'{"resourceSpans": []}', "a trace request without any span"),
        ("otlp", ONE_SPAN.replace(b"scopeSpans", b"scopeSpan"), "unknown member in resource"),
        ("otlp", ONE_SPAN.replace(b'"spans"', b'"span"'), "unknown member in scopeSpans"),
        ("otlp", ONE_SPAN.replace(b'"name"', b'"nam"'), "unknown member in a span"),
        ("otlp", b'{"resourceSpans": [{"scopeSpans": [], "resource": {}}]}', "resource after"),
    ],
)
def test_refusals_say_why(layout: str, line: bytes, reason: str):
    """A refused chunk comes back with the reason it was refused."""
    result = decode(line, layout)
    assert isinstance(result, str)
    assert reason in result


def test_the_columns_are_handed_over_once():
    """The decoded columns can be taken once; a second take is an error, not a double free."""
    result = decode((json.dumps(FLAT_SEED) + "\n").encode(), "flat")
    assert pl.Series(result).len() == 1
    with pytest.raises(RuntimeError, match="handed over already"):
        pl.Series(result)


def test_ingest_says_which_reader_took_each_chunk(tmp_path: Path):
    """A Collector file goes to the native decoder; a chunk it refuses (a value of an odd
    type) to a slower reader, and the summary says so."""
    from blameset.analyze.ingest import ingest

    summary = ingest([OTLP / "otel-demo-capture.jsonl"], tmp_path / "a")
    assert summary.decoders == {"native": 1}
    odd = json.loads(json.dumps(FLAT_SEED))
    odd["attributes"]["gen_ai.usage.input_tokens"] = "12"  # a string: the row reader's int()
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps(odd) + "\n")
    summary = ingest([path], tmp_path / "b")
    assert summary.spans == 1
    assert summary.decoders == {"rows": 1}


BASE = '"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"'


def _otlp_line(attributes: str) -> bytes:
    span = '{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",'
    span += f'"startTimeUnixNano":"5","attributes":[{attributes}]}}'
    return f'{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}\n'.encode()


@pytest.mark.parametrize(
    ("layout", "line"),
    [
        # Python's int() takes at most 4300 digits; float() of a huge integer overflows
        ("flat", ("{" + BASE + ',"start_time_unix_nano":5,"x":' + "1" * 4301 + "}\n").encode()),
        ("otlp", _otlp_line('{"key":"x","value":{"doubleValue":1' + "0" * 400 + "}}")),
        # a lone surrogate, escaped, in text kept as it is
        (
            "flat",
            ("{" + BASE + ',"start_time_unix_nano":5,"attributes":{"x":"\\ud800"}}\n').encode(),
        ),
        ("otlp", _otlp_line('{"key":"x","value":{"stringValue":"\\udc00"}}')),
    ],
    ids=["long-int", "huge-double", "surrogate-flat", "surrogate-otlp"],
)
def test_what_python_would_not_read_the_same_is_refused(layout: str, line: bytes):
    """Found by review: each of these was accepted, and the row reader fails on it."""
    assert isinstance(decode(line, layout), str)


@pytest.mark.parametrize(
    ("layout", "line"),
    [
        (
            "flat",
            (
                "{" + BASE + ',"start_time_unix_nano":5,"attributes":'
                '{"blameset\\u002eversion.model":"m1","blameset.boundary":"\\u0063lient"}}\n'
            ).encode(),
        ),
        (
            "otlp",
            _otlp_line(
                '{"key":"blameset\\u002eversion.model","value":{"stringValue":"m1"}},'
                '{"key":"blameset.boundary","value":{"stringValue":"\\u0063lient"}}'
            ),
        ),
    ],
    ids=["flat", "otlp"],
)
def test_escaped_text_is_written_plainly_and_read_as_the_row_reader_reads_it(
    tmp_path: Path, layout: str, line: bytes
):
    """Escapes in kept text are undone (written again as JSON needs), so what looks for text in
    the attributes (the version components check, the HTML page's boundary) finds it."""
    from blameset.analyze.ingest import ingest, load

    result = decode(line, layout)
    assert not isinstance(result, str), result
    text = pl.Series(result).struct.unnest().get_column("attributes")[0]
    assert '"blameset.version.model"' in text
    assert '"blameset.boundary":"client"' in text
    path = tmp_path / "spans.jsonl"
    path.write_bytes(line)
    ingest([path], tmp_path / "ds")
    stored = rows(load(tmp_path / "ds").drop("day").collect())
    assert stored == row_reader_rows(line, tmp_path)
    assert stored[0]["version.model"] == "m1"


def test_a_double_written_as_minus_zero_reads_as_python_reads_it():
    """A doubleValue of -0 reads as Python's float of json's 0 does: 0.0."""
    line = _otlp_line('{"key":"blameset.latency.ttft_ms","value":{"doubleValue":-0}}')
    text = pl.Series(decode(line, "otlp")).struct.unnest().get_column("attributes")[0]
    assert text == '{"blameset.latency.ttft_ms":0.0}'


def test_a_version_value_holding_a_semicolon_reads_as_the_row_reader_reads_it(tmp_path: Path):
    """Found by review (both column readers): a built version set whose value holds ';' cannot
    be split back into its components, so such a chunk goes to the row reader."""
    from blameset.analyze.ingest import ingest, load

    line = (
        "{" + BASE + ',"start_time_unix_nano":5,"attributes":'
        '{"llm.prompt_template.version":"code=1;prompt=p"}}\n'
    ).encode()
    path = tmp_path / "spans.jsonl"
    path.write_bytes(line)
    summary = ingest([path], tmp_path / "ds")
    assert summary.decoders == {"rows": 1}
    stored = rows(load(tmp_path / "ds").drop("day").collect())
    assert stored == row_reader_rows(line, tmp_path)
    assert stored[0]["version.prompt"] == "code=1;prompt=p"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["flat", "otlp"]), st.data(), st.booleans())
def test_mutated_lines_ingest_or_are_named_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, layout: str, data: st.DataObject, ascii_only: bool
):
    """Whichever reader takes a line (native, the row reader), ingest stores it or says
    FILE:LINE: problem; nothing else escapes."""
    from blameset.analyze.ingest import ingest

    seed = FLAT_SEED if layout == "flat" else OTLP_SEED
    path = data.draw(st.sampled_from(_paths(seed)))
    doc = _mutate(
        seed, path, data.draw(st.integers(0, 2)), data.draw(st.sampled_from(REPLACEMENTS))
    )
    folder = tmp_path_factory.mktemp("mutated")
    spans = folder / "spans.jsonl"
    spans.write_text(_dumps(doc, ascii_only, compact=False) + "\n")
    problem = ""
    try:
        ingest([spans], folder / "ds")
    except BadInput as exc:
        problem = str(exc)
    assert not problem or problem.startswith((f"{spans}:1: ", f"{spans}@0: "))
