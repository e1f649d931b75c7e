"""`blameset gate`: the design gate over backend design documents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def gate(
    files: Annotated[list[Path], typer.Argument(help="Backend design documents (Markdown).")],
) -> None:
    """Check design documents name idempotency keys, trace_id, version_set and retry budgets."""
    from blameset.analyze import check_design

    failed = False
    for file in files:
        if not file.is_file():
            typer.echo(f"{file}: no such file", err=True)
            failed = True
            continue
        try:
            result = check_design(file)
        except UnicodeDecodeError:
            typer.echo(f"{file}: not UTF-8 text (a design document is Markdown)", err=True)
            failed = True
            continue
        if result.ok:
            typer.echo(f"PASS {file}: idempotency key, trace_id, version_set, retry budget")
            continue
        failed = True
        typer.echo(f"FAIL {file}: missing {len(result.missing)} required element(s):")
        for req in result.missing:
            typer.echo(f"  - {req.name}: {req.why}")
    if failed:
        raise typer.Exit(1)
