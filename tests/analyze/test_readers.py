"""Readers and the span table, against real third-party files (tests/fixtures, sources in its
README) and against each other."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from blameset.analyze.fast import _ATTR_KEYS, _RESOURCE_KEYS
from blameset.analyze.readers import BadInput, ReadReport, expand_inputs, read_file
from blameset.analyze.table import requests, spans_frame

FIXTURES = Path(__file__).parents[1] / "fixtures"
OTLP = FIXTURES / "otlp"


def read(path: Path, **kw) -> tuple[list, ReadReport]:
    report = ReadReport()
    return list(read_file(path, report, **kw)), report


@pytest.mark.parametrize(
    ("name", "spans"),
    [
        ("otel-demo-capture.jsonl", 547),
        ("otel-demo-capture.jsonl.gz", 547),
        ("otel-demo-capture.jsonl.zst", 547),
        ("proto-example-trace.json", 1),
        ("python-style-base64-ids.json", 2),
        ("python-style-base64-ids.jsonl", 19),
        ("trace.pb", 2),
        ("jaeger-multi-service.json", 5),
        ("jaeger-all-value-types.json", 1),
    ],
)
def test_every_fixture_reads_with_the_right_span_count(name: str, spans: int):
    """Each real file ingests, compressed or not, JSON or protobuf, whatever its id encoding."""
    records, _ = read(OTLP / name)
    assert len(records) == spans
    for r in records:
        assert len(r["trace_id"]) == 32 and r["trace_id"] == r["trace_id"].lower()
        assert len(r["span_id"]) == 16


def test_other_signals_are_counted_not_dropped():
    """The demo capture's 40 metric and 16 log requests are counted."""
    _, report = read(OTLP / "otel-demo-capture.jsonl")
    assert report.other_signals == {"metrics": 40, "logs": 16}


def test_uppercase_hex_and_base64_ids_agree():
    """The spec example's UPPERCASE hex ids and protobuf-JSON's base64 ids come out lower hex."""
    (span,) = read(OTLP / "proto-example-trace.json")[0]
    assert span["trace_id"] == "5b8efff798038103d269b633813fc60c"
    b64, _ = read(OTLP / "python-style-base64-ids.json")
    assert all(len(s["trace_id"]) == 32 for s in b64)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("malformed.json", "malformed.json:21: invalid JSON"),
        ("trace_invalid_base64.json", "neither 32 hex digits nor base64"),
        ("trace_invalid_kind.json", "SPAN_KIND_INVALID_TYPE"),
        ("trace_mixed_encoding.json", "traceId 'zzz'"),
    ],
)
def test_invalid_files_fail_with_file_line_and_problem(name: str, problem: str):
    """Each broken file gives one clear error naming the file, where, and what."""
    with pytest.raises(BadInput) as info:
        read(OTLP / "invalid" / name)
    assert problem in str(info.value)
    assert name in str(info.value)


def test_skip_bad_lines_goes_on_and_counts(tmp_path: Path):
    """With skip_bad, a broken line is counted per file and reason; the rest is read."""
    good = (OTLP / "python-style-base64-ids.jsonl").read_text().splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good[0], "{not json", good[1], '{"traceId": 1}']) + "\n")
    with pytest.raises(BadInput, match=r"mixed\.jsonl:2: invalid JSON"):
        read(path)
    records, report = read(path, skip_bad=True)
    assert len(records) == sum(len(_spans_of(line)) for line in good[:2])
    assert report.skipped_lines == 2


