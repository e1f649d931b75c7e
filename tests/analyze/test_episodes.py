"""Cohorts and episodes read from a route's request sequence, on sequences built by hand."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from blameset.analyze._episodes import _Sequence, changes, cohorts, episodes, timeline

PROMPTS = {"a": "outline@v1", "b": "outline@v2", "c": "outline@v2"}
MODELS = {"a": "gpt-4o", "b": "gpt-4o", "c": "gpt-5"}


def frame(ids: list[str], route: str = "/v1/chat") -> pl.DataFrame:
    """One request a second on ``route``, served by the version_sets ``ids`` in order."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "start": [t0 + timedelta(seconds=i) for i in range(len(ids))],
            "route": [route] * len(ids),
            "version_set": [f"vs-{v}" for v in ids],
            "version_set_id": ids,
            "version.prompt": [PROMPTS[v] for v in ids],
            "version.model": [MODELS[v] for v in ids],
        }
    )


def read(requests: pl.DataFrame) -> list[tuple[str, str, str, list[str]]]:
    found = episodes(requests, cohorts(requests, ["version.model", "version.prompt"]))
    return [(e.kind, e.baseline, e.candidate, e.components) for e in found]


def test_a_version_set_that_takes_over_is_a_cutover_of_what_it_changed() -> None:
    """A version_set taking all of a route's traffic is a cutover naming the changed component."""
    assert read(frame(["a"] * 1000 + ["b"] * 1000)) == [("cutover", "a", "b", ["prompt"])]


def test_a_small_share_beside_the_incumbent_is_a_canary() -> None:
    """One request in ten from a new version_set, the incumbent serving the rest, is a canary."""
    ids = ["a"] * 1000 + ["b" if i % 10 == 0 else "a" for i in range(2000)]
    assert read(frame(ids)) == [("canary", "a", "b", ["prompt"])]


def test_an_even_split_is_an_ab_episode() -> None:
    """Half the traffic to each of two version_sets is an A/B split."""
    ids = ["a"] * 1000 + ["b" if i % 2 else "a" for i in range(2000)]
    assert read(frame(ids)) == [("ab", "a", "b", ["prompt"])]


def test_an_earlier_version_set_taking_over_again_is_a_rollback() -> None:
    """The incumbent coming back after a cutover is a rollback episode of its own."""
    ids = ["a"] * 1200 + ["b"] * 1200 + ["a"] * 1200
    assert read(frame(ids)) == [
        ("cutover", "a", "b", ["prompt"]),
        ("rollback", "b", "a", ["prompt"]),
    ]


def test_a_successor_is_compared_with_the_version_set_it_differs_least_from() -> None:
    """Of the version_sets serving before it, the baseline is the one with fewest changes."""
    ids = ["a"] * 1000 + ["b" if i % 2 else "a" for i in range(1000)] + ["c"] * 1000
    assert read(frame(ids))[-1] == ("cutover", "b", "c", ["model"])


def test_changes_list_the_components_that_differ_with_both_values() -> None:
    """changes() maps each differing component to its (before, after) values, and no other."""
    requests = frame(["a"] * 10 + ["b"] * 10)
    seen = cohorts(requests, ["version.model", "version.prompt"])
    assert changes(seen["a"], seen["b"]) == {"prompt": ("outline@v1", "outline@v2")}
    assert changes(seen["a"], seen["a"]) == {}


def test_requests_all_at_one_instant_have_no_episode() -> None:
    """With no spread in time there is no order to read a rollout from."""
    requests = frame(["a"] * 500 + ["b"] * 500).with_columns(start=pl.col("start").min())
    assert read(requests) == []


def test_timeline_shares_add_up_to_one_per_bucket_and_route() -> None:
    """Each bucket's version_set shares on a route add up to 1."""
    shares = timeline(frame(["a"] * 1000 + ["b" if i % 4 == 0 else "a" for i in range(1000)]))
    totals = shares.group_by("time", "route").agg(pl.col("share").sum())["share"].to_list()
    assert all(abs(t - 1.0) < 1e-12 for t in totals)


@settings(max_examples=80, deadline=None)
@given(
    given_ids=st.lists(st.sampled_from(["v1", "v2", "v3", "unversioned", None]), max_size=50),
    lo=st.integers(-5, 55),
    width=st.integers(0, 60),
    categorical=st.booleans(),
)
def test_a_route_sequence_counts_as_a_counter_of_its_ids_would(
    given_ids: list[str | None], lo: int, width: int, categorical: bool
) -> None:
    """The coded sequence episodes read counts any stretch of requests, and finds first
    appearances, exactly as Counter and a first-seen dict of the ids themselves, order and all
    (a missing id is ``unversioned``, as the roll-up writes it; text or categorical ids)."""
    dtype = pl.Categorical if categorical else pl.String
    sequence = _Sequence.of(pl.Series(given_ids, dtype=dtype))
    ids = [i if i is not None else "unversioned" for i in given_ids]
    expected = Counter(ids[max(lo, 0) : lo + width])
    got = sequence.counts(lo, lo + width)
    assert list(got.items()) == list(expected.items())
    assert got.most_common(1) == expected.most_common(1)
    first: dict[str, int] = {}
    for i, vid in enumerate(ids):
        first.setdefault(vid, i)
    assert sequence.first_appearances() == sorted(first.items(), key=lambda kv: kv[1])
