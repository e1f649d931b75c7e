"""The cost decomposition (LMDI) on a seeded mix shift and on a table small enough to check by
hand: its terms add up to the change, and a change lands on the term that caused it."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from bench.scenarios import generate
from blameset.analyze import decompose, request_table


def test_cost_decomposition_puts_a_mix_shift_in_the_mix_term() -> None:
    """Traffic moving to a dearer route lands in the mix term, not in tokens or price."""
    cost = decompose(request_table(generate("mix_shift", 8000, seed=3).lazy()))
    terms = cost["terms"]
    assert abs(terms["mix"]) > 5 * max(abs(terms["tokens_per_call"]), abs(terms["price"]))
    assert sum(terms.values()) == pytest.approx(cost["change_usd"], abs=1e-9)


def test_cost_terms_add_up_when_cost_comes_without_tokens() -> None:
    """Cost reported without tokens or LLM calls still splits exactly, with no residual."""
    frame = pl.DataFrame(
        {
            "start": [datetime(2026, 11, 1, h, tzinfo=UTC) for h in (1, 2, 13, 14)],
            "route": ["/a", "/b", "/a", "/c"],
            "llm_calls": [1, 0, 1, 2],
            "input_tokens": [0, 0, 200, 50],
            "output_tokens": [0, 0, 100, 50],
            "cost_usd": [2.0, 1.0, 4.0, 3.0],
        }
    )
    windows = (
        (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 12, tzinfo=UTC)),
        (datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)),
    )
    cost = decompose(frame, windows=windows)
    assert cost["change_usd"] == pytest.approx(4.0)
    assert sum(cost["terms"].values()) == pytest.approx(4.0)
    assert cost["residual_usd"] == pytest.approx(0.0, abs=1e-12)


def test_window_costs_do_not_depend_on_the_order_of_the_strata() -> None:
    """A window's cost is the exactly rounded sum of its strata's, whatever order they come in."""
    frame = pl.DataFrame(
        {
            "start": [datetime(2026, 11, 1, h, tzinfo=UTC) for h in (1, 2, 3, 13)],
            "route": ["/a", "/b", "/c", "/a"],
            "llm_calls": [1, 1, 1, 1],
            "input_tokens": [10, 10, 10, 10],
            "output_tokens": [10, 10, 10, 10],
            "cost_usd": [0.1, 0.2, 0.3, 0.5],
        }
    )
    # 0.1 + 0.2 + 0.3 is 0.6000000000000001 added left to right, 0.6 added right to left
    for rows in (frame, frame.reverse(), frame.sample(fraction=1.0, shuffle=True, seed=7)):
        assert decompose(rows)["before"]["cost_usd"] == 0.6
