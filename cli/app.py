"""The `blameset` command: one Typer app joining a module per command (`taxonomy`, `ingest`,
`check`, `gate`, `report`, `attribute`, `judge`, `demo`) and a sub-app per noun (`audit`,
`budget`). The CLI holds no logic: each command parses options, calls analyze or instrument,
prints, and maps errors to exit codes.

The base install (services) has no CLI stack: without typer, ``blameset`` says which extra to
install instead of failing on an import.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

try:
    import typer
except ImportError:  # the base install (services) has no CLI stack
    typer = None  # type: ignore[assignment]

__all__ = ["app", "main"]

_NEEDS_EXTRA = (
    "blameset: the command line needs the analysis extra: pip install 'blameset[analyze]'"
)


def _version() -> str:
    try:
        return version("blameset")
    except PackageNotFoundError:
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"blameset {_version()}")
        raise typer.Exit()


def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """blameset: trace analyzer for AI application backends."""


def _build() -> typer.Typer:
    from . import attribute, audit, budget, check, gate, ingest, judge, report, taxonomy
    from .demo._command import demo

    cli = typer.Typer(
        name="blameset",
        help="Which version_set change made your AI backend slower or dearer.",
        no_args_is_help=True,
        add_completion=False,
    )
    cli.callback()(root)
    for command in (
        taxonomy.taxonomy,
        ingest.ingest,
        check.check,
        gate.gate,
        report.report,
        attribute.attribute,
        judge.judge,
        demo,
    ):
        cli.command()(command)
    cli.add_typer(audit.app, name="audit")
    cli.add_typer(budget.app, name="budget")
    return cli


if typer is not None:
    app = _build()


def main() -> None:
    """Console entry point."""
    if typer is None:
        sys.exit(_NEEDS_EXTRA)
    app()
