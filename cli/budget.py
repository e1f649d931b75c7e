"""`blameset budget ...`: budgets and the spend breaker, as a service's store shows them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ._common import fail

app = typer.Typer(help="Budgets and the spend breaker.", no_args_is_help=True)


@app.command("status")
def status(
    store: Annotated[str, typer.Option(help="sqlite:PATH or redis://HOST:PORT/DB")],
    tenant: Annotated[list[str], typer.Option(help="Tenant to show (repeat for several).")],
    per_minute_usd: Annotated[
        float | None, typer.Option(help="The service's per-minute limit, to show beside it.")
    ] = None,
    per_day_usd: Annotated[
        float | None, typer.Option(help="The service's per-day limit, to show beside it.")
    ] = None,
    at: Annotated[float | None, typer.Option(help="Unix time to look at (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Spend per tenant and window (settled, held, limit) and the global breaker's state
    as the store shows it now (the service's own breaker may be half-open)."""
    from blameset.instrument.budget import Budget
    from blameset.instrument.stores import NoSuchStore, open_existing_store

    try:
        budget = Budget(
            open_existing_store(store),
            tenant_per_minute_usd=per_minute_usd,
            tenant_per_day_usd=per_day_usd,
        )
        shown = budget.status(tenant, now=at)
    except NoSuchStore as exc:
        fail(f"blameset budget status: {exc}")
    except Exception as exc:  # a bad spec or an unreachable store: say which, no traceback
        fail(f"blameset budget status: cannot read store {store!r}: {exc}")
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
    else:
        _print_status(store, shown)


def _print_status(store: str, status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"budgets in {store}")
    for column in ("tenant", "window", "settled $", "held $", "limit $"):
        table.add_column(column, justify="left" if column in ("tenant", "window") else "right")
    for row in status["tenants"]:
        limit = "-" if row["limit_usd"] is None else f"{row['limit_usd']:.2f}"
        table.add_row(
            row["tenant"],
            row["window"],
            f"{row['settled_usd']:.4f}",
            f"{row['held_usd']:.4f}",
            limit,
        )
    console = Console()
    console.print(table)
    b = status["breaker"]
    console.print(
        f"global breaker: {b['state']} (last hour ${b['last_hour_usd']:.2f}, baseline "
        f"${b['baseline_usd_per_hour']:.2f}/h, opens above {b['spike_ratio']}x)"
    )
