"""The one declaration of the span columns: what derives from it, and the native decoder's reading
of the kind, status and id rules held to it (and to the row reader)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from blameset.analyze import columns, fast, readers
from blameset.analyze.columns import COLUMNS, SPAN_SCHEMA, Column, Value
from blameset.analyze.readers import BadInput

native = pytest.importorskip("blameset.analyze._spanjson")


def test_the_schema_is_the_declaration_in_order():
    """SPAN_SCHEMA lists every declared column, in order, with the dtype of its kind of value."""
    assert list(SPAN_SCHEMA) == [c.name for c in COLUMNS]
    assert SPAN_SCHEMA["input_tokens"] == pl.Int64()
    assert SPAN_SCHEMA["start"] == pl.Datetime("ns", "UTC")
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)


def test_every_attribute_feeds_one_column():
    """An attribute name fills at most one column (a key read as two types could not be)."""
    names = [n for c in columns.ATTRIBUTE_COLUMNS for n in c.attributes]
    assert len(names) == len(set(names))
    assert not set(names) & set(columns.COST_ALIASES)


def test_a_number_cannot_come_from_the_resource():
    """The fast path reads resource keys as text: a numeric column from the resource is refused."""
    with pytest.raises(ValueError, match="only text"):
        Column("x", Value.COUNT, resource=("x",))


ADD_A_COLUMN = r"""
import importlib.util, json, sys
from pathlib import Path
import blameset.instrument  # the contract; then analyze with one more column in its declaration
spec = importlib.util.find_spec("blameset.analyze")
source = Path(spec.submodule_search_locations[0], "columns.py").read_text()
entry = 'Column("reasoning_tokens", _COUNT, ("gen_ai.usage.reasoning.output_tokens",)),\n    '
last = 'Column("attributes", Value.JSON)'
source = source.replace(last, entry + last)
module = type(sys)("blameset.analyze.columns")
module.__file__ = "columns.py"
sys.modules[module.__name__] = module
exec(compile(source, "columns.py", "exec"), module.__dict__)
from blameset.analyze import fast, readers
from blameset.analyze.table import spans_frame
line = json.dumps({"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
    "name": "x", "start_time_unix_nano": 1, "end_time_unix_nano": 2,
    "attributes": {"gen_ai.usage.reasoning.output_tokens": 42}}).encode() + b"\n"
