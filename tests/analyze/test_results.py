"""The result types' views: JSON without inf or nan, and the table and text of no findings."""

from __future__ import annotations

import json
import math

import polars as pl

from blameset.analyze._results import Attribution, Finding, finite


def test_finite_clamps_infinities_and_zeroes_nan() -> None:
    """JSON has no inf or nan: they become +-1e12 and 0, finite values pass unchanged."""
    assert [finite(x) for x in (math.inf, -math.inf, math.nan, 1.25)] == [1e12, -1e12, 0.0, 1.25]


def test_a_finding_from_a_zero_baseline_is_valid_json() -> None:
    """An infinite effect (a rate from 0) is written as a large finite number."""
    finding = Finding(
        metric="error_rate",
        baseline="a",
        candidate="b",
        components=["code"],
        verdict="regression",
        effect=math.inf,
        ci=(2.0, math.inf),
        p_value=0.001,
        q_value=0.01,
        naive_effect=math.nan,
        scope={},
        n_baseline=100,
        n_candidate=100,
        baseline_value=0.0,
        candidate_value=0.1,
    )
    document = json.loads(json.dumps(finding.to_dict(), allow_nan=False))
    assert (document["effect"], document["ci"], document["naive_effect"]) == (1e12, [2.0, 1e12], 0)


def test_no_findings_read_as_an_empty_table_and_a_one_line_summary() -> None:
    """An attribution with nothing found has an empty findings table and a one-line repr."""
    empty = Attribution([], {}, [], pl.DataFrame(), {}, [], {})
    assert empty.to_polars().columns == ["metric", "verdict"]
    assert empty.to_polars().height == 0
    assert repr(empty) == "Attribution: 0 findings, 0 version_sets, 0 episodes, 0 tests"