def _spans_of(line: str) -> list:
    doc = json.loads(line)
    return [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def test_folders_and_globs_expand(tmp_path: Path):
    """A folder is read recursively; a glob matches files; a missing path is an error."""
    assert len(expand_inputs([OTLP / "invalid"])) == 4
    assert [p.name for p in expand_inputs([str(OTLP / "*.pb")])] == ["trace.pb"]
    with pytest.raises(BadInput, match="no such file"):
        expand_inputs([tmp_path / "nope.jsonl"])


@pytest.mark.parametrize(
    "name", ["otel-genai-chat.json", "otel-genai-deprecated-names.json", "openinference-chat.json"]
)
def test_other_instrumentations_map_through_the_alias_table(name: str):
    """Current and deprecated GenAI names and OpenInference's give model, tokens and a cost
    computed by genai-prices at the span's time."""
    attrs = json.loads((FIXTURES / "genai-attributes" / name).read_text())
    record = _record(attrs)
    row = spans_frame([record]).row(0, named=True)
    assert row["model"] == "gpt-4-0613"
    assert row["provider"] == "openai"
    assert (row["input_tokens"], row["output_tokens"]) == (97, 52)
    assert row["cost_usd"] == pytest.approx(97 * 30e-6 + 52 * 60e-6)
    assert row["cost_source"] == "computed"


def _record(attrs: dict, resource: dict | None = None, **over) -> dict:
    base = {
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "parent_span_id": None,
        "name": "chat",
        "kind": "client",
        "start_ns": 1_767_225_600_000_000_000,
        "end_ns": 1_767_225_601_000_000_000,
        "status": "unset",
        "status_message": None,
        "resource": resource or {},
        "scope": None,
        "attributes": attrs,
        "events": [],
    }
    return {**base, **over}


def test_reported_costs_and_version_aliases():
    """Costs other tools report are kept ('reported'); their prompt versions become ours."""
    row = spans_frame(
        [
            _record(
                {"llm.cost.total": 0.5, "llm.prompt_template.version": "v7", "llm.model_name": "m"},
                {"service.version": "1.2.3"},
            )
        ]
    ).row(0, named=True)
    assert (row["cost_usd"], row["cost_source"]) == (0.5, "reported")
    assert row["version_set"] == "code=1.2.3;prompt=v7"
    assert row["version.prompt"] == "v7"
    assert len(row["version_set_id"]) == 12


def test_our_own_jsonl_round_trips_to_the_contract_columns(tmp_path: Path):
    """Spans blameset writes come back with version set, route, status and roll-ups."""
    from blameset import instrument
    from blameset.instrument import VersionSet, _runtime, record_usage, traced

    out = tmp_path / "spans.jsonl"
    previous = _runtime.current_state()
    vs = VersionSet(code="abc1234", prompt="outline@v4")
    instrument.configure(service="svc", version_set=vs, exporter=f"jsonl:{out}")
    try:

        @traced.llm(model="gpt-4o-2024-08-06", provider="openai")
        def llm() -> None:
            record_usage(input_tokens=1000, output_tokens=500)

        @traced("outline", route="/v1/outline")
        def handler() -> None:
            llm()

        handler()
        instrument.shutdown()
    finally:
        _runtime.install(previous)
    records, _ = read(out)
    frame = spans_frame(records)
    req = requests(frame.lazy()).collect().row(0, named=True)
    assert req["route"] == "/v1/outline"
    assert req["version_set_id"] == vs.id
    assert req["version.prompt"] == "outline@v4"
    assert req["cost_usd"] == pytest.approx(0.0075)
    assert req["input_tokens"] == 1000
    assert req["final_status"] == "success"
    assert req["service"] == "svc"


# --- properties ------------------------------------------------------------------------------

hexes = st.text("0123456789abcdef", min_size=1, max_size=1)
trace_ids = st.binary(min_size=16, max_size=16).filter(any)
span_ids = st.binary(min_size=8, max_size=8).filter(any)
values = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**62), 2**62),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
TABLE_KEYS = frozenset(_ATTR_KEYS) | frozenset(_RESOURCE_KEYS)

