"""Log-bucketed histograms with a fixed relative accuracy (DDSketch's mapping): a value ``x > 0``
falls in bucket ``ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``, and every value of
bucket ``i`` lies within ``a`` (relative) of the bucket's representative ``2 gamma^i / (gamma +
1)``. So a quantile read off the counts is within ``a`` of the exact one, whatever the data's
range, and sketches of groups, strata or time buckets merge by adding counts. The engine computes
the bucket index in SQL (:func:`index_sql`); Python reads quantiles off the counts
(:class:`Sketch`).

Values at or below :data:`MIN_VALUE` (zero durations, zero tokens) share one bucket, read as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ACCURACY", "MIN_VALUE", "ZERO_BUCKET", "Sketch", "gamma", "index_sql", "indexes"]

ACCURACY = 0.01
"""Relative accuracy of every quantile read off a sketch (1%)."""

MIN_VALUE = 1e-9
"""Values at or below this (0 ms, 0 tokens) go to :data:`ZERO_BUCKET`."""

ZERO_BUCKET = -(2**31)
"""The bucket index of values at or below :data:`MIN_VALUE`; read as 0."""


def gamma(accuracy: float = ACCURACY) -> float:
    if not 0 < accuracy < 1:
        raise ValueError(f"a sketch's relative accuracy is between 0 and 1, not {accuracy}")
    return (1 + accuracy) / (1 - accuracy)


def index_sql(expr: str, accuracy: float = ACCURACY) -> str:
    """The bucket index of ``expr`` in SQL both engines accept (NULL stays NULL)."""
    ln_gamma = math.log(gamma(accuracy))
    return (
        f"CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} > {MIN_VALUE!r} "
        f"THEN CAST(CEIL(LN({expr}) / {ln_gamma!r}) AS BIGINT) ELSE {ZERO_BUCKET} END"
    )


def indexes(values: npt.ArrayLike, accuracy: float = ACCURACY) -> npt.NDArray[np.int64]:
    """The bucket indexes of values, as :func:`index_sql` computes them."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, ZERO_BUCKET, dtype=np.int64)
    positive = x > MIN_VALUE
    out[positive] = np.ceil(np.log(x[positive]) / math.log(gamma(accuracy))).astype(np.int64)
    return out


@dataclass(frozen=True)
class Sketch:
    """Counts per bucket index (sorted, no repeats); merge by adding, read quantiles."""

    index: npt.NDArray[np.int64]
    count: npt.NDArray[np.float64]
    accuracy: float = ACCURACY

    @classmethod
    def of(
        cls,
        index: Iterable[int] | npt.NDArray[np.int64],
        count: Iterable[float] | npt.NDArray[np.float64] | None = None,
        accuracy: float = ACCURACY,
    ) -> Sketch:
        """A sketch of bucket indexes with their counts (1 each when not given), repeats
        added up."""
        idx = np.asarray(list(index) if not isinstance(index, np.ndarray) else index, np.int64)
        weights = np.ones(len(idx)) if count is None else np.asarray(list(count), dtype=np.float64)
        keys, inverse = np.unique(idx, return_inverse=True)
        counts = np.bincount(inverse, weights=weights, minlength=len(keys)).astype(np.float64)
        return cls(keys, counts, accuracy)

    @classmethod
    def of_values(cls, values: npt.ArrayLike, accuracy: float = ACCURACY) -> Sketch:
        return cls.of(indexes(values, accuracy), accuracy=accuracy)

    @property
    def n(self) -> float:
        return float(self.count.sum())

    def merge(self, other: Sketch) -> Sketch:
        if other.accuracy != self.accuracy:
            raise ValueError("sketches of different accuracies do not merge")
        return Sketch.of(
            np.concatenate([self.index, other.index]),
            np.concatenate([self.count, other.count]),
            self.accuracy,
        )

    def values(self) -> npt.NDArray[np.float64]:
        """Each bucket's representative value (within ``accuracy`` of every value in it)."""
        g = gamma(self.accuracy)
        rep = 2 * np.power(g, self.index.astype(np.float64)) / (g + 1)
        return np.where(self.index == ZERO_BUCKET, 0.0, rep)

    def quantile(self, q: float) -> float:
        """The value at rank ``q (n - 1)`` (the lower quantile: an observed value, as
        ``numpy.quantile(method="lower")`` picks it), within ``accuracy``; NaN when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile is between 0 and 1, not {q}")
        total = self.n
        if total <= 0:
            return math.nan
        rank = q * (total - 1)
        position = int(np.searchsorted(np.cumsum(self.count), math.floor(rank), side="right"))
        return float(self.values()[min(position, len(self.index) - 1)])

    def edges(self) -> npt.NDArray[np.float64]:
        """Bucket bounds over the sketch's range (``len(index) + 1`` edges of contiguous
        buckets from the lowest index to the highest), for histograms over shared bins."""
        g = gamma(self.accuracy)
        positive = self.index[self.index != ZERO_BUCKET]
        if not len(positive):
            return np.array([0.0, MIN_VALUE])
        lo, hi = int(positive.min()), int(positive.max())
        return np.concatenate([[0.0], np.power(g, np.arange(lo - 1, hi + 1, dtype=np.float64))])
