"""`--engine` on report and attribute: DuckDB (the default for datasets), Spark in local mode and
the in-memory polars path give the same findings and report; bad engine options are one line
and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.scenarios import generate
from blameset.analyze._dataset import StagedDataset
from blameset.cli.app import app

runner = CliRunner()


def _run(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def _findings(document: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    return sorted((f["metric"], tuple(f["components"]), f["verdict"]) for f in document["findings"])


def _same_findings(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Same metric, components and verdict; each effect inside the other's interval."""
    assert _findings(a) == _findings(b)
    key = {(f["metric"], tuple(f["components"])): f for f in b["findings"]}
    for f in a["findings"]:
        other = key[(f["metric"], tuple(f["components"]))]
        assert other["ci"][0] <= f["effect"] <= other["ci"][1]


@pytest.fixture(scope="module")
def delta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Delta dataset (ingest's writer) of a model canary: 5,000 requests."""
    out = tmp_path_factory.mktemp("delta")
    with StagedDataset(out) as staged:
        staged.write(generate("model_canary", 5000, seed=2))
        staged.commit()
    return out


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Delta dataset of requests crossing a gateway and a worker service whose code changes
    under the unchanged gateway: 5,000 requests."""
    out = tmp_path_factory.mktemp("worker")
    with StagedDataset(out) as staged:
        staged.write(generate("worker_regression", 5000, seed=2))
        staged.commit()
    return out


def test_a_worker_change_under_an_unchanged_gateway_is_the_workers_in_every_engine(
    worker: Path,
) -> None:
    """Each engine rolls requests up with the worker's version set too: the regression is
    attributed to ``worker.code`` by polars, DuckDB and Spark alike."""
    docs = {
        name: _run("attribute", str(worker), "--json", "--engine", name)
        for name in ("polars", "duckdb", "spark")
    }
    for doc in docs.values():
        assert ("worker.service_ms.mean", ("worker.code",), "regression") in _findings(doc)
    assert docs["duckdb"]["findings"] == docs["polars"]["findings"]
    _same_findings(docs["spark"], docs["duckdb"])


def test_duckdb_the_default_gives_the_findings_of_the_in_memory_path(dataset: Path) -> None:
    """attribute on a dataset: the default (DuckDB) and --engine polars agree exactly."""
    default = _run("attribute", str(dataset), "--json")
    in_memory = _run("attribute", str(dataset), "--json", "--engine", "polars")
    assert _findings(default) and _findings(default) == _findings(in_memory)
    assert default["findings"] == in_memory["findings"]


def test_report_is_the_same_from_every_engine(delta: Path) -> None:
    """report --by version_set: the same rows and totals from DuckDB and polars."""
    duck = _run("report", str(delta), "--json", "--engine", "duckdb", "--memory-limit", "1GB")
    mem = _run("report", str(delta), "--json", "--engine", "polars")
    assert duck["totals"] == mem["totals"]
    assert len(duck["rows"]) == len(mem["rows"]) > 1
    for a, b in zip(duck["rows"], mem["rows"], strict=True):
        assert a.keys() == b.keys()
        for k, v in a.items():
            assert v == pytest.approx(b[k], rel=1e-9) if isinstance(v, float) else v == b[k]


def test_spark_in_local_mode_gives_duckdbs_findings(dataset: Path, delta: Path) -> None:
    """--engine spark (local[*]) on two scenario datasets, the earlier layout and Delta: the
    findings DuckDB gives."""
    for path in (dataset, delta):
        duck = _run("attribute", str(path), "--json", "--engine", "duckdb")
        spark = _run("attribute", str(path), "--json", "--engine", "spark")
        assert _findings(duck)
        _same_findings(spark, duck)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--engine", "sqlite"], "--engine must be one of duckdb, spark, polars"),
        (["--spark-master", "local[2]"], "--spark-master goes with --engine spark"),
        (["--engine", "duckdb", "--memory-limit", "lots"], "the duckdb engine failed"),
        (
            ["--engine", "polars", "--memory-limit", "3GB"],
            "--memory-limit goes with --engine duckdb or spark",
        ),
    ],
)
def test_bad_engine_options_are_one_line_and_exit_2(
    dataset: Path, args: list[str], says: str
) -> None:
    """An unknown engine, a master without Spark, a memory limit DuckDB cannot read, a memory
    limit for the in-memory path."""
    result = runner.invoke(app, ["report", str(dataset), *args])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


def test_an_engine_on_trace_files_says_to_ingest_first() -> None:
    """--engine duckdb on a JSON-lines trace file: exit 2, naming `blameset ingest`."""
    lines = Path(__file__).parents[1] / "fixtures" / "otlp" / "otel-demo-capture.jsonl"
    result = runner.invoke(app, ["attribute", str(lines), "--engine", "duckdb"])
    assert result.exit_code == 2
    assert "blameset ingest" in result.output
