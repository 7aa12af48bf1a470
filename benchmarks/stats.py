"""Percentiles and the `Figure` type: a value with its spread over repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One reported number and, when it was repeated, the min..max of the repetitions."""

    value: float
    low: float | None = None
    high: float | None = None

    def to_json(self) -> dict[str, float | None]:
        """A plain dictionary for the JSON record."""
        return {"value": self.value, "low": self.low, "high": self.high}


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    below = math.floor(rank)
    above = math.ceil(rank)
    if below == above:
        return ordered[below]
    weight = rank - below
    return ordered[below] * (1.0 - weight) + ordered[above] * weight


def across_reps(reps: Sequence[Sequence[float]], q: float) -> Figure:
    """Percentile ``q`` of each repetition: their median, and their min..max as the spread.

    The median of the repetitions, rather than a percentile of all samples pooled, keeps one
    disturbed repetition (a burst of slow disk flushes on a shared machine) from moving the
    figure; the spread still shows it.
    """
    return median_of([percentile(rep, q) for rep in reps if rep])


def per_step(
    reps_many: Sequence[Sequence[float]], reps_few: Sequence[Sequence[float]], steps: int
) -> Figure:
    """(p50(many) - p50(few)) / steps for each repetition: their median and min..max."""
    return median_of(
        [
            (percentile(many, 50) - percentile(few, 50)) / steps
            for many, few in zip(reps_many, reps_few, strict=True)
        ]
    )


def median_of(values: Sequence[float]) -> Figure:
    """The median of repeated single measurements (e.g. throughput) and their min..max."""
    return Figure(statistics.median(values), min(values), max(values))
