"""The `blameset` command: one typer app, a sub-app per noun; commands arrive with later issues.

The CLI holds no logic: each command parses options, calls analyze or instrument, prints.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

try:
    import typer
except ImportError:  # the base install (services) has no CLI stack
    typer = None  # type: ignore[assignment]


def _version() -> str:
    try:
        return version("blameset")
    except PackageNotFoundError:
        return "0+unknown"


if typer is not None:
    app = typer.Typer(
        name="blameset",
        help="Which version_set change made your AI backend slower or dearer.",
        no_args_is_help=True,
        add_completion=False,
    )

    def _print_version(value: bool) -> None:
        if value:
            typer.echo(f"blameset {_version()}")
            raise typer.Exit()

    @app.callback()
    def root(
        show_version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_print_version,
                is_eager=True,
                help="Print the version and exit.",
            ),
        ] = False,
    ) -> None:
        """blameset: trace analyzer for AI application backends."""


def main() -> None:
    """Console entry point."""
    if typer is None:
        sys.exit(
            "blameset: the command line needs the analysis extra: pip install 'blameset[analyze]'"
        )
    app()


if __name__ == "__main__":
    main()
