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

# Fewer seeds than this: show the observed min-max, not a t interval (see Agg.band).
MIN_T_SEEDS = 3

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
    """A metric over seeds. ``half`` is the 95% interval's half-width (None for n < 2).

    ``min``/``max`` are the observed extremes: with fewer than :data:`MIN_T_SEEDS` seeds a
    Student-t interval is wider than anything measured (two seeds: 12.7 standard errors),
    so :meth:`band` shows the range seen instead.
    """

    mean: float
    std: float | None
    n: int
    half: float | None
    min: float | None = None
    max: float | None = None

    @property
    def lo(self) -> float:
        return self.mean - (self.half or 0.0)

    @property
    def hi(self) -> float:
        return self.mean + (self.half or 0.0)

    def band(self) -> tuple[float, float, str]:
        """(low, high, kind) to show around the mean: ``t95`` for n >= 3, ``minmax`` for 2, ``single`` for 1."""
        if self.n >= MIN_T_SEEDS and self.half is not None:
            return self.mean - self.half, self.mean + self.half, "t95"
        if self.n >= 2 and self.min is not None and self.max is not None:
            return self.min, self.max, "minmax"
        return self.mean, self.mean, "single"

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
        return Agg(mean, None, 1, None, xs[0], xs[0])
    std = statistics.stdev(xs)
    return Agg(mean, std, len(xs), t_critical(len(xs) - 1) * std / math.sqrt(len(xs)), min(xs), max(xs))
