"""A separate process for the store-and-forward tests.

``spill ENDPOINT FOLDER N``: configure OTLP to ENDPOINT (down), make N spans, shut down: the spans
stay in FOLDER. ``drain ENDPOINT FOLDER SECONDS``: re-send FOLDER to ENDPOINT until no spill file
of it is left (or SECONDS pass); prints how many spans this process re-sent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from blameset import instrument
from blameset.instrument import VersionSet, _export, _runtime, traced
from blameset.instrument._spill import SpillWriter


def forward(writer: SpillWriter, endpoint: str, **tuning: float) -> None:
    settings = _export.OtlpSettings(endpoint=endpoint, timeout=0.3)
    exporter = _export.otlp_exporter("traces", settings)
    writer.forward("spans", exporter, _export.destination("traces", exporter, settings), **tuning)


def spill(endpoint: str, folder: Path, n: int) -> None:
    settings = _export.OtlpSettings(endpoint=endpoint, timeout=0.3)
    exporter = _export.otlp_exporter("traces", settings)
    instrument.configure(
        service="worker",
        version_set=VersionSet(code="w"),
        exporter=exporter,
        timeout=0.3,
        spill_dir=folder,
    )
    assert _runtime.STATE.spill is not None
    _runtime.STATE.spill.forward(
        "spans", exporter, _export.destination("traces", exporter, settings)
    )
    op = traced("op")(lambda i: i)
    for i in range(n):
        op(i)
    instrument.shutdown()


def drain(endpoint: str, folder: Path, seconds: float) -> None:
    writer = SpillWriter(folder)
    forward(writer, endpoint, batch_size=25, probe_size=25, max_backoff_s=0.5, idle_scan_s=0.1)
    deadline = time.monotonic() + seconds
    while any(folder.glob("spans-*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    print(writer.forwarded.get("spans", 0))


if __name__ == "__main__":
    mode, endpoint, where, amount = sys.argv[1:5]
    if mode == "spill":
        spill(endpoint, Path(where), int(amount))
    else:
        drain(endpoint, Path(where), float(amount))
