"""`blameset taxonomy`: the error taxonomy as a Markdown table or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._common import fail


def taxonomy(
    fmt: Annotated[str, typer.Option("--format", help="md (a Markdown table) or json.")] = "md",
) -> None:
    """Print the error taxonomy: codes, HTTP status, retry policy, budget, alert, messages."""
    from blameset.instrument import errors

    if fmt == "json":
        typer.echo(json.dumps(errors.taxonomy_json(), ensure_ascii=False, indent=2))
    elif fmt == "md":
        typer.echo(errors.taxonomy_markdown(), nl=False)
    else:
        fail(f"blameset taxonomy: --format must be md or json, not {fmt!r}")
