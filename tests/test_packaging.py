"""What `pip install` puts on a user's machine: one import package, `blameset`, that a user's own
`instrument.py`, `analyze.py` or `cli/` can neither shadow nor overwrite."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
OURS = {"blameset", "blameset-0.1.0.dist-info"}


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _site_packages(env_dir: Path) -> Path:
    return next((env_dir / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with `pip install '.[analyze]'` of a copy of this checkout
    (a copy, so the build leaves nothing in the working tree)."""
    work = tmp_path_factory.mktemp("pkg")
    source = work / "src"
    files = _run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            target.write_bytes((ROOT / name).read_bytes())
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    _run(env_dir / "bin" / "python", "-m", "pip", "install", "-q", f"{source}[analyze]", cwd=work)
    return env_dir


def test_the_install_holds_one_top_level_package(installed: Path) -> None:
    """site-packages gains `blameset` and its dist-info, and no `instrument`, `analyze` or `cli`."""
    site = _site_packages(installed)
    record = (site / "blameset-0.1.0.dist-info" / "RECORD").read_text().splitlines()
    tops = {line.split(",")[0].split("/")[0] for line in record}
    tops = {t for t in tops if not t.startswith("..")}  # the console script, in bin/
    assert tops == OURS
    for name in ("instrument", "analyze", "cli"):
        assert not (site / name).exists()
        assert not (site / f"{name}.py").exists()
    assert (site / "blameset" / "analyze" / "py.typed").exists()
    assert list((site / "blameset" / "analyze").glob("_spanjson*.so")), "native decoder not built"


def test_a_users_own_instrument_analyze_and_cli_do_not_shadow_ours(
    installed: Path, tmp_path: Path
) -> None:
    """An app whose own modules are named instrument.py, analyze.py and cli/ imports
    blameset.instrument and runs `blameset demo` to its headline."""
    app = tmp_path / "userapp"
    (app / "cli").mkdir(parents=True)
    (app / "instrument.py").write_text("WHO = 'the user'\n")
    (app / "analyze.py").write_text("WHO = 'the user'\n")
    (app / "cli" / "__init__.py").write_text("WHO = 'the user'\n")
    (app / "main.py").write_text(
        "import analyze, cli, instrument\n"
        "from blameset.instrument import VersionSet, traced\n"
        "from blameset import analyze as ours\n"
        "assert instrument.WHO == analyze.WHO == cli.WHO == 'the user'\n"
        "assert callable(traced) and VersionSet(code='c').id and ours.report\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(app)  # the user's modules come first, as in their own app
    assert _run(installed / "bin" / "python", "main.py", cwd=app, env=env).strip() == "ok"
    out = _run(installed / "bin" / "blameset", "demo", "--out", tmp_path / "demo", cwd=app, env=env)
    assert "Headline:" in out
