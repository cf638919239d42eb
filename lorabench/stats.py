"""Aggregation over seeds with honest noise: mean, std, n and a 95% Student-t interval.

No scipy: the two-sided 95% t quantiles for small samples are a table (they are what
matters here: a handful of seeds); beyond 30 degrees of freedom the normal quantile is
within 4% of t.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

# t_{0.975, df} for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_critical(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom should be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else statistics.NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Agg:
    """A metric over seeds. ``half`` is the 95% interval's half-width (None for n < 2)."""

    mean: float
    std: float | None
    n: int
    half: float | None

    @property
    def lo(self) -> float:
        return self.mean - (self.half or 0.0)

    @property
    def hi(self) -> float:
        return self.mean + (self.half or 0.0)

    def overlaps(self, other: Agg) -> bool:
        """True when the two 95% intervals overlap (both need n >= 2 to mean anything)."""
        return self.lo <= other.hi and other.lo <= self.hi


def aggregate(values: Iterable[float | None]) -> Agg | None:
    """Mean, sample std, n and t-interval of the finite values; None when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Agg(mean, None, 1, None)
    std = statistics.stdev(xs)
    return Agg(mean, std, len(xs), t_critical(len(xs) - 1) * std / math.sqrt(len(xs)))