native = fast.native_table(line, "flat")
rows = spans_frame([readers._flat_span(json.loads(line), "x", ":1")])
bad = readers._number_problem({"gen_ai.usage.reasoning.output_tokens": "many"})
print(json.dumps({
    "native": None if native is None else native.get_column("reasoning_tokens").to_list(),
    "native_type": None if native is None else str(native.schema["reasoning_tokens"]),
    "rows": rows.get_column("reasoning_tokens").to_list(),
    "rows_type": str(rows.schema["reasoning_tokens"]),
    "check": bad,
}))
"""


def test_a_column_declared_once_reaches_every_reader():
    """One more entry in COLUMNS, and nothing else: both readers fill it, typed, and a value
    that is not a number is bad input."""
    out = subprocess.run(
        [sys.executable, "-c", ADD_A_COLUMN], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout)
    assert got["rows"] == [42] and got["rows_type"] == "Int64"
    if fast.NATIVE:
        assert got["native"] == [42] and got["native_type"] == "Int64"
    assert "is not a number" in got["check"]


def _flat_line(attributes: dict[str, Any], **members: Any) -> bytes:
    span = {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "name": "x",
        "start_time_unix_nano": 1_767_225_600_000_000_000,
        "end_time_unix_nano": 1_767_225_600_000_000_005,
        "attributes": attributes,
        **members,
    }
    return (json.dumps(span) + "\n").encode()


def _otlp_line(**members: Any) -> bytes:
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "x",
        "startTimeUnixNano": "1767225600000000000",
        **members,
    }
    doc = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}
    return (json.dumps(doc) + "\n").encode()


def _native_row(line: bytes, layout: str) -> dict[str, Any] | str:
    result = native.decode(line, layout, fast._ATTR_KEYS, fast._RESOURCE_KEYS)
    if isinstance(result, str):
        return result
    return pl.Series(result).struct.unnest().row(0, named=True)


def _row_reader(line: bytes) -> dict[str, Any] | None:
    try:
        return next(iter(readers.read_json_lines_chunk(line, "x", readers.ReadReport(), 0)))
    except BadInput:
        return None


KINDS = [
    *range(-1, len(columns.KIND_BY_NUMBER) + 2),
    *columns.KIND_BY_NAME,
    *columns.FLAT_KINDS,
    *(k.upper() for k in columns.FLAT_KINDS),
    "SPAN_KIND_OTHER",
    None,
    "",
    1.0,
]


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_the_native_decoder_reads_every_otlp_kind_as_the_declaration(kind: Any):
    """An OTLP kind (number, enum name, table kind in any case, odd value): the native decoder
    gives the declared kind, or refuses where the row reader reports bad input."""
    line = _otlp_line(kind=kind)
    got, want = _native_row(line, "otlp"), _row_reader(line)
    if isinstance(got, str):
        assert want is None or kind == "" or isinstance(kind, float), (kind, got)
    else:
        assert want is not None and got["kind"] == want["kind"]


@pytest.mark.parametrize("kind", [*columns.FLAT_KINDS, "Server", "bogus", None, ""], ids=repr)
def test_the_native_decoder_reads_every_flat_kind_as_the_declaration(kind: Any):
    """A flat kind: the declared table kinds exactly, null and "" as the default kind."""
    line = _flat_line({}, kind=kind)
    got, want = _native_row(line, "flat"), _row_reader(line)
    if isinstance(got, str):
        assert want is None, (kind, got)
    else:
        assert want is not None and got["kind"] == want["kind"]


CODES = [
    *range(-1, len(columns.STATUS_BY_NUMBER) + 2),
    *columns.STATUS_BY_NAME,
    "STATUS_CODE_OTHER",
    None,
    1.0,
    2**70,
]


@pytest.mark.parametrize("code", CODES, ids=repr)
def test_the_native_decoder_reads_every_status_as_the_declaration(code: Any):
    """An OTLP status code (number, enum name, odd value): the declared status, as the row
    reader reads it."""
    line = _otlp_line(status={"code": code})
    got, want = _native_row(line, "otlp"), _row_reader(line)
    assert not isinstance(got, str), got
    assert want is not None and got["status"] == want["status"]


@given(
    st.sampled_from(["trace_id", "span_id", "parent_span_id"]),
    st.integers(1, 40).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.sampled_from(["hex", "HEX", "base64"]),
)
@example("trace_id", bytes(16), "hex")  # all zeros: refused after the decoder, not by it
@example("span_id", bytes(8), "base64")
@example("parent_span_id", bytes(8), "hex")
def test_the_native_decoder_takes_ids_of_the_declared_sizes_only(
    column: str, raw: bytes, spelling: str
):
    """An id of any size and spelling: read where its size is the declared one, as the row reader
    reads it, refused otherwise."""
    text = {
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "base64": base64.b64encode(raw).decode(),
    }[spelling]
    line = _flat_line({}, **{column: text})
    got, want = _native_row(line, "flat"), _row_reader(line)
    if len(raw) == columns.ID_BYTES[column]:
        assert not isinstance(got, str), got
        assert got[column] == raw.hex()
        if column != "parent_span_id" and not any(raw):
            # an all-zero trace or span id (invalid in OTLP) is read by the decoder and
            # refused by the span rules after it (fast.table_from_raw), as by the row reader
            assert want is None
            decoded = native.decode(line, "flat", fast._ATTR_KEYS, fast._RESOURCE_KEYS)
            assert fast.table_from_raw(pl.Series(decoded).struct.unnest()) is None
        else:
            assert want is not None and want[column] == raw.hex()
    else:
        assert isinstance(got, str)


def test_bad_rules_are_refused_and_the_rules_in_force_stay():
    """An id size the decoder cannot hold is refused; the rules set before still apply."""
    with pytest.raises(ValueError, match="1 to 32"):
        native.set_rules(**{**columns.native_rules(), "span_id_bytes": 0})
    native.set_rules(**columns.native_rules())  # the failed call left them as they were
    assert not isinstance(_native_row(_flat_line({}), "flat"), str)
