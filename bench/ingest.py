"""Ingest throughput against the references issue 6 names, in one run.

Generates N spans (seeded; default 2 million) as flat JSONL and as OTLP JSON (100 spans per line,
like the Collector's file exporter), then times, each case in its own process so its peak RSS is
its own: ``blameset ingest`` of each file; polars ``scan_ndjson`` with an explicit schema on the
flat file (the parse floor); DuckDB ``read_json`` + unnest on the OTLP file (what a user would
reach for). Prints spans/s, MB/s, peak RSS (VmHWM) and the ratios. For scale, not targets:
polars reading every flat field and writing Parquet, and, with ``--without-native``, ingest of
the OTLP file with the native decoder turned off (``BLAMESET_NATIVE=0``, what an install without
a C compiler runs: the row reader, ~100 us a span, so minutes at the default size).

Targets on the 2-core machine: flat JSONL >= 0.8x the polars floor; OTLP JSON >= 1.5x DuckDB;
peak RSS bounded by the batch size, not the file size.

    .venv/bin/python bench/ingest.py [--spans 2000000] [--keep DIR] [--without-native]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["outline@v3", "outline@v4", "expand@v2"]
MODELS = ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"]
ROUTES = ["/v1/outline", "/v1/expand", "/v1/export"]


def generate(n: int, folder: Path, seed: int = 7) -> tuple[Path, Path]:
    """n spans as flat JSONL and as OTLP JSON (100 spans a line); three spans per trace."""
    rng = random.Random(seed)
    flat, otlp = folder / "spans.jsonl", folder / "spans.otlp.jsonl"
    t0 = 1_767_225_600_000_000_000
    with flat.open("w") as f_flat, otlp.open("w") as f_otlp:
        pending: list[dict] = []
        for i in range(n):
            trace = f"{rng.getrandbits(128):032x}"
            span = f"{rng.getrandbits(64):016x}"
            parent = None if i % 3 == 0 else f"{rng.getrandbits(64):016x}"
            start = t0 + i * 1_000_000
            end = start + rng.randint(1_000_000, 900_000_000)
            prompt, model, route = rng.choice(PROMPTS), rng.choice(MODELS), rng.choice(ROUTES)
            canonical = f"code=3f2a91c;model={model};prompt={prompt}"
            attrs = {
                "blameset.span.kind": "request" if parent is None else "llm",
                "blameset.version_set": canonical,
                "http.route": route,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": rng.randint(100, 4000),
                "gen_ai.usage.output_tokens": rng.randint(10, 800),
                "blameset.cost.usd": rng.random() / 100,
                "blameset.tenant.id": f"tenant-{rng.randint(1, 50)}",
            }
            f_flat.write(
                json.dumps(
                    {
                        "trace_id": trace,
                        "span_id": span,
                        "parent_span_id": parent,
                        "name": route,
                        "kind": "server",
                        "start_time_unix_nano": start,
                        "end_time_unix_nano": end,
                        "status": "unset",
                        "status_message": None,
                        "resource": {"service.name": "writer-api"},
                        "attributes": attrs,
                        "events": [],
                    }
                )
                + "\n"
            )
            pending.append(
                {
                    "traceId": trace,
                    "spanId": span,
                    "parentSpanId": parent or "",
                    "name": route,
                    "kind": 2,
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(end),
                    "status": {},
                    "attributes": [{"key": k, "value": _any(v)} for k, v in attrs.items()],
                }
            )
            if len(pending) == 100 or i == n - 1:
                f_otlp.write(
                    json.dumps(
                        {
                            "resourceSpans": [
                                {
                                    "resource": {
                                        "attributes": [
                                            {
                                                "key": "service.name",
                                                "value": {"stringValue": "writer-api"},
                                            }
                                        ]
                                    },
                                    "scopeSpans": [
                                        {"scope": {"name": "blameset"}, "spans": pending}
                                    ],
                                }
                            ]
                        }
                    )
                    + "\n"
                )
                pending = []
    return flat, otlp


def _any(value: object) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


PHASES = (
    # each ingest's time in the commit protocol, apart from writing and de-duplicating: what
    # StagedDataset.commit spends beyond the flush (the last Parquet write) and drop_duplicates
    # (the key check the earlier layout made too) it calls, i.e. reading the log and committing
    "import json, time\n"
    "from blameset.analyze import _dataset\n"
    "PHASES = {'protocol': 0.0, 'inner': 0.0, 'dedup': 0.0}\n"
    "S = _dataset.StagedDataset\n"
    "def _inner(method, key):\n"
    "    def run(self, *a):\n"
    "        t = time.perf_counter()\n"
    "        try:\n"
    "            return method(self, *a)\n"
    "        finally:\n"
    "            PHASES['inner'] += time.perf_counter() - t\n"
    "            if key: PHASES[key] += time.perf_counter() - t\n"
    "    return run\n"
    "def _commit(method):\n"
    "    def run(self):\n"
    "        t, before = time.perf_counter(), PHASES['inner']\n"
    "        try:\n"
    "            return method(self)\n"
    "        finally:\n"
    "            inner = PHASES['inner'] - before\n"
    "            PHASES['protocol'] += time.perf_counter() - t - inner\n"
    "    return run\n"
    "S.flush = _inner(S.flush, None)\n"
    "S.drop_duplicates = _inner(S.drop_duplicates, 'dedup')\n"
    "S.commit = _commit(S.commit)\n"
)

CASES = {
    "blameset_ingest": (
        PHASES + "from blameset.analyze.ingest import ingest\n"
        "import sys\n"
        "s = ingest([sys.argv[1]], sys.argv[2])\n"
        "print(s.spans)\n"
        "print('PHASES', json.dumps(PHASES, separators=(',', ':')))\n"
    ),
    "commit_cost": (
        # small ingests one after another into one dataset: per ingest, its wall time and the
        # protocol's share (the commit less its flush and de-duplication)
        PHASES + "from blameset.analyze.ingest import ingest\n"
        "import sys, statistics\n"
        "lines = open(sys.argv[1], 'rb').readlines()\n"
        "walls, protocol, dedup = [], [], []\n"
        "for i in range(30):\n"
        "    part = f'{sys.argv[2]}-{i}.jsonl'\n"
        "    open(part, 'wb').writelines(lines[i * 1000 : (i + 1) * 1000])\n"
        "    for k in PHASES: PHASES[k] = 0.0\n"
        "    t = time.perf_counter()\n"
        "    ingest([part], sys.argv[2])\n"
        "    walls.append(time.perf_counter() - t)\n"
        "    protocol.append(PHASES['protocol'])\n"
        "    dedup.append(PHASES['dedup'])\n"
        "print(30000)\n"
        "m = statistics.median\n"
        "print('SMALL', json.dumps({'wall': m(walls), 'protocol': m(protocol), 'dedup': m(dedup),\n"
        "  'first_protocol': protocol[0], 'last_protocol': protocol[-1]}, separators=(',', ':')))\n"
    ),
    "polars_floor": (
        "import polars as pl, sys\n"
        "attrs = pl.Struct({'blameset.version_set': pl.String, 'blameset.cost.usd': pl.Float64})\n"
        "schema = {'trace_id': pl.String, 'span_id': pl.String, 'parent_span_id': pl.String,\n"
        "  'name': pl.String, 'kind': pl.String, 'start_time_unix_nano': pl.Int64,\n"
        "  'end_time_unix_nano': pl.Int64, 'status': pl.String, 'attributes': attrs}\n"
        "vs = pl.col('attributes').struct.field('blameset.version_set')\n"
        "df = pl.scan_ndjson(sys.argv[1], schema=schema).group_by(vs).agg(pl.len()).collect()\n"
        "print(df.get_column('len').sum())\n"
    ),
    "polars_parse_write": (
        # not a target: what reading every field and writing it as Parquet costs with nothing
        # else (no alias table, no versions, no costs, no dedup), to read the floor ratio by
        "import polars as pl, sys, tempfile, os\n"
        "schema = {'trace_id': pl.String, 'span_id': pl.String, 'parent_span_id': pl.String,\n"
        "  'name': pl.String, 'kind': pl.String, 'start_time_unix_nano': pl.Int64,\n"
        "  'end_time_unix_nano': pl.Int64, 'status': pl.String, 'status_message': pl.String,\n"
        "  'resource': pl.String, 'attributes': pl.String}\n"
        "out = os.path.join(tempfile.mkdtemp(), 'spans.parquet')\n"
        "pl.scan_ndjson(sys.argv[1], schema=schema).sink_parquet(out, compression='zstd')\n"
        "print(pl.scan_parquet(out).select(pl.len()).collect().item())\n"
    ),
    "duckdb_unnest": (
        "import duckdb, sys\n"
        "con = duckdb.connect()\n"
        "con.execute('SET enable_progress_bar=false')\n"
        "q = ('SELECT count(*) FROM (SELECT unnest(ss.spans) AS s FROM '\n"
        "     '(SELECT unnest(rs.scopeSpans) AS ss FROM (SELECT unnest(resourceSpans) AS rs '\n"
        "     'FROM read_json(?, format=\\'newline_delimited\\', '\n"
        "     'maximum_object_size=1000000000))))')\n"
        "print(con.execute(q, [sys.argv[1]]).fetchone()[0])\n"
    ),
}


def _tagged(out: list[str], tag: str) -> dict[str, float]:
    """The JSON a case printed after ``tag`` (empty when it printed none)."""
    return json.loads(out[out.index(tag) + 1]) if tag in out else {}


LAST_OUTPUT: list[str] = []
"""The tokens the last case printed (for the phases it reports)."""


def run_case(
    code: str, *args: str, env: dict[str, str] | None = None
) -> tuple[float, int, int, float]:
    """(seconds, peak RSS bytes, printed count, CPU seconds) of one case in a fresh interpreter.

    CPU seconds (user + system, all threads) say what a case costs when other work shares the
    machine; wall seconds and their ratios are what the targets are about."""
    wrapper = (
        "import resource, time, runpy, sys\n"
        "t0 = time.perf_counter()\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF)\n"
        f"exec(compile({code!r}, 'case', 'exec'))\n"
        "print('SECONDS', time.perf_counter() - t0)\n"
        "r1 = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print('CPU', r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)\n"
        # VmHWM, not ru_maxrss: after fork + exec the latter can report the parent's peak
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "print('RSS', int(hwm[0].split()[1]) * 1024 if hwm else r1.ru_maxrss * 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    LAST_OUTPUT[:] = out
    return (
        float(out[out.index("SECONDS") + 1]),
        int(out[out.index("RSS") + 1]),
        int(out[0]),
        float(out[out.index("CPU") + 1]),
    )


def _commit_cost(flat: Path, folder: Path) -> None:
    """30 ingests of 1,000 spans each into one dataset: what the commit protocol adds to each."""
    run_case(CASES["commit_cost"], str(flat), str(folder / "small"))
    small = _tagged(LAST_OUTPUT, "SMALL")
    print(
        f"30 ingests of 1,000 spans into one dataset: median {small['wall'] * 1e3:.0f} ms each, "
        f"of which the commit protocol {small['protocol'] * 1e3:.1f} ms "
        f"({small['protocol'] / small['wall']:.1%}; first {small['first_protocol'] * 1e3:.1f} ms, "
        f"30th {small['last_protocol'] * 1e3:.1f} ms) and the duplicate check "
        f"{small['dedup'] * 1e3:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=2_000_000)
    parser.add_argument("--keep", type=Path, help="keep the generated files here")
    parser.add_argument(
        "--without-native", action="store_true", help="also time ingest with the row reader only"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="blameset-bench-"))
    try:
        t0 = time.perf_counter()
        flat, otlp = generate(args.spans, folder)
        print(
            f"generated {args.spans} spans in {time.perf_counter() - t0:.1f} s: "
            f"flat {flat.stat().st_size / 1e6:.0f} MB, OTLP JSON {otlp.stat().st_size / 1e6:.0f} MB"
        )
        results: dict[str, float] = {}
        protocol: dict[str, float] = {}
        for label, case, path in (
            ("ingest flat JSONL", "blameset_ingest", flat),
            ("polars scan_ndjson (floor)", "polars_floor", flat),
            ("polars parse + Parquet write", "polars_parse_write", flat),
            ("ingest OTLP JSON", "blameset_ingest", otlp),
            # not a target: an install built without a C compiler (the row reader reads it all)
            ("  ... without native decoder", "blameset_ingest", otlp),
            ("DuckDB read_json + unnest", "duckdb_unnest", otlp),
        ):
            if "without native" in label and not args.without_native:
                continue
            extra = [str(folder / f"ds-{case}-{path.stem}-{len(results)}")]
            extra = extra if case == "blameset_ingest" else []
            env = {"BLAMESET_NATIVE": "0"} if "without native" in label else None
            try:
                seconds, rss, count, cpu = run_case(CASES[case], str(path), *extra, env=env)
            except subprocess.CalledProcessError as exc:
                print(f"  {label:<28} failed: {exc.stderr.strip().splitlines()[-1:]}")
                continue
            size = path.stat().st_size / 1e6
            results[label] = seconds
            if phases := _tagged(LAST_OUTPUT, "PHASES"):
                protocol[label] = phases["protocol"] / seconds
            print(
                f"  {label:<28} {seconds:7.2f} s  {count / seconds / 1e3:8.0f}k spans/s  "
                f"{size / seconds:6.0f} MB/s  peak RSS {rss / 1e6:6.0f} MB  "
                f"CPU {cpu:6.1f} s  ({count} spans)"
            )
        if "ingest flat JSONL" in results and "polars scan_ndjson (floor)" in results:
            ratio = results["polars scan_ndjson (floor)"] / results["ingest flat JSONL"]
            print(f"flat JSONL: ingest at {ratio:.2f}x the polars floor (target >= 0.8x)")
        if "ingest flat JSONL" in results and "polars parse + Parquet write" in results:
            ratio = results["polars parse + Parquet write"] / results["ingest flat JSONL"]
            print(f"  (for scale: {ratio:.2f}x polars reading every field and writing Parquet)")
        if "ingest OTLP JSON" in results and "DuckDB read_json + unnest" in results:
            ratio = results["DuckDB read_json + unnest"] / results["ingest OTLP JSON"]
            print(f"OTLP JSON: ingest at {ratio:.2f}x DuckDB (target >= 1.5x)")
        for label, share in protocol.items():
            print(f"commit protocol (log read + commit): {share:.2%} of {label}")
        _commit_cost(flat, folder)
    finally:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in folder.glob("*.jsonl"):
                shutil.copy(f, args.keep)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "2")
    sys.exit(main())
