"""Summaries of measured intervals: count, median and nearest-rank percentiles."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank (no interpolation)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass(frozen=True)
class Summary:
    """Seconds: ``n`` samples, their median, p90 and p99 (p99 is the max below 100)."""

    n: int
    median: float
    p90: float
    p99: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        """The summary of ``values`` (at least one)."""
        return cls(
            n=len(values), median=statistics.median(values), p90=percentile(values, 0.9),
            p99=percentile(values, 0.99), low=min(values), high=max(values),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        return asdict(self)
