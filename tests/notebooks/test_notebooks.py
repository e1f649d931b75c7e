"""The notebooks run top to bottom on a dataset, so they never rot; they are committed without
outputs (a test checks that too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient


NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def dataset(demo_run: Any) -> Path:
    """The notebooks explore what `blameset demo` wrote, as a newcomer would."""
    return Path(demo_run.dataset)


def test_there_are_notebooks() -> None:
    """The two notebooks the README names are the ones the suite runs (none silently skipped)."""
    assert [p.name for p in NOTEBOOKS] == ["01_explore.ipynb", "02_cost_spike.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    """No cell output or execution count is committed: diffs stay readable, no stale data."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: clear outputs before committing"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_where_jupyter_starts_it(
    path: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each notebook runs top to bottom with its kernel in notebooks/ (where Jupyter starts it),
    finds the demo's dataset in the repository's blameset-demo/ on its own, and draws its
    plotly figures."""
    monkeypatch.delenv("BLAMESET_DATA", raising=False)
    repo = tmp_path / "repo"  # the checkout's layout: notebooks/ beside blameset-demo/
    (repo / "notebooks").mkdir(parents=True)
    (repo / "blameset-demo").mkdir()
    (repo / "blameset-demo" / "dataset").symlink_to(dataset, target_is_directory=True)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(repo / "notebooks")}},
    )
    client.execute(env={**os.environ})  # raises CellExecutionError naming the failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= (5 if path.name.startswith("01") else 2)
