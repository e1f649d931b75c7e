"""`blameset audit ...`: the tamper-evident audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="The audit log (JSONL) to check.")],
    expect_last: Annotated[
        str | None,
        typer.Option(help="The hash the last record must have (catches a cut-off tail)."),
    ] = None,
) -> None:
    """Check the hash chain; exit 1 naming the first edited, removed or moved record."""
    from blameset.instrument.audit import verify as verify_chain

    if not path.is_file():
        fail(f"blameset audit verify: {path}: no such file")
    result = verify_chain(path, expect_last=expect_last)
    if not result.ok:
        where = f"line {result.line}" if result.line is not None else "end of file"
        fail(f"{path}: {where}: {result.problem}", 1)
    typer.echo(
        f"{path}: chain intact ({result.records} records); last hash "
        f"{result.last_hash} (pass it as --expect-last next time to catch a cut-off tail)"
    )
