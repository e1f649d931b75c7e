"""The engine's sufficient statistics: log-bucketed sketches read quantiles within their stated
1% relative accuracy, merge by adding, and the engine's moments and sketches match what the
request table gives in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench.scenarios import generate
from blameset.analyze import engine as engines
from blameset.analyze._dataset import StagedDataset
from blameset.analyze._requests import LATENCY_METRICS, MEAN_METRICS
from blameset.analyze.engine.aggregates import Spec, aggregates
from blameset.analyze.engine.sketch import ACCURACY, Sketch, indexes

positive = st.floats(1e-6, 1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 400), elements=positive),
    q=st.floats(0, 1),
)
def test_a_sketch_quantile_is_within_one_percent_of_the_exact_one(
    values: np.ndarray, q: float
) -> None:
    """Any positive data, any q: the sketch's quantile is within 1% of numpy's lower one."""
    exact = float(np.quantile(values, q, method="lower"))
    got = Sketch.of_values(values).quantile(q)
    assert abs(got - exact) <= ACCURACY * exact * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(
    a=arrays(np.float64, st.integers(1, 200), elements=positive),
    b=arrays(np.float64, st.integers(1, 200), elements=positive),
)
def test_merged_sketches_are_the_sketch_of_the_union(a: np.ndarray, b: np.ndarray) -> None:
    """Merging two sketches gives the sketch of both samples together."""
    merged = Sketch.of_values(a).merge(Sketch.of_values(b))
    whole = Sketch.of_values(np.concatenate([a, b]))
    assert np.array_equal(merged.index, whole.index)
    assert np.array_equal(merged.count, whole.count)


def test_zeros_read_as_zero_and_an_empty_sketch_has_no_quantile() -> None:
    """Zero durations share one bucket read as 0; no values, no quantile."""
    assert Sketch.of_values([0.0, 0.0, 5.0]).quantile(0.5) == 0.0
    assert math.isnan(Sketch.of([]).quantile(0.5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        Sketch.of_values([1.0]).quantile(1.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agg")
    with StagedDataset(out) as staged:
        staged.write(generate("overlapping", 6000, seed=4))
        staged.commit()
    return out


def test_moments_are_the_request_tables_counts_and_sums(dataset: Path) -> None:
    """Per (version_set, route): the engine's counts, sums and sums of squares of every mean
    metric (latency ones over successful requests) are the request table's."""
    table = engines.request_table(dataset, "polars")
    with engines.open_engine(dataset) as engine:
        agg = aggregates(engine, Spec(by=("version_set_id", "route")))
    keys = ["version_set_id", "route"]
    got = agg.moments.group_by(keys).agg(pl.exclude("grp", "time_bucket").sum()).sort(keys)
    labelled = table.with_columns(pl.col(keys).cast(pl.String))
    for metric in MEAN_METRICS:
        rows = labelled.filter(pl.col(metric).is_not_null())
        if metric in LATENCY_METRICS:
            rows = rows.filter(pl.col("final_status") == "success")
        want = (
            rows.group_by(keys)
            .agg(
                n=pl.len(),
                s=pl.col(metric).cast(pl.Float64).sum(),
                ss=(pl.col(metric).cast(pl.Float64) ** 2).sum(),
            )
            .sort(keys)
        )
        joined = got.join(want, on=keys, how="left").with_columns(pl.col("n_right").fill_null(0))
        assert joined[f"{metric}.n"].to_list() == joined["n_right"].to_list(), metric
        assert np.allclose(joined[f"{metric}.sum"], joined["s"].fill_null(0.0), rtol=1e-9)
        assert np.allclose(joined[f"{metric}.sumsq"], joined["ss"].fill_null(0.0), rtol=1e-9)
    assert got["n"].sum() == table.height
    assert got["failures"].sum() == (table["final_status"] == "failure").sum()


def test_engine_sketches_give_each_cohorts_quantiles_within_one_percent(dataset: Path) -> None:
    """p50/p95/p99 of latency and p50/p95 of TTFT per version_set, read off the engine's
    sketches, are within 1% of the request table's exact (lower) quantiles."""
    table = engines.request_table(dataset, "polars").filter(pl.col("final_status") == "success")
    with engines.open_engine(dataset) as engine:
        agg = aggregates(engine, Spec(by=("version_set_id",)))
    for cohort in table["version_set_id"].cast(pl.String).unique().to_list():
        mine = table.filter(pl.col("version_set_id") == cohort)
        for metric, qs in (("latency_ms", (0.5, 0.95, 0.99)), ("ttft_ms", (0.5, 0.95))):
            values = mine[metric].drop_nulls().to_numpy()
            sketch = agg.sketch(metric, pl.col("version_set_id") == cohort)
            assert sketch.n == len(values)
            for q in qs:
                exact = float(np.quantile(values, q, method="lower"))
                assert abs(sketch.quantile(q) - exact) <= ACCURACY * exact * (1 + 1e-9)


def test_random_groups_are_the_trace_key_mod_groups_and_cover_every_request(
    dataset: Path,
) -> None:
    """Every request falls in one of the 64 groups, and the groups are of like size."""
    with engines.open_engine(dataset) as engine:
        agg = aggregates(engine, Spec(by=("version_set_id",), groups=64))
    sizes = agg.moments.group_by("grp").agg(pl.col("n").sum())
    assert sizes.height == 64
    assert sizes["grp"].min() == 0 and sizes["grp"].max() == 63
    assert sizes["n"].max() < 3 * sizes["n"].min()


def test_sql_and_python_put_a_value_in_the_same_bucket(dataset: Path) -> None:
    """The engine's bucket of each request's latency is :func:`indexes`' (away from edges)."""
    table = engines.request_table(dataset, "polars").filter(pl.col("final_status") == "success")
    with engines.open_engine(dataset) as engine:
        agg = aggregates(engine, Spec(by=()))
    got = agg.sketches.filter(pl.col("metric") == "latency_ms")
    want = Sketch.of(indexes(table["latency_ms"].to_numpy()))
    merged = got.group_by("bucket_index").agg(pl.col("n").sum()).sort("bucket_index")
    assert np.array_equal(merged["bucket_index"].to_numpy(), want.index)
    assert np.array_equal(merged["n"].to_numpy(), want.count.astype(np.int64))
