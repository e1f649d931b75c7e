"""analyze.report and analyze.attribute take the spans where a user holds them: a polars frame
(rolled up in memory), a dataset folder, a DuckDB relation or a Spark DataFrame (rolled up out of
core by that engine), with the same findings and report from each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from bench.scenarios import generate
from blameset import analyze
from blameset.analyze import engine
from blameset.analyze._dataset import StagedDataset, committed_files


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ingested dataset (Delta) of 5,000 requests with a seeded prompt regression."""
    out = tmp_path_factory.mktemp("ds")
    with StagedDataset(out) as staged:
        staged.write(generate("prompt_regression", 5000, seed=5))
        staged.commit()
    return out


def _findings(found: analyze.Attribution) -> list[dict[str, Any]]:
    return [f.to_dict() for f in found.findings]


def _kinds(found: analyze.Attribution) -> list[tuple[str, tuple[str, ...], str]]:
    return sorted((f.metric, tuple(f.components), f.verdict) for f in found.findings)


def _assert_same_findings(got: analyze.Attribution, ref: analyze.Attribution) -> None:
    """Some findings; the same metrics, components and verdicts; each effect inside the
    reference's interval."""
    assert _kinds(ref) and _kinds(got) == _kinds(ref)
    intervals = {(f.metric, tuple(f.components)): f.ci for f in ref.findings}
    for f in got.findings:
        low, high = intervals[(f.metric, tuple(f.components))]
        assert low <= f.effect <= high


def test_a_dataset_folder_and_a_duckdb_relation_give_the_in_memory_findings(
    dataset: Path, tmp_path: Path
) -> None:
    """attribute and report on the folder, or on a DuckDB relation over its files, equal the
    in-memory path's; the relation's copy is gone once the run ends."""
    in_memory = analyze.attribute(analyze.open_spans(dataset))
    assert _kinds(in_memory)
    con = duckdb.connect()
    files = [str(f) for f in committed_files(dataset)]
    relation = con.read_parquet(files, union_by_name=True)
    assert engine.frame_engine(relation) == "duckdb"
    for spans in (dataset, str(dataset), relation):
        assert _findings(analyze.attribute(spans)) == _findings(in_memory)
    expected = analyze.report(analyze.open_spans(dataset)).to_dict()
    got = analyze.report(relation).to_dict()
    assert got["totals"] == expected["totals"]
    assert len(got["rows"]) == len(expected["rows"]) > 1
    spill = tmp_path / "spill"
    with engine.open_engine(relation, temp_dir=spill) as opened:
        assert engine.traffic(opened).requests.height == 5000
        assert [p.name for p in spill.iterdir() if p.name.startswith("blameset-relation-")]
    assert not [p for p in spill.iterdir() if p.name.startswith("blameset-relation-")]


def test_a_duckdb_relation_of_a_polars_frame_gives_the_same_findings() -> None:
    """Spans a notebook holds in polars, handed over as a DuckDB relation (times at DuckDB's
    microseconds): the findings of the frame itself, each effect inside the other's interval."""
    spans = generate("model_canary", 4000, seed=2)
    con = duckdb.connect()
    con.register("spans", spans.to_arrow())
    relation = con.sql("SELECT * FROM spans")
    in_memory = analyze.attribute(spans.lazy())
    got = analyze.attribute(relation)
    _assert_same_findings(got, in_memory)


def test_a_spark_dataframe_is_rolled_up_in_spark_with_the_same_findings(dataset: Path) -> None:
    """A Spark DataFrame of the dataset's files (local mode) is attributed in its own session:
    DuckDB's findings, each effect inside DuckDB's interval, and the report's request count."""
    from blameset.analyze.engine.spark import session

    spark = session("local[2]")
    frame = spark.read.parquet(*[str(f) for f in committed_files(dataset)])
    assert engine.frame_engine(frame) == "spark"
    duck = analyze.attribute(dataset)
    got = analyze.attribute(frame)
    _assert_same_findings(got, duck)
    assert analyze.report(frame).to_dict()["totals"]["requests"] == 5000
    left = [t.name for t in spark.catalog.listTables() if t.name.startswith("blameset_")]
    assert left == []  # the user's session keeps none of the engine's views


def test_something_that_holds_no_spans_is_refused_by_name() -> None:
    """A value that is neither polars, a path, a relation nor a Spark DataFrame (a pandas frame,
    whose column names would read as paths) is a TypeError that names its type."""
    assert engine.frame_engine(pl.DataFrame()) is None
    import pandas as pd

    for value, name in [
        (42, "builtins.int"),
        ({"spans": 1}, "builtins.dict"),
        (pd.DataFrame({"trace_id": ["a"]}), "pandas.DataFrame"),
    ]:
        with pytest.raises(TypeError, match=f"a polars frame, not {name}"):
            analyze.report(value)  # type: ignore[arg-type]
