"""`blameset audit ...`: the tamper-evident audit log.

Exit codes: 0 intact, 1 tampering proven (the message says which), 2 the input is not an audit
log or the key cannot be read or is not the one the log was sealed with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

_KEY_HELP = (
    "The sealing key: a file's path (its bytes) or env:NAME (a variable's text). Proves the "
    "log unforged: edits, deletions, reordering, a cut-off tail, removed digest periods and "
    "appended forgeries are caught."
)


def _key(spec: str | None, command: str) -> bytes | None:
    if spec is None:
        return None
    from blameset.instrument.audit import load_key

    try:
        return load_key(spec)
    except ValueError as exc:
        fail(f"blameset audit {command}: --key: {exc}")


@app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="The audit log (JSONL) to check.")],
    expect_last: Annotated[
        str | None,
        typer.Option(help="The hash the last record must have (catches a cut-off tail)."),
    ] = None,
    key: Annotated[str | None, typer.Option(help=_KEY_HELP)] = None,
) -> None:
    """Check the hash chain (and with --key the signed digests); exit 1 naming the first edited,
    removed, moved or forged record, 2 when the input is not an audit log."""
    from blameset.instrument.audit import verify as verify_chain

    if not path.is_file():
        fail(f"blameset audit verify: {path}: no such file")
    secret = _key(key, "verify")
    try:
        result = verify_chain(path, expect_last=expect_last, key=secret)
    except OSError as exc:
        fail(f"blameset audit verify: {path}: {exc.strerror}")
    if not result.ok:
        where = f"line {result.line}" if result.line is not None else "end of file"
        if result.malformed:
            fail(f"{path}: {where}: not a valid audit log: {result.problem}", 2)
        fail(f"{path}: {where}: tampering ({result.tampering}): {result.problem}", 1)
    if result.keyed:
        typer.echo(
            f"{path}: chain intact and sealed ({result.records} records, {result.digests} "
            f"digests verified with the key); last hash {result.last_hash}"
        )
        return
    typer.echo(
        f"{path}: chain intact ({result.records} records); last hash "
        f"{result.last_hash} (pass it as --expect-last next time to catch a cut-off tail). "
        "Without --key forgery cannot be ruled out: anyone can recompute the hashes."
    )


@app.command("seal")
def seal(
    path: Annotated[Path, typer.Argument(help="The audit log (JSONL) to seal.")],
    key: Annotated[str, typer.Option(help=_KEY_HELP)],
) -> None:
    """Seal records a writer left unsealed (it stopped before closing): check them first with
    `verify`, since sealing vouches for them."""
    from blameset.instrument.audit import AuditLog

    if not path.is_file():
        fail(f"blameset audit seal: {path}: no such file")
    secret = _key(key, "seal")
    log = AuditLog(path, key=secret, emit=False)
    digest = log.seal()
    log.close()
    if digest is None:
        typer.echo(f"{path}: nothing to seal (every record is sealed)")
    else:
        typer.echo(
            f"{path}: sealed records {digest['first_seq']}..{digest['last_seq']} "
            f"(digest {digest['digest_seq']})"
        )
