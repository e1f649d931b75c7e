"""blameset ingest: files in, a day-partitioned Parquet dataset out, nothing lost or doubled."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from blameset.analyze.ingest import load
from blameset.cli.app import app

OTLP = Path(__file__).parents[1] / "fixtures" / "otlp"
runner = CliRunner()


def ingest(*args: str):
    return runner.invoke(app, ["ingest", *args])


def test_ingest_writes_a_hive_partitioned_dataset(tmp_path: Path):
    """The demo capture lands as a Delta table of day=YYYY-MM-DD/*.parquet files; polars reads it
    back with the day and the nanosecond times."""
    out = tmp_path / "ds"
    result = ingest(str(OTLP / "otel-demo-capture.jsonl"), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["spans"] == 547
    assert summary["files"] == 1
    assert summary["other_signal_lines"] == {"metrics": 40, "logs": 16}
    for key in ("requests", "skipped_lines", "input_tokens", "output_tokens", "cost_usd"):
        assert key in summary
    assert all(
        p.name.startswith("day=") or p.name in ("_delta_log", "_blameset") for p in out.iterdir()
    )
    frame = load(out).collect()
    assert frame.height == 547
    assert "day" in frame.columns
    assert frame.get_column("start").dtype == pl.Datetime("ns", "UTC")


def test_appending_stores_each_span_once(tmp_path: Path):
    """A second batch appends; the same spans again (here gzip and zstd copies) are not doubled."""
    out = tmp_path / "ds"
    assert ingest(str(OTLP / "trace.pb"), "--out", str(out)).exit_code == 0
    again = ingest(
        str(OTLP / "otel-demo-capture.jsonl.gz"),
        str(OTLP / "otel-demo-capture.jsonl.zst"),
        str(OTLP / "trace.pb"),
        "--out",
        str(out),
        "--json",
    )
    summary = json.loads(again.output)
    assert summary["spans"] == 547
    assert summary["duplicates"] == 547 + 2
    frame = load(out).collect()
    assert frame.height == 549
    assert frame.select(pl.struct("trace_id", "span_id").n_unique()).item() == 549


def test_bad_input_exits_2_naming_file_and_line(tmp_path: Path):
    """An unreadable line stops the ingest: exit 2, file and line, no traceback."""
    result = ingest(str(OTLP / "invalid" / "malformed.json"), "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2
    assert "malformed.json:21: invalid JSON" in result.output
    assert "Traceback" not in result.output


def test_skip_bad_lines_reports_per_file_and_reason(tmp_path: Path):
    """--skip-bad-lines goes on and says, per file, how many lines were skipped and why."""
    bad = tmp_path / "mixed.jsonl"
    good = (OTLP / "python-style-base64-ids.jsonl").read_text().splitlines()[0]
    bad.write_text(f"{good}\n{{broken\n")
    result = ingest(str(bad), "--out", str(tmp_path / "ds"), "--skip-bad-lines")
    assert result.exit_code == 0, result.output
    assert f"skipped 1 line(s) of {bad}: invalid JSON" in result.output
    as_json = ingest(str(bad), "--out", str(tmp_path / "ds2"), "--skip-bad-lines", "--json")
    assert json.loads(as_json.output)["skipped_lines"] == 1


def test_a_spill_folder_ingests_with_its_spans(tmp_path: Path):
    """The export pipeline's spill folder (flat JSONL) ingests like any input."""
    from blameset import instrument
    from blameset.instrument import VersionSet, _runtime, traced

    spill = tmp_path / "spill"
    previous = _runtime.current_state()
    instrument.configure(
        version_set=VersionSet(code="x"),
        exporter="otlp",
        endpoint="http://127.0.0.1:9",
        timeout=0.2,
        spill_dir=spill,
    )
    try:
        for _ in range(5):
            traced("op")(lambda: None)()
        instrument.shutdown()
    finally:
        _runtime.install(previous)
    summary = json.loads(ingest(str(spill), "--out", str(tmp_path / "ds"), "--json").output)
    assert summary["spans"] == 5
    assert summary["requests"] == 5


def test_a_dataset_mixing_our_spans_and_other_tools_loads(tmp_path: Path):
    """Our spans (with version.<component> columns) and another tool's (without) read together."""
    from blameset import instrument
    from blameset.instrument import VersionSet, _runtime, traced

    ours = tmp_path / "spans.jsonl"
    previous = _runtime.current_state()
    instrument.configure(version_set=VersionSet(code="c1"), exporter=f"jsonl:{ours}")
    try:
        traced("op")(lambda: None)()
        instrument.shutdown()
    finally:
        _runtime.install(previous)
    out = tmp_path / "ds"
    assert ingest(str(ours), "--out", str(out)).exit_code == 0
    assert ingest(str(OTLP / "proto-example-trace.json"), "--out", str(out)).exit_code == 0
    frame = load(out).collect()
    assert frame.height == 2
    assert set(frame.get_column("version.code").to_list()) == {"c1", None}


def test_chunks_and_files_do_not_change_what_a_root_is(tmp_path: Path, monkeypatch):
    """A child read in one chunk (or file) and its parent in another: one request, not two."""
    from blameset.analyze import fast as _fast
    from blameset.analyze.table import requests

    monkeypatch.setattr(_fast, "CHUNK_BYTES", 300)  # a chunk or two per span
    parent = {
        "trace_id": "a" * 32,
        "span_id": "1" * 16,
        "parent_span_id": None,
        "name": "req",
        "kind": "server",
        "start_time_unix_nano": 1_767_225_600_000_000_000,
        "end_time_unix_nano": 1_767_225_601_000_000_000,
        "status": "unset",
        "status_message": None,
        "resource": {"blameset.version_set": "code=a"},
        "attributes": {"blameset.span.kind": "request"},
        "events": [],
    }
    child = {
        **parent,
        "span_id": "2" * 16,
        "parent_span_id": "1" * 16,
        "name": "llm",
        "attributes": {"blameset.span.kind": "llm", "gen_ai.usage.input_tokens": 5},
    }
    (tmp_path / "a.jsonl").write_text(json.dumps(child) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(parent) + "\n")
    out = tmp_path / "ds"
    summary = json.loads(
        ingest(
            str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(out), "--json"
        ).output
    )
    assert summary["spans"] == 2
    assert summary["requests"] == 1
    rolled = requests(load(out)).collect()
    assert rolled.get_column("name").to_list() == ["req"]
    assert rolled.get_column("input_tokens").to_list() == [5]