span_strategy = st.fixed_dictionaries(
    {
        "trace_id": trace_ids,
        "span_id": span_ids,
        "parent": st.one_of(st.none(), span_ids),
        "name": st.text(max_size=30),
        "kind": st.integers(1, 5),
        "start": st.integers(0, 2**62),
        "length": st.integers(0, 10**12),
        "status": st.integers(0, 2),
        # other tools' keys, never one the table reads (hypothesis finds those names in the
        # code): a table key with a value of another type is the fast path's to refuse
        "attrs": st.dictionaries(
            st.text(min_size=1, max_size=15).filter(lambda k: k not in TABLE_KEYS),
            values,
            max_size=5,
        ),
    }
)


def _otlp_json(span: dict) -> dict:
    def any_value(v):
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}

    body = {
        "traceId": base64.b64encode(span["trace_id"]).decode(),
        "spanId": span["span_id"].hex().upper(),
        "name": span["name"],
        "kind": [
            "",
            "SPAN_KIND_INTERNAL",
            "SPAN_KIND_SERVER",
            "SPAN_KIND_CLIENT",
            "SPAN_KIND_PRODUCER",
            "SPAN_KIND_CONSUMER",
        ][span["kind"]],
        "startTimeUnixNano": str(span["start"]),
        "endTimeUnixNano": span["start"] + span["length"],
        "status": {"code": span["status"]},
        "attributes": [{"key": k, "value": any_value(v)} for k, v in span["attrs"].items()],
    }
    if span["parent"]:
        body["parentSpanId"] = span["parent"].hex()
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": [body]}]}]}


def _flat(span: dict) -> dict:
    return {
        "trace_id": span["trace_id"].hex(),
        "span_id": span["span_id"].hex(),
        "parent_span_id": span["parent"].hex() if span["parent"] else None,
        "name": span["name"],
        "kind": ["", "internal", "server", "client", "producer", "consumer"][span["kind"]],
        "start_time_unix_nano": span["start"],
        "end_time_unix_nano": span["start"] + span["length"],
        "status": ["unset", "ok", "error"][span["status"]],
        "status_message": None,
        "resource": {},
        "attributes": span["attrs"],
        "events": [],
    }


def _proto(span: dict) -> bytes:
    def any_value(v):
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        return AnyValue(string_value=v)

    message = Span(
        trace_id=span["trace_id"],
        span_id=span["span_id"],
        parent_span_id=span["parent"] or b"",
        name=span["name"],
        kind=span["kind"],
        start_time_unix_nano=span["start"],
        end_time_unix_nano=span["start"] + span["length"],
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in span["attrs"].items()],
    )
    message.status.code = span["status"]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[message])])]
    )
    return request.SerializeToString()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(span_strategy, min_size=1, max_size=5))
def test_flat_otlp_json_and_protobuf_give_the_same_rows(tmp_path_factory, spans):
    """Any valid spans read to the same table rows from flat JSONL, OTLP JSON and protobuf."""
    folder = tmp_path_factory.mktemp("rt")
    flat = folder / "flat.jsonl"
    flat.write_text("".join(json.dumps(_flat(s)) + "\n" for s in spans))
    otlp = folder / "otlp.jsonl.gz"
    otlp.write_bytes(
        gzip.compress("".join(json.dumps(_otlp_json(s)) + "\n" for s in spans).encode())
    )
    proto = folder / "spans.pb"
    proto.write_bytes(b"".join(struct.pack(">I", len(p)) + p for p in map(_proto, spans)))
    frames = [spans_frame(read(p)[0]) for p in (flat, otlp, proto)]
    assert frames[0].to_dicts() == frames[1].to_dicts() == frames[2].to_dicts()


