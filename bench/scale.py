"""The scale curve in one run: attribute (and report + attribute + the HTML page from one roll-up)
over 10M, 30M and 100M spans, each in a fresh process, with wall time, CPU seconds (the process's
own, every thread; Spark's JVM is not in it) and peak RSS (VmHWM), beside DuckDB's bare roll-up
(the floor) and, where it fits in memory, the in-memory polars path. Ratios against the polars
path are printed for the sizes where it ran.

Datasets are generated once, in chunks of the ``overlapping`` scenario (each chunk its own seed
and trace ids), written by ingest's own writer (a Delta table), and kept in ``--dir`` for the next
run; the generator never holds more than one chunk.

    .venv/bin/python bench/scale.py --sizes 10,30 --polars-up-to 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/scale.py

from bench.scenarios import generate
from blameset.analyze._dataset import StagedDataset

CHUNK_REQUESTS = 400_000
"""Requests per generated chunk (~900k spans): what the generator holds at once."""

_MEASURE = """
import os, sys, time
t0 = time.perf_counter()
sys.argv = ["blameset", *sys.argv[1:]]
try:
    from blameset.cli.app import main
    main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
wall = time.perf_counter() - t0
cpu = sum(os.times()[:2])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(f"@@ {wall:.2f} {cpu:.2f} {hwm / 1024:.0f}", file=sys.stderr)
"""

_FLOOR = """
import os, sys, time
t0 = time.perf_counter()
from blameset.analyze import engine
table = engine.request_table(sys.argv[1], memory_limit=sys.argv[2])
wall = time.perf_counter() - t0
cpu = sum(os.times()[:2])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(f"@@ {wall:.2f} {cpu:.2f} {hwm / 1024:.0f} {table.height}", file=sys.stderr)
"""


def make_dataset(root: Path, spans_target: int) -> int:
    """A Delta dataset of about ``spans_target`` spans (kept: generated once); its span count."""
    done = root / "_spans"
    if done.exists():
        return int(done.read_text())
    root.mkdir(parents=True, exist_ok=True)
    written, chunk = 0, 0
    started = time.perf_counter()
    with StagedDataset(root) as staged:
        while written < spans_target:
            spans = generate("overlapping", CHUNK_REQUESTS, seed=11 + chunk)
            prefix = f"{chunk:08x}"
            spans = spans.with_columns(
                trace_id=pl.lit(prefix) + pl.col("trace_id").str.slice(8),
            ).head(spans_target - written)
            staged.write(spans)
            written += spans.height
            chunk += 1
            print(f"  {written:,} spans generated", end="\r", file=sys.stderr)
        staged.commit()
    done.write_text(str(written))
    print(
        f"{written:,} spans written to {root} in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return written


def measure(script: str, args: list[str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, rest) of one fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    line = next((x for x in out.stderr.splitlines() if x.startswith("@@ ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
    wall, cpu, rss, *rest = line[3:].split()
    return float(wall), float(cpu), float(rss), " ".join(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,30,100", help="millions of spans, comma-separated")
    parser.add_argument("--polars-up-to", type=int, default=10, help="millions; 0: never")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/blameset-scale"))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    print(f"{'spans':>6} {'run':<34} {'wall s':>7} {'CPU s':>7} {'peak MB':>8}  note")
    for millions in (int(s) for s in args.sizes.split(",")):
        root = args.dir / f"{millions}M"
        n = make_dataset(root, millions * 1_000_000)
        ds = str(root)
        runs: dict[str, tuple[str, list[str]]] = {
            "duckdb roll-up (floor)": (_FLOOR, [ds, args.memory_limit]),
            "attribute --engine duckdb": (
                _MEASURE,
                [
                    "attribute",
                    ds,
                    "--json",
                    "--engine",
                    "duckdb",
                    "--memory-limit",
                    args.memory_limit,
                ],
            ),
            "report+attribute+html, one roll-up": (
                _MEASURE,
                [
                    "report",
                    ds,
                    "--json",
                    "--html",
                    str(root / "page.html"),
                    "--engine",
                    "duckdb",
                    "--memory-limit",
                    args.memory_limit,
                ],
            ),
        }
        if millions <= args.polars_up_to:
            runs["attribute --engine polars"] = (
                _MEASURE,
                ["attribute", ds, "--json", "--engine", "polars"],
            )
        got: dict[str, tuple[float, float, float, str]] = {}
        for name, (script, argv) in runs.items():
            try:
                got[name] = measure(script, argv)
            except RuntimeError as exc:
                print(f"{millions:>5}M {name:<34} failed: {str(exc)[-300:]}")
                continue
            wall, cpu, rss, note = got[name]
            print(f"{millions:>5}M {name:<34} {wall:>7.1f} {cpu:>7.1f} {rss:>8,.0f}  {note}")
            rows.append({"spans": n, "run": name, "wall_s": wall, "cpu_s": cpu, "rss_mb": rss})
        base, ref = got.get("attribute --engine duckdb"), got.get("attribute --engine polars")
        if base and ref:
            print(
                f"{millions:>5}M polars / duckdb: wall x{ref[0] / base[0]:.2f}, "
                f"CPU x{ref[1] / base[1]:.2f}, peak RSS x{ref[2] / base[2]:.2f}"
            )
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
