"""Comparison within strata: which strata and metrics a run compares, and a mix shift that the
stratified comparison sees through while the naive pooled ratio does not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blameset.analyze._compare import (
    Sample,
    Settings,
    _column,
    column_values,
    compare,
    metric_names,
    strata_columns,
)

SETTINGS = Settings(
    alpha=0.05,
    min_effect=0.05,
    min_rate_delta=0.005,
    min_n=30,
    min_stratum=5,
    replicates=200,
    seed=0,
)
CONTEXT = {"baseline": "a", "candidate": "b", "episode": "ab", "routes": ["/fast", "/slow"]}


def requests(fast: int, slow: int, tenants: int = 1) -> pl.DataFrame:
    """Successful requests: ``fast`` at 100 ms on /fast, ``slow`` at 1000 ms on /slow."""
    n = fast + slow
    return pl.DataFrame(
        {
            "route": ["/fast"] * fast + ["/slow"] * slow,
            "tenant_id": [f"t{i % tenants}" for i in range(n)],
            "latency_ms": [100.0] * fast + [1000.0] * slow,
            "final_status": ["success"] * n,
            "error_code": [None] * n,
        },
        schema_overrides={"error_code": pl.String},
    )


def test_default_strata_are_the_route_and_a_few_tenants() -> None:
    """By default the route, and the tenant too when there are 2 to 12 of them."""
    assert strata_columns(requests(10, 10, tenants=1), None) == ["route"]
    assert strata_columns(requests(10, 10, tenants=3), None) == ["route", "tenant_id"]
    assert strata_columns(requests(20, 20, tenants=13), None) == ["route"]


def test_strata_by_name_and_an_unknown_name_says_what_is_known() -> None:
    """``tenant`` means the tenant column; a name no column has is an error listing the known."""
    frame = requests(10, 10).with_columns(pl.lit("v1").alias("version.prompt"))
    assert strata_columns(frame, ["tenant", "prompt"]) == ["tenant_id", "version.prompt"]
    with pytest.raises(ValueError, match=r"cannot stratify by 'colour'; known: .*prompt"):
        strata_columns(frame, ["colour"])


def test_error_code_rates_are_tested_only_beside_a_second_code() -> None:
    """With one error code its rate is the error rate again; with two each code gets a rate."""
    frame = requests(40, 0).with_columns(
        final_status=pl.lit("failure"),
        error_code=pl.Series(["timeout"] * 20 + ["rate_limit"] * 20),
    )
    one = metric_names(frame.with_columns(error_code=pl.lit("timeout")), 10)
    assert not [m for m in one if m.startswith("error_rate.")]
    two = metric_names(frame, 10)
    assert [m for m in two if m.startswith("error_rate.")] == [
        "error_rate.rate_limit",
        "error_rate.timeout",
    ]


def test_a_mix_shift_is_no_effect_within_strata() -> None:
    """Same latency per route, more slow-route traffic: adjusted ratio 1, the naive one not."""
    base = Sample.of(requests(900, 100), ["route"])
    cand = Sample.of(requests(100, 900), ["route"])
    (test,) = compare(base, cand, ["latency_ms.mean"], SETTINGS, np.random.default_rng(0), CONTEXT)
    assert test.ratio.point == pytest.approx(1.0)
    assert test.naive == pytest.approx(910.0 / 190.0)
    assert (test.n_baseline, test.n_candidate) == (1000, 1000)
    assert test.strata == [("/fast",), ("/slow",)]


def test_a_metric_the_data_does_not_have_is_not_tested() -> None:
    """A column that is zero on both sides (no tool time here) yields no test."""
    base = Sample.of(requests(500, 500).with_columns(tool_ms=pl.lit(0.0)), ["route"])
    cand = Sample.of(requests(500, 500).with_columns(tool_ms=pl.lit(0.0)), ["route"])
    assert compare(base, cand, ["tool_ms.mean"], SETTINGS, np.random.default_rng(0), CONTEXT) == []


_ROWS = st.lists(
    st.tuples(
        st.sampled_from(["/a", "/b", None]),
        st.sampled_from(["t1", "t2"]),
        st.sampled_from(["v1", "v2"]),
        st.one_of(st.none(), st.floats(0, 1e4)),
        st.sampled_from(["success", "failure", None]),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows=_ROWS, latency_first=st.booleans())
def test_a_sample_taken_by_row_numbers_is_the_window_it_stands_for(
    rows: list[tuple[str | None, str, str, float | None, str | None]], latency_first: bool
) -> None:
    """Sample.take (labels held, metrics read from the table by row number) gives every stratum
    the rows, values and order a sample of the filtered window itself has."""
    frame = pl.DataFrame(
        rows,
        schema={
            "route": pl.Categorical,
            "tenant_id": pl.String,
            "version_set_id": pl.String,
            "latency_ms": pl.Float64,
            "final_status": pl.String,
        },
        orient="row",
    ).with_columns(error_code=pl.lit(None, pl.String))
    if latency_first:  # the column order of the table does not matter
        frame = frame.select("latency_ms", pl.exclude("latency_ms"))
    where = pl.col("version_set_id") == "v1"
    strata = ["route", "tenant_id"]
    taken = Sample.take(frame, where, strata, ["route", "tenant_id", "final_status", "error_code"])
    whole = Sample.of(frame.filter(where), strata)
    assert taken.keys == whole.keys and taken.height == whole.height
    for key in whole.keys:
        for metric in ("latency_ms", "error_rate"):
            got, expected = _column(taken, key, metric), _column(whole, key, metric)
            assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_a_rate_over_an_all_null_status_column_is_zero() -> None:
    """A frame whose error codes are all missing (a column of no type) has rates of 0, not an
    error."""
    part = pl.DataFrame({"final_status": ["success", "failure"], "error_code": [None, None]})
    values, mask = column_values(part, "error_rate.timeout")
    assert values.tolist() == [0.0, 0.0] and mask.tolist() == [True, True]
    assert column_values(part, "error_rate")[0].tolist() == [0.0, 1.0]
