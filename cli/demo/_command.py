"""`blameset demo`: options in, the demo application run, its exit code out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for the demo's files (default: ./blameset-demo, created in the "
            "current directory). A rerun replaces the demo's own files there; a folder "
            "with other files in it is refused.",
        ),
    ] = None,
    requests: Annotated[
        int,
        typer.Option(
            min=1,
            help="Simulated user requests over two days (client retries and double-clicked "
            "exports add about 1%).",
        ),
    ] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the traffic and its failures.")] = 7,
) -> None:
    """Serve two days of simulated traffic through an instrumented AI writing assistant (a
    prompt change and a model canary included), then ingest, report and attribute it and
    write the HTML report. Prints the findings and where the files are."""
    from ._present import main

    raise typer.Exit(main(out, requests, seed))
