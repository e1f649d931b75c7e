"""One demo run: serve the planned traffic through the service in simulated time (telemetry
configured for the run only, then the previous configuration is back), then ingest the spans,
report and attribute them and write the HTML report, into a folder the demo owns.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._traffic import T0, Request, plan_traffic

if TYPE_CHECKING:
    from blameset.analyze import Attribution, IngestSummary, Report

__all__ = ["DEFAULT_OUT", "MARKER", "DemoResult", "NotADemoFolder", "Progress", "run", "simulate"]

DEFAULT_OUT = Path("blameset-demo")

# The demo's own files in OUT (replaced on a rerun; nothing else there is touched).
SPANS_FILE = "spans.jsonl"
LOGS_FILE = "spans.logs.jsonl"
DATASET_DIR = "dataset"
HTML_FILE = "report.html"
AUDIT_FILE = "audit.jsonl"
IDEMPOTENCY_FILE = "idempotency.db"
SPILL_DIR = "spill"
_OWN = (SPANS_FILE, LOGS_FILE, DATASET_DIR, HTML_FILE, AUDIT_FILE, SPILL_DIR)
_OWN_DB = (IDEMPOTENCY_FILE,)


def _seeded_ids(seed: int) -> Any:
    """Trace and span ids from a seeded generator: the same seed writes the same spans."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class SeededIds(IdGenerator):
        def __init__(self) -> None:
            self._rng = random.Random(seed ^ 0x5EED)

        def generate_span_id(self) -> int:
            return self._rng.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            return self._rng.getrandbits(128) or 1

    return SeededIds()


@dataclass
class DemoResult:
    """What a demo run produced: its files, the analysis, and how long it took (real seconds)."""

    out: Path
    spans_file: Path
    dataset: Path
    html: Path
    audit_log: Path
    requests: int
    statuses: dict[str, int]
    ingest: IngestSummary
    report: Report
    attribution: Attribution
    seconds: dict[str, float]

    @property
    def files(self) -> dict[str, Path]:
        return {
            "spans (JSONL)": self.spans_file,
            "log records": self.spans_file.with_name(LOGS_FILE),
            "dataset (Parquet)": self.dataset,
            "HTML report": self.html,
            "audit log": self.audit_log,
            "idempotency store": self.out / IDEMPOTENCY_FILE,
        }


Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is "serving", "ingesting", "attributing", "writing"."""


MARKER = ".blameset-demo"
"""Written into every folder the demo fills, so a rerun knows the files there are its own."""


class NotADemoFolder(ValueError):
    """``--out`` names a folder with other files in it, or a file."""


def _claim(out: Path) -> None:
    """Make ``out`` the demo's: a new or empty folder, or one an earlier demo run marked.
    Anything else is refused, since a rerun replaces spans.jsonl, audit.jsonl and dataset/,
    the very names a real service writes."""
    if out.exists() and not out.is_dir():
        raise NotADemoFolder(f"{out} is a file; --out needs a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise NotADemoFolder(
            f"{out} is not empty and was not written by blameset demo; "
            "choose a new or empty folder with --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `blameset demo`; a rerun replaces its files here\n")


def _clean(out: Path) -> None:
    """Remove the files an earlier demo run left in ``out`` (only the demo's own)."""
    for name in _OWN:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name in _OWN_DB:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (out / (name + suffix)).unlink(missing_ok=True)


def simulate(
    out: Path, requests: int, seed: int, progress: Progress | None = None
) -> list[Request]:
    """Serve the planned traffic through the instrumented service in simulated time, exporting
    spans to ``out/spans.jsonl``. Telemetry is configured for the run only: afterwards the
    configuration that was in force before is back."""
    from blameset import instrument
    from blameset.instrument.audit import set_default

    from . import _service
    from ._clients import serve
    from ._loop import SimulatedLoop

    plan = plan_traffic(requests, seed)
    loop = SimulatedLoop(T0)
    with instrument.configured(
        service="writer-api",
        version_set=instrument.VersionSet(**_service.BASE_VERSIONS),
        exporter=f"jsonl:{out / SPANS_FILE}",
        environment="demo",
        resource_attributes={"service.instance.id": "writer-api-demo-0"},  # else a random uuid
        clock=loop.clock_ns,
        id_generator=_seeded_ids(seed),
        spill_dir=out / SPILL_DIR,
    ):
        # The free tier's daily allowance follows the traffic volume: v3 stays inside it, v4's
        # dearer requests run free tenants out of it on day two (degraded answers).
        app = _service.AppState.open(
            out / AUDIT_FILE, out / IDEMPOTENCY_FILE, loop.clock_s, free_usd=1.6 * requests / 3000
        )
        set_default(app.audit)  # audited error codes (SAFETY_VIOLATION) land in it too
        try:
            with _service.serving(app):
                loop.run_until_complete(serve(plan, progress))
                loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            set_default(None)
    return plan


def run(
    out: Path = DEFAULT_OUT,
    *,
    requests: int = 3000,
    seed: int = 7,
    progress: Progress | None = None,
) -> DemoResult:
    """The whole demo: simulate, then ingest, report, attribute and write the HTML report."""
    if requests < 1:
        raise ValueError("requests must be at least 1")
    _claim(out)
    _clean(out)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    plan = simulate(out, requests, seed, progress)
    seconds["serve"] = time.perf_counter() - t
    result = _analyze(out, progress, seconds)
    result.requests = len(plan)
    return result


def _analyze(out: Path, progress: Progress | None, seconds: dict[str, float]) -> DemoResult:
    """Ingest what the run exported (and anything it spilled), then report, attribute and write
    the page from one request roll-up, timing each stage into ``seconds``."""
    from blameset.analyze import attribute, ingest, load, report, request_table
    from blameset.analyze.html import write_html

    def stage(name: str) -> None:
        if progress is not None:
            progress(name, 0, 1)

    t = time.perf_counter()
    stage("ingesting")
    inputs = [out / SPANS_FILE]
    spill = out / SPILL_DIR
    inputs += sorted(spill.glob("spans-*.jsonl")) if spill.is_dir() else []
    summary = ingest(inputs, out / DATASET_DIR)
    spans = load(out / DATASET_DIR)
    seconds["ingest"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("attributing")
    table = request_table(spans)
    statuses = dict(table["final_status"].cast(str).value_counts().iter_rows())
    grouped = report(spans, by=["version_set"], requests=table)
    found = attribute(spans, requests=table)  # defaults: `blameset attribute` agrees with it
    seconds["attribute"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("writing")
    html = write_html(out / HTML_FILE, spans, attribution=found, requests=table)
    seconds["html"] = time.perf_counter() - t
    return DemoResult(
        out=out,
        spans_file=out / SPANS_FILE,
        dataset=out / DATASET_DIR,
        html=html,
        audit_log=out / AUDIT_FILE,
        requests=0,
        statuses=statuses,
        ingest=summary,
        report=grouped,
        attribution=found,
        seconds=seconds,
    )
