"""`blameset check`: telemetry against the contract, a gate for users' CI."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._common import AsJson, fail


def check(
    inputs: Annotated[list[str], typer.Argument(help="Span files (and *.logs.jsonl) to check.")],
    min_coverage: Annotated[
        float, typer.Option(help="Percent of spans that must carry each required field.")
    ] = 100.0,
    as_json: AsJson = False,
) -> None:
    """Check telemetry against the contract: per service and span kind, the share of spans
    carrying each required field; exit 1 naming the gaps under --min-coverage."""
    from blameset.analyze import BadInput
    from blameset.analyze.check import check as run_check

    if not 0 <= min_coverage <= 100:
        fail(f"--min-coverage is a percent (0-100), not {min_coverage:g}")
    try:
        result = run_check(inputs, min_coverage)
    except BadInput as exc:
        fail(f"blameset check: {exc}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for r in result.rows:
            mark = "GAP" if result.is_gap(r) else "ok "
            typer.echo(
                f"{mark} {r.service:<24} {r.kind:<10} {r.field:<38} "
                f"{r.share * 100:6.1f}% of {r.spans}"
            )
        if not result.rows:
            typer.echo("no spans or log records found")
    if gaps := result.gaps:
        fail(
            f"FAIL: {len(gaps)} field(s) under {min_coverage:g}% coverage: "
            + "; ".join(f"{g.service}/{g.kind}: {g.field}" for g in gaps[:10]),
            1,
        )
