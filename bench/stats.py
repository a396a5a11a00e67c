"""Small statistics shared by the helpers and the report: percentiles, medians, spreads."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of an already sorted sequence; NaN when empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def median(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def spread(values: Iterable[float]) -> float:
    """(max - min) / median over the repeats, as a fraction; NaN for fewer than two values."""
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        return math.nan
    mid = statistics.median(finite)
    return (max(finite) - min(finite)) / mid if mid else math.nan
