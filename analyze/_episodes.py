"""Cohorts and episodes (step 1 of attribution): each version_set as the data saw it, and each
time one took traffic from another on a route (a cutover, a canary, an A/B split or a rollback),
with the components that differ between the two; and the traffic share timeline behind them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt
import polars as pl

from ._requests import NS, UNVERSIONED, bounds, from_ns, services_in
from ._results import Cohort, Episode

__all__ = ["changes", "cohorts", "episodes", "other_path", "services_of", "timeline"]


def cohorts(frame: pl.DataFrame, versions: list[str]) -> dict[str, Cohort]:
    """Every version_set of the request table, in order of first appearance; its components are
    the most common value of each ``version.*`` column among its requests."""
    if frame.is_empty():
        return {}
    agg = frame.group_by("version_set_id").agg(
        pl.col("version_set").drop_nulls().first(),
        pl.col("start").min().alias("first"),
        pl.col("start").max().alias("last"),
        pl.len().alias("n"),
        pl.col("route").unique().sort().alias("routes"),
        *[pl.col(v).drop_nulls().mode().first().alias(v) for v in versions],
    )
    out = {}
    others = services_in(frame)
    for row in agg.sort("first", "version_set_id").iter_rows(named=True):
        components = {v.removeprefix("version."): row[v] for v in versions if row[v] is not None}
        crossed = tuple(s for s in others if any(k.startswith(f"{s}.") for k in components))
        out[row["version_set_id"]] = Cohort(
            id=row["version_set_id"],
            version_set=row["version_set"],
            components=components,
            first_seen=row["first"],
            last_seen=row["last"],
            requests=row["n"],
            routes=tuple(row["routes"]),
            services=crossed,
        )
    return out


def changes(a: Cohort, b: Cohort) -> dict[str, tuple[str | None, str | None]]:
    """The components whose values differ from ``a`` to ``b``: (value in a, value in b)."""
    keys = sorted(set(a.components) | set(b.components))
    return {
        k: (a.components.get(k), b.components.get(k))
        for k in keys
        if a.components.get(k) != b.components.get(k)
    }


def other_path(a: Cohort, b: Cohort, services: frozenset[str]) -> bool:
    """Whether the two version_sets' requests crossed different services: one names components
    of a service (``worker.code``) the other does not. Such a pair is no version change (a route
    that only sometimes reaches the worker), and is compared as none."""
    for service in services:
        prefix = f"{service}."
        if any(k.startswith(prefix) for k in a.components) != any(
            k.startswith(prefix) for k in b.components
        ):
            return True
    return False


def services_of(cohorts: dict[str, Cohort]) -> frozenset[str]:
    """The other services cohorts' components are qualified by (recorded on the cohorts)."""
    return frozenset(s for c in cohorts.values() for s in c.services)


def _closest(vid: str, before: Counter[str], cohorts: dict[str, Cohort]) -> str:
    """The baseline of a version_set that appears: among those serving just before it (at least
    5% of those requests), the one on the same path through the services that it differs from in
    the fewest components, then the busiest. A canary's successor (canary + new code) is
    compared with the canary, not the incumbent."""
    total = sum(before.values())
    live = [v for v, n in before.items() if n >= 0.05 * total and v != UNVERSIONED] or [
        before.most_common(1)[0][0]
    ]
    if vid == UNVERSIONED or vid not in cohorts:
        return max(live, key=lambda v: before[v])
    services = services_of(cohorts)

    def distance(v: str) -> int:
        if v not in cohorts or other_path(cohorts[v], cohorts[vid], services):
            return 99
        return len(changes(cohorts[v], cohorts[vid]))

    return min(live, key=lambda v: (distance(v), -before[v]))


class _Found:
    """Episodes gathered over the routes: one per (baseline, candidate) pair over all routes; its
    kind is the one seen on the route with the most traffic (a canary on a busy route may look
    like an A/B on a quiet one)."""

    def __init__(self, cohorts: dict[str, Cohort]) -> None:
        self.cohorts = cohorts
        self.services = services_of(cohorts)
        self.found: dict[tuple[str, str], Episode] = {}
        self.weight: dict[tuple[str, str], int] = {}

    def add(self, kind: str, base: str, cand: str, at_ns: int, route: str, n: int) -> None:
        if base == cand or UNVERSIONED in (base, cand):
            return
        if other_path(self.cohorts[base], self.cohorts[cand], self.services):
            return  # requests through other services: not one version_set replacing another
        key = (base, cand)
        if key in self.found:
            episode = self.found[key]
            episode.routes = sorted({*episode.routes, route})
            episode.at = min(episode.at, from_ns(at_ns))
            if n > self.weight[key]:
                episode.kind, self.weight[key] = kind, n
        else:
            moved = changes(self.cohorts[base], self.cohorts[cand])
            self.found[key] = Episode(kind, base, cand, from_ns(at_ns), [route], moved)
            self.weight[key] = n

    def episodes(self) -> list[Episode]:
        return sorted(self.found.values(), key=lambda e: (e.at, e.baseline, e.candidate))