@pytest.mark.parametrize("framed", [False, True])
def test_a_protobuf_request_whose_length_byte_is_a_brace_reads_as_protobuf(tmp_path, framed):
    """A request of 123 bytes of resource spans (length byte "{" after field 1's newline tag)
    is protobuf, not a JSON frame."""
    base = {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "parent": None, "kind": 1}
    base |= {"start": 1_700_000_000_000_000_000, "length": 1_000, "attrs": {}, "status": 0}
    name = next(
        f"s{'x' * n}" for n in range(200) if _proto({**base, "name": f"s{'x' * n}"})[1] == 0x7B
    )
    payload = _proto({**base, "name": name})
    path = tmp_path / "spans.pb"
    path.write_bytes(struct.pack(">I", len(payload)) + payload if framed else payload)
    spans, _ = read(path)
    assert [s["name"] for s in spans] == [name]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_bad_input(tmp_path_factory, data: bytes):
    """Whatever the bytes, reading ends in spans or a BadInput, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "input.bin"
    path.write_bytes(data)
    with contextlib.suppress(BadInput):
        read(path)


# --- the fast path for flat JSONL ----------------------------------------------------------

attr_values = st.fixed_dictionaries(
    {},
    optional={
        "blameset.span.kind": st.sampled_from(["request", "llm", "tool"]),
        "blameset.version_set": st.sampled_from(["code=a;prompt=v1", "code=b;model=m;prompt=v2"]),
        "gen_ai.request.model": st.sampled_from(["gpt-4o-2024-08-06", "no-such-model-q"]),
        "gen_ai.provider.name": st.sampled_from(["openai"]),
        "gen_ai.usage.input_tokens": st.integers(0, 10_000),
        "gen_ai.usage.output_tokens": st.integers(0, 5_000),
        "blameset.cost.usd": st.floats(0, 1),
        "blameset.cost.source": st.sampled_from(["override", "reported"]),
        "llm.cost.total": st.floats(0, 1),
        "http.route": st.sampled_from(["/a", "", "/b"]),
        "blameset.tenant.id": st.sampled_from(["t1", "t2"]),
        "error.type": st.sampled_from(["INTERNAL", "KeyError"]),
        "blameset.latency.ttft_ms": st.floats(0, 1e4),
        "custom.thing": st.text(max_size=10),
        "llm.prompt_template.version": st.sampled_from(["v1", "v2"]),
        "langfuse.release": st.sampled_from(["r1"]),
    },
)
resources = st.sampled_from(
    [
        {"service.name": "svc", "blameset.version_set": "code=r"},
        {"service.name": "svc", "service.version": "1.2"},
        {"service.name": "svc"},
        {},
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(span_strategy, attr_values, resources), min_size=1, max_size=8))
def test_the_fast_path_and_the_row_reader_agree(tmp_path_factory, spans):
    """On any clean flat JSONL, the column-wise fast path gives the row reader's table."""
    from blameset.analyze.fast import flat_frame

    path = tmp_path_factory.mktemp("fast") / "spans.jsonl"
    lines = []
    for span, attrs, resource in spans:
        doc = _flat(span)
        doc["attributes"] = attrs
        doc["resource"] = resource
        lines.append(json.dumps(doc))
    path.write_text("\n".join(lines) + "\n")
    fast = flat_frame(path)
    assert fast is not None  # clean input, escapes included, is the fast path's
    slow = spans_frame(read(path)[0])

    def rows(frame):
        out = frame.to_dicts()
        for row in out:
            row["attributes"] = json.loads(row["attributes"])
            row["resource"] = json.loads(row["resource"])
        return sorted(out, key=lambda r: (r["trace_id"], r["span_id"], r["start"]))

    assert fast.columns == slow.columns
    assert rows(fast) == rows(slow)


def test_the_fast_path_steps_aside_for_the_row_reader_on_bad_lines(tmp_path: Path):
    """A file with a broken line: no fast table, so the row reader names the line."""
    from blameset.analyze.fast import flat_frame

    path = tmp_path / "spans.jsonl"
    good = json.dumps(
        _flat(
            {
                "trace_id": b"\x01" * 16,
                "span_id": b"\x02" * 8,
                "parent": None,
                "name": "x",
                "kind": 1,
                "start": 1,
                "length": 1,
                "status": 0,
                "attrs": {"blameset.version_set": "code=a"},
            }
        )
    )
    path.write_text(good + "\n{broken\n")
    assert flat_frame(path) is None
    with pytest.raises(BadInput, match=r"spans\.jsonl:2"):
        read(path)


