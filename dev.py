#!/usr/bin/env python3
"""Project tasks that work on a fresh machine with only python3.

Every task first makes sure `.venv/` exists and holds the project installed in editable mode:
the demo with what it runs (analyze, redis), the other tasks with all extras (tests, linters,
Spark); re-installs only when pyproject.toml, the native decoder's C source or the extras needed
changed. The demo stays light: it needs no Spark, Java or test clients.
Usage: python3 dev.py demo|test|lint|bench
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".blameset-installed"
# Installed as blameset.<name> (pyproject's package-dir).
PACKAGES = ("instrument", "analyze", "cli")
TYPECHECK = ROOT / "build" / "typecheck"  # mypy's view of the tree under its installed names


def _run(*cmd: str | Path) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def install_stamp(root: Path) -> str:
    """What an install depends on, as one digest: pyproject.toml, the C sources (the native
    decoder, the scrubber's check; the install builds them) and the list of modules and
    packages, so a new or renamed module is installed before anything imports it, whatever
    editable mode setuptools picked."""
    sources = [
        root / "pyproject.toml",
        *sorted(p for name in PACKAGES for p in (root / name).glob("*.c")),
    ]
    modules = sorted(
        p.relative_to(root).as_posix() for name in PACKAGES for p in (root / name).rglob("*.py")
    )
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources))
    digest.update("\n".join(modules).encode())
    return digest.hexdigest()


EXTRAS = {"demo": "analyze,redis"}
"""Extras a task installs; the others install ``dev`` (everything, ``analyze,redis`` included)."""


def installed(stamp: str, digest: str, extras: str) -> bool:
    """Whether an install stamped ``stamp`` serves a task that needs ``extras`` at ``digest``."""
    have_digest, _, have_extras = stamp.strip().partition(" ")
    return have_digest == digest and have_extras in (extras, "dev")


def ensure_env(extras: str = "dev") -> None:
    """Create the virtual environment and install the project when it is missing or stale."""
    want = install_stamp(ROOT)
    if STAMP.exists() and PY.exists() and installed(STAMP.read_text(), want, extras):
        return
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    quiet = [] if os.environ.get("CI") else ["-q"]
    if _run(PY, "-m", "pip", "install", *quiet, "--upgrade", "pip") != 0:
        sys.exit("dev.py: could not upgrade pip in .venv")
    if _run(PY, "-m", "pip", "install", *quiet, "-e", f".[{extras}]") != 0:
        sys.exit("dev.py: installing the project into .venv failed (see pip's message above)")
    STAMP.write_text(f"{want} {extras}")


def demo(args: list[str]) -> int:
    """The main job, `blameset demo`: an instrumented sample service serves two days of simulated
    traffic, and the analysis finds what its prompt change did (options: blameset demo --help)."""
    return _run(BIN / ("blameset.exe" if os.name == "nt" else "blameset"), "demo", *args)


def test(args: list[str]) -> int:
    """Run the whole test suite; 'no tests collected' is a failure where test files exist."""
    rc = _run(PY, "-m", "pytest", *args)
    if rc == 5:
        has_tests = any((ROOT / "tests").rglob("test_*.py"))
        if has_tests:
            print("dev.py: pytest collected no tests although tests/ holds test files", flush=True)
            return 1
        print("dev.py: no test files yet; nothing to run", flush=True)
        return 0
    return rc


def typecheck_tree() -> None:
    """Link the package folders under their import names (build/typecheck/blameset/<name>), so
    mypy, which cannot follow setuptools' editable-install finder, reads `blameset.instrument`."""
    home = TYPECHECK / "blameset"
    home.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        link = home / name
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", "..", name), target_is_directory=True)


def lint(args: list[str]) -> int:
    """ruff (lint + format check) and mypy (strict for instrument and analyze)."""
    typecheck_tree()
    rc = _run(PY, "-m", "ruff", "check", ".")
    rc |= _run(PY, "-m", "ruff", "format", "--check", ".")
    rc |= _run(PY, "-m", "mypy")
    return rc


def bench(args: list[str]) -> int:
    """Run the benchmarks in bench/ (by hand; CI does not run them)."""
    rc = 0
    for script in sorted((ROOT / "bench").glob("*.py")):
        rc |= _run(PY, script, *args)
    return rc


TASKS = {"demo": demo, "test": test, "lint": lint, "bench": bench}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(TASKS)}}} [args...]")
    ensure_env(EXTRAS.get(sys.argv[1], "dev"))
    sys.exit(TASKS[sys.argv[1]](sys.argv[2:]))


if __name__ == "__main__":
    main()