def episodes(frame: pl.DataFrame, cohorts: dict[str, Cohort], *, block: int = 400) -> list[Episode]:
    """Episodes from each route's request sequence: where a version_set first appears (its
    baseline is the dominant one in the requests just before), and where the dominant version_set
    changes back to one that dominated earlier (a rollback). The sequence is read as integer
    codes, never as one string per request (13.6M of them at 30M spans)."""
    t0, t1 = bounds(frame)
    if t0 == t1:
        return []  # no spread in time: no order to read a rollout from
    found = _Found(cohorts)
    for (route,), part in (
        frame.select("route", "start", "version_set_id").partition_by("route", as_dict=True).items()
    ):
        sequence = _Sequence.of(part.get_column("version_set_id"))
        times = part["start"].dt.epoch("ns").to_numpy()
        _appearances(found, sequence, times, str(route), block)
        _rollbacks(found, sequence, times, str(route), block)
    return found.episodes()


class _Sequence:
    """One route's version_set ids in request order, as integer codes and their names. A
    missing id reads as ``unversioned``, as the request table's roll-up writes it."""

    def __init__(
        self, codes: npt.NDArray[np.int64], names: dict[int, str], firsts: npt.NDArray[np.int64]
    ) -> None:
        self.codes = codes
        self.names = names
        self.firsts = firsts
        """The index of each id's first request, in order."""

    @classmethod
    def of(cls, ids: pl.Series) -> _Sequence:
        labels = ids.fill_null(UNVERSIONED).cast(pl.Categorical)
        distinct = labels.unique()
        names = dict(
            zip(
                distinct.to_physical().cast(pl.Int64).to_list(),
                distinct.cast(pl.String).to_list(),
                strict=True,
            )
        )
        codes = labels.to_physical().cast(pl.Int64).to_numpy()
        firsts = np.flatnonzero(labels.is_first_distinct().to_numpy()).astype(np.int64)
        return cls(codes, names, firsts)

    def __len__(self) -> int:
        return len(self.codes)

    def counts(self, lo: int, hi: int) -> Counter[str]:
        """The ids of requests ``lo`` to ``hi`` counted, in the order each first appears there
        (the order a ``Counter`` of the ids themselves would have)."""
        part = self.codes[max(lo, 0) : hi]
        if not len(part):
            return Counter()
        present, first, n = np.unique(part, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        return Counter({self.names[int(present[j])]: int(n[j]) for j in order})

    def first_appearances(self) -> list[tuple[str, int]]:
        """Each id with the index of its first request, in that order."""
        return [(self.names[int(self.codes[i])], int(i)) for i in self.firsts]


def _appearances(
    found: _Found, sequence: _Sequence, times: npt.NDArray[np.int64], route: str, block: int
) -> None:
    """Where each version_set first appears on the route: what share of the next ``block``
    requests it takes from its baseline tells a cutover from a canary or an A/B split."""
    for vid, i in sequence.first_appearances():
        before = sequence.counts(i - block, i)
        if not before:
            continue
        base = _closest(vid, before, found.cohorts)
        after = sequence.counts(i, i + block)
        ours, theirs = after[vid], after[base]
        share = ours / (ours + theirs)  # does the baseline keep serving beside it?
        kind = "cutover" if share >= 0.8 else ("canary" if share <= 0.35 else "ab")
        found.add(kind, base, vid, int(times[i]), route, len(sequence))


def _rollbacks(
    found: _Found, sequence: _Sequence, times: npt.NDArray[np.int64], route: str, block: int
) -> None:
    """The dominant version_set per block, run-length encoded: one that dominates again after
    another took over is a rollback to it."""
    dominant: list[tuple[str, int]] = []
    for start in range(0, len(sequence), block):
        counts = sequence.counts(start, start + block)
        vid, n = counts.most_common(1)[0]
        if n >= 0.6 * sum(counts.values()) and (not dominant or dominant[-1][0] != vid):
            dominant.append((vid, start))
    for j in range(1, len(dominant)):
        vid, start = dominant[j]
        if any(d[0] == vid for d in dominant[: j - 1]):
            at = int(times[start])
            found.add("rollback", dominant[j - 1][0], vid, at, route, len(sequence))


def timeline(frame: pl.DataFrame, buckets: int = 48) -> pl.DataFrame:
    """Each version_set's share of its route's requests per time bucket."""
    if frame.is_empty():
        return pl.DataFrame(
            schema={
                "time": pl.Datetime("ns", "UTC"),
                "route": pl.String,
                "version_set_id": pl.String,
            }
        )
    t0, t1 = bounds(frame)
    width = max((t1 - t0) // buckets // NS, 1)
    return (  # grouped by the labels as they are, made text after (not once per request)
        frame.lazy()
        .group_by(pl.col("start").dt.truncate(f"{width}s").alias("time"), "route", "version_set_id")
        .agg(requests=pl.len())
        .with_columns(pl.col("route", "version_set_id").cast(pl.String))
        .with_columns(share=pl.col("requests") / pl.col("requests").sum().over("time", "route"))
        .sort("time", "route", "version_set_id")
        .collect()
    )
