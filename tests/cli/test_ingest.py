"""blameset ingest: files in, a day-partitioned Parquet dataset out, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from blameset.analyze.ingest import load
from blameset.cli.app import app
from tests.analyze.bad_inputs import (
    CASES,
    good_lines,
    lines,
    otlp_span,
    request,
    truncated,
    write_case,
)

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


# --- bad input through the real command line (issue 18) -------------------------------------

CLI = [sys.executable, "-m", "blameset.cli"]
UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)
"""As root, a child without the capabilities that let root read any file (so mode 000 means
what it means for every other user)."""


def run(*args: str | Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """A blameset command in its own process; a hang fails the test instead of blocking it."""
    command = [*(prefix or []), *CLI, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_ingest_and_report_refuse_each_bad_line_alike(tmp_path: Path, case: str):
    """Every bad-line case: ingest, report and attribute exit 2 with the same FILE:LINE error."""
    path, error = write_case(tmp_path, case)
    outputs = {}
    for command in (["ingest", str(path), "--out", str(tmp_path / "ds")], ["report", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "Traceback" not in result.output
        (line,) = [x for x in result.output.splitlines() if error in x]
        outputs[command[0]] = line.split(": ", 1)[1]
    assert outputs["ingest"] == outputs["report"]


def test_a_truncated_zst_is_exit_2_at_its_byte_in_every_command(tmp_path: Path):
    """A .zst cut short: ingest and report both exit 2 naming FILE@BYTE; nothing is stored."""
    data, cut = truncated("zstd")
    path = tmp_path / "spans.jsonl.zst"
    path.write_bytes(data)
    for args in (["ingest", path, "--out", tmp_path / "ds"], ["report", path]):
        assert_refused(run(*args), f"{path}@{cut}: truncated zstd stream")
    assert not (tmp_path / "ds" / "_delta_log").exists()


def test_skip_bad_lines_counts_each_reason_in_the_summary(tmp_path: Path):
    """--skip-bad-lines: exit 0, the good spans stored, each refusal counted under its reason
    (text and --json), none silent."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        good_lines(3)
        + lines(request(otlp_span(traceId="", spanId="")))
        + lines(request(otlp_span(spanId="00000000000000aa", startTimeUnixNano="9" * 30)))
        + lines(request(otlp_span(spanId="00000000000000ab", startTimeUnixNano="9" * 25)))
        + b'{"resourceMetrics":[\n'
    )
    result = run("ingest", path, "--out", tmp_path / "ds", "--skip-bad-lines", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["spans"] == 3
    assert summary["skipped_lines"] == 4
    assert summary["skipped"] == {
        str(path): {
            "span without a traceId": 1,
            "startTimeUnixNano outside the times the table holds": 2,
            "invalid JSON": 1,
        }
    }
    text = run("ingest", path, "--out", tmp_path / "ds2", "--skip-bad-lines")
    assert f"skipped 2 line(s) of {path}: startTimeUnixNano outside" in text.stdout


def test_a_fifo_and_a_device_are_refused_without_reading(tmp_path: Path):
    """A FIFO nobody writes to and /dev/zero: exit 2 by type, no hang, nothing read."""
    fifo = tmp_path / "spans.fifo"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path):
        assert_refused(run("ingest", target, "--out", tmp_path / "ds"), f"{fifo}: not a regular")
    assert_refused(run("report", fifo), "a FIFO: refused without reading it")
    device = run("ingest", "/dev/zero", "--out", tmp_path / "ds")
    assert_refused(device, "/dev/zero: not a regular")
    assert "--skip-bad-lines" not in device.stderr  # it would not skip an input named so


