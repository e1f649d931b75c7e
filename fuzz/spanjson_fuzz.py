"""Coverage-guided fuzzing of the native JSON-lines decoder (``analyze/_spanjson.c``) with atheris.

Each input is one byte choosing the layout (even: OTLP, odd: flat) and the chunk of JSON lines
the decoder gets. What must hold for every input:

- the decoder returns (columns or a refusal string) and never crashes, reads out of bounds or
  hits undefined behaviour (the ``run`` script loads a copy built with ASan + UBSan);
- what it accepts, the row reader (``analyze.readers``) reads too, to the same number of spans:
  one file cannot pass ``ingest``'s fast path and fail ``report``. A refusal is always fine (the
  row reader then reads the chunk and names any bad line).

    fuzz/run [SECONDS]      # build the sanitized decoder, fuzz from fuzz/corpus/ for SECONDS
"""

from __future__ import annotations

import importlib.util
import os
import sys

import atheris

_SANITIZED = os.environ.get("BLAMESET_FUZZ_SO")
if _SANITIZED:  # the ASan + UBSan build of the decoder, in place of the installed one
    spec = importlib.util.spec_from_file_location("blameset.analyze._spanjson", _SANITIZED)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["blameset.analyze._spanjson"] = module
    spec.loader.exec_module(module)

with atheris.instrument_imports(include=["blameset.analyze"]):
    from blameset.analyze import fast
    from blameset.analyze.readers import BadInput, ReadReport, read_json_lines_chunk

import polars as pl  # noqa: E402

assert fast.available(), "the native decoder is not built"


def one_input(data: bytes) -> None:
    if not data:
        return
    layout = "otlp" if data[0] % 2 == 0 else "flat"
    chunk = data[1:]
    columns = fast._spanjson.decode(chunk, layout, fast._ATTR_KEYS, fast._RESOURCE_KEYS)
    if isinstance(columns, str):
        return
    table = fast.table_from_raw(pl.Series(columns).struct.unnest())
    if table is None:  # refused while finishing the columns: the row reader reads the chunk
        return
    report = ReadReport()
    try:
        rows = sum(1 for _ in read_json_lines_chunk(chunk, "fuzz", report, 0))
    except (BadInput, RecursionError) as exc:
        raise AssertionError(f"native accepted {table.height} spans, row reader: {exc}") from exc
    if rows != table.height:
        raise AssertionError(f"native read {table.height} spans, the row reader {rows}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