def test_analyze_exports_its_names():
    """The package re-exports its public names (ruff keeps __all__ sorted), each name real."""
    from blameset import analyze

    assert len(set(analyze.__all__)) == len(analyze.__all__)
    for name in analyze.__all__:
        assert hasattr(analyze, name), name


NUMBER_BASE = '"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"'


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ('{"gen_ai.usage.input_tokens": "abc"}', "gen_ai.usage.input_tokens = 'abc' is not a"),
        ('{"gen_ai.usage.output_tokens": [1]}', "gen_ai.usage.output_tokens = '[1]' is not a"),
        ('{"blameset.latency.ttft_ms": "fast"}', "blameset.latency.ttft_ms = 'fast' is not a"),
        ('{"blameset.latency.ttft_ms": 1' + "0" * 400 + "}", "is too large for a number"),
        ('{"x": ' + "1" * 4301 + "}", "invalid JSON"),
    ],
    ids=["tokens-text", "tokens-list", "ttft-text", "ttft-huge", "4301-digits"],
)
def test_a_number_the_table_cannot_read_is_bad_input_not_a_traceback(
    tmp_path: Path, attributes: str, problem: str
):
    """These reached the table and failed there with a traceback; now FILE:LINE: problem, exit
    2 from the CLI, or one skipped line with --skip-bad-lines."""
    from blameset.analyze.ingest import ingest

    path = tmp_path / "spans.jsonl"
    good = "{" + NUMBER_BASE + ',"start_time_unix_nano":5}'
    bad = "{" + NUMBER_BASE.replace("b7ad", "c7ad") + ',"start_time_unix_nano":5,"attributes":'
    path.write_text(good + "\n" + bad + attributes + "}\n")
    with pytest.raises(BadInput, match=r"spans\.jsonl:2: .*" + re.escape(problem)):
        ingest([path], tmp_path / "a")
    summary = ingest([path], tmp_path / "b", skip_bad=True)
    assert (summary.spans, summary.skipped_lines) == (1, 1)


@pytest.mark.parametrize("content", [b"null\n", b"hello world\n", b"42\n"])
def test_text_that_is_no_trace_format_is_named_as_such(tmp_path: Path, content: bytes):
    """Detected by content: text that is neither JSON lines of spans nor protobuf is not called
    a corrupt protobuf message."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=r"x\.jsonl@0: neither JSON lines of spans nor OTLP"):
        read(path)


def test_computed_costs_price_cache_reads_as_the_decorators_do(tmp_path: Path):
    """A span with tokens but no cost is priced by instrument's pricer at its own start time,
    cache reads at the cache rate, the same by the row reader and the fast path."""
    from datetime import UTC, datetime

    from blameset.analyze.fast import flat_frame
    from blameset.instrument.cost import Pricer, Usage

    start = 1_767_225_600_000_000_000
    attrs = {
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 1_000_000,
        "gen_ai.usage.output_tokens": 0,
        "gen_ai.usage.cache_read.input_tokens": 1_000_000,
    }
    span = {
        "trace_id": "01" * 16,
        "span_id": "02" * 8,
        "name": "chat",
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + 5,
        "attributes": attrs,
    }
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(span) + "\n")
    want, _ = Pricer().price(
        "gpt-4o-2024-08-06",
        "openai",
        Usage(1_000_000, 0, cache_read_tokens=1_000_000),
        datetime.fromtimestamp(start / 1e9, UTC),
    )
    assert want == pytest.approx(1.25)  # the cache rate, not the $2.50 input rate
    slow = spans_frame(read(path)[0]).row(0, named=True)
    assert (slow["cost_usd"], slow["cost_source"]) == (want, "computed")
    assert slow["cache_read_tokens"] == 1_000_000
    fast = flat_frame(path)
    if fast is not None:
        assert fast.row(0, named=True)["cost_usd"] == want