@pytest.mark.skipif(
    os.geteuid() == 0 and not UNPRIVILEGED, reason="root without setpriv reads mode-000 files"
)
def test_unreadable_files_and_folders_are_exit_2_permission_denied(tmp_path: Path):
    """A mode-000 file, folder or subfolder: exit 2 naming the path and "permission denied"
    (not "not a readable compressed stream"), never skipped with exit 0."""
    good = tmp_path / "good.jsonl"
    good.write_bytes(good_lines(2))
    locked = tmp_path / "locked.jsonl"
    locked.write_bytes(good_lines(1))
    folder = tmp_path / "spill"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(good_lines(1))
    (folder / "sub" / "b.jsonl").write_bytes(good_lines(1))
    out = tmp_path / "ds"
    out.mkdir()
    out.chmod(0o777)
    try:
        locked.chmod(0)
        (folder / "sub").chmod(0)
        cases = [
            (locked, f"{locked}: cannot read (permission denied)"),
            (folder, f"{folder / 'sub'}: cannot read the folder (permission denied)"),
        ]
        for target, message in cases:
            result = run("ingest", good, target, "--out", out, prefix=UNPRIVILEGED)
            assert_refused(result, message)
            assert_refused(run("report", target, prefix=UNPRIVILEGED), message)
        assert not (out / "_delta_log").exists()
    finally:
        locked.chmod(0o644)
        (folder / "sub").chmod(0o755)


RSS_CHILD = """
import json, resource, sys
from blameset.analyze.ingest import ingest
from blameset.analyze.readers import BadInput, MAX_LINE_BYTES

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

result = {"limit": MAX_LINE_BYTES, "before": peak()}
for i, path in enumerate(sys.argv[1:]):
    try:
        ingest([path], f"{path}.ds")
    except BadInput as exc:
        result[f"error{i}"] = str(exc)
    result[f"skip{i}"] = ingest([path], f"{path}.skip.ds", skip_bad=True).spans
result["after"] = peak()
print(json.dumps(result))
"""


def test_a_200_mb_line_is_refused_within_the_memory_bound(tmp_path: Path):
    """A 200 MB line (first, or between good lines): refused by number as longer than
    MAX_LINE_BYTES, the good lines stored with --skip-bad-lines, and the process's peak RSS
    grows by under 2.5x MAX_LINE_BYTES (less than the line itself: it is never held whole)."""
    piece = b"a" * (1 << 20)
    paths = []
    for name, before in (("first.jsonl", b""), ("middle.jsonl", good_lines(2))):
        path = tmp_path / name
        with path.open("wb") as f:
            f.write(before + b'{"resourceSpans":[{"resource":{"attributes":[{"key":"x","value":')
            f.write(b'{"stringValue":"')
            for _ in range(200):
                f.write(piece)
            f.write(b'"}}]},"scopeSpans":[]}]}\n')
            f.write(lines(request(otlp_span(spanId="00000000000000cc"))))
        paths.append(path)
    child = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(child.stdout)
    assert result["error0"].startswith(f"{paths[0]}:1: line longer than the maximum line size")
    assert result["error1"].startswith(f"{paths[1]}:3: line longer than the maximum line size")
    assert (result["skip0"], result["skip1"]) == (1, 3)
    assert result["after"] - result["before"] < 2.5 * result["limit"] < 200 * len(piece)


def test_report_reads_attributes_nested_to_the_limit_ingest_accepts(tmp_path: Path):
    """Values nested exactly MAX_VALUE_DEPTH deep (OTLP and flat) ingest, and report and
    attribute read the dataset without a traceback."""
    from blameset.analyze.readers import MAX_VALUE_DEPTH
    from tests.analyze.bad_inputs import flat_nested, flat_span, nested

    path = tmp_path / "deep.jsonl"
    path.write_bytes(
        lines(request(otlp_span(attributes=[{"key": "d", "value": nested(MAX_VALUE_DEPTH)}])))
        + lines(flat_span(span_id="ab" * 8, attributes={"d": flat_nested(MAX_VALUE_DEPTH)}))
    )
    out = tmp_path / "ds"
    assert ingest(str(path), "--out", str(out)).exit_code == 0
    for command in ("report", "attribute"):
        result = runner.invoke(app, [command, str(out)])
        assert result.exit_code == 0, result.output
