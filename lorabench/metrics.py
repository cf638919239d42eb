"""Metric registry: every reported number is declared once, with its direction.

A metric knows whether higher is better, how it is shown, how seeds are aggregated,
whether it is a quality figure (from the task) or a cost figure (from the profile),
its unit and the default tolerance ``lorabench check`` allows before calling a change
a regression. Leaderboards, plots, ``compare`` and ``check`` read all of that from
here and never hard-code it (lm-eval-harness's ``MetricSpec`` idea).

Registering a new profile figure (say ``mfu``) is one line::

    register_metric("mfu", higher_is_better=True, kind="cost", description="model FLOPs utilisation")

Its value is then read from the record's ``profile.mfu`` (``Profile.figure``). No torch import: the report
side uses this too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorabench.errors import UsageError
from lorabench.record_data import Profile, Record
from lorabench.registry import Registry
from lorabench.vocab import MiB

KINDS = ("quality", "cost")
AGGREGATIONS = ("mean",)

# Where the "peak memory" a user budgets for comes from, best first: NVML per-process on
# GPU (includes the CUDA context), then the allocator's reserved pool, then host RSS.
MEM_PRIORITY = ("nvml", "reserved", "rss")


@dataclass(frozen=True)
class Metric:
    """How one metric is named, compared, aggregated, shown and gated."""

    name: str
    higher_is_better: bool
    description: str
    kind: str = "quality"  # "quality" (task metric) or "cost" (profile figure)
    fmt: str = "sig4"  # a Python format spec (",.0f", ".3f"), or "sigN": N significant digits, never scientific
    unit: str = ""
    aggregation: str = "mean"
    tol_abs: float | None = None  # default check tolerance, absolute ...
    tol_rel: float | None = None  # ... or relative (a fraction of the baseline value)
    source: Callable[[Profile], float | None] | None = None  # profile -> value (cost figures)
    noise_rel: float | None = None  # single-seed differences below this share are measurement noise

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind should be one of {KINDS}, got {self.kind!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"metric {self.name!r}: aggregation should be one of {AGGREGATIONS}")

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def header(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def sort_key(self, value: float | None) -> float:
        """Ascending sort key that puts the best value first and missing values last."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf
        return -value if self.higher_is_better else value

    def tolerance(self, base: float) -> float | None:
        """The default allowed change around ``base``; None: not gated by default."""
        tols = []
        if self.tol_abs is not None:
            tols.append(self.tol_abs)
        if self.tol_rel is not None:
            tols.append(self.tol_rel * abs(base))
        return max(tols) if tols else None

    def noise(self, base: float) -> float:
        """How far apart two single-seed values must be to count as different (Pareto, compare)."""
        tol = self.tolerance(base)
        if tol is None and self.noise_rel is not None:
            tol = self.noise_rel * abs(base)
        return tol or 0.0

    def value(self, profile: Profile) -> float | None:
        """A cost figure's value from a record's profile (None when absent)."""
        v = self.source(profile) if self.source else profile.figure(self.name)
        return None if v is None else float(v)

    def _decimals(self, ref: float) -> int | None:
        if not self.fmt.startswith("sig"):
            return None
        digits = int(self.fmt[3:])
        if ref == 0 or not math.isfinite(ref):
            return digits - 1
        return max(0, digits - 1 - math.floor(math.log10(abs(ref))))

    def format(self, value: float | None, ref: float | None = None) -> str:
        """Display text; ``ref`` picks the decimals for "sigN" (so a CI matches its mean)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        dec = self._decimals(value if ref is None else ref)
        if dec is None:
            return f"{value:{self.fmt}}"
        return f"{value:,.{dec}f}"

    def format_ci(self, mean: float | None, half: float | None, n: int) -> str:
        """``mean ± half`` with one decimals rule for both; the mean alone when n < 2 or the seeds agree exactly."""
        if n < 2 or half is None or (isinstance(half, float) and math.isnan(half)) or half == 0:
            return self.format(mean)
        return f"{self.format(mean)} ± {self.format(half, ref=mean)}"

    def format_agg(self, agg: Any) -> str:
        """A value over seeds (a :class:`lorabench.stats.Agg`): the mean alone for one seed or seeds that
        agree exactly; ``mean (min–max)`` for 2 seeds; ``mean ± half`` (95% Student-t) for 3 or more."""
        lo, hi, kind = agg.band()
        if kind == "single" or lo == hi:
            return self.format(agg.mean)
        if kind == "minmax":
            return f"{self.format(agg.mean)} ({self.format(lo, ref=agg.mean)}–{self.format(hi, ref=agg.mean)})"
        return self.format_ci(agg.mean, agg.half, agg.n)


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    description: str,
    kind: str = "quality",
    fmt: str = "sig4",
    unit: str = "",
    aggregation: str = "mean",
    tol_abs: float | None = None,
    tol_rel: float | None = None,
    source: Callable[[Profile], float | None] | None = None,
    noise_rel: float | None = None,
) -> Metric:
    """Register a metric; a name may be registered once."""
    m = Metric(name, higher_is_better, description, kind, fmt, unit, aggregation, tol_abs, tol_rel, source, noise_rel)
    METRICS.register(name, m)
    return m


def metric(name: str) -> Metric:
    """Look up a registered metric (did-you-mean on typos)."""
    return METRICS.get(name)


def peak_memory(profile: Profile, phase: str) -> tuple[float | None, str | None]:
    """The device's main peak-memory figure for ``phase`` and its source name."""
    mem = profile.phase(phase)
    if mem is None:
        return None, None
    for src in MEM_PRIORITY:
        v = mem.source(src)
        if v is not None:
            return float(v), src
    return None, None


def step_time_median(profile: Profile) -> float | None:
    """Median seconds per timed optimizer step (warm-up excluded)."""
    steps = profile.step_s or []
    if not steps:
        return None

    return statistics.median(steps)


def median_tokens_per_s(profile: Profile) -> float | None:
    """Train tokens/s at the median timed step: mean tokens per timed step over the median step time.

    The one definition every output reads (leaderboard, runs.csv, plots, report, compare,
    check). The profile's own ``tokens_per_s`` divides by the summed step time, so a few
    stalled steps (a busy host, a GC pause) drag it down: IA3 on the smoke suite read
    1,084 tokens/s that way while its median step gave ~2,950. Records without step
    times fall back to the profile's figure.
    """
    med = step_time_median(profile)
    tokens, steps = profile.timed_tokens, profile.timed_steps
    if med and tokens and steps:
        return float(tokens) / float(steps) / med
    value = profile.tokens_per_s
    return None if value is None else float(value)


def step_time_spread(profile: Profile) -> float | None:
    """Interquartile range of step times over their median: 0.1 means steps vary by ~10%."""
    steps = sorted(profile.step_s or [])
    if len(steps) < 4:
        return None

    q1, _, q3 = statistics.quantiles(steps, n=4)
    med = statistics.median(steps)
    return (q3 - q1) / med if med > 0 else None


# Task metrics. Default tolerances: the smoke suite's numbers are deterministic for one
# torch build and CPU, but BLAS kernels differ across CPUs and tiny models amplify the
# difference over training (pretraining included); the tolerances are a few times that
# drift yet far below what a broken method or training loop does (perplexity x2, accuracy
# to chance, ROUGE halved).
register_metric(
    "perplexity",
    higher_is_better=False,
    description="exp(token-weighted mean NLL)",
    tol_rel=0.05,
)
register_metric(
    "token_accuracy", higher_is_better=True, description="next-token argmax accuracy", fmt=".4f", tol_abs=0.02
)
register_metric("eval_loss", higher_is_better=False, description="token-weighted mean NLL", fmt=".4f", tol_abs=0.05)
register_metric("accuracy", higher_is_better=True, description="classification accuracy", fmt=".3f", tol_abs=0.03)
register_metric(
    "macro_f1", higher_is_better=True, description="unweighted mean of per-class F1", fmt=".3f", tol_abs=0.03
)
for _r in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
    register_metric(_r, higher_is_better=True, description=f"{_r} F-measure x100 (rouge-score)", fmt=".2f", tol_abs=3.0)
# Forgetting (lorabench.tasks.forgetting): the change of a reference score the base model
# already had, signed so that positive means lost ability. Lower is better, for both.
register_metric(
    "forgetting_perplexity",
    higher_is_better=False,
    description="perplexity on the task's forgetting reference after fine-tuning minus the base model's (positive: forgot)",
    fmt="sig3",
)
register_metric(
    "forgetting_pair_retrieval",
    higher_is_better=False,
    description=(
        "pair-retrieval accuracy on the forgetting reference (first half of a text finds its second half, mean-pooled "
        "hidden states), base minus fine-tuned (positive: forgot)"
    ),
    fmt=".3f",
)

# Single-seed timing differences below this share are machine noise (compare marks, Pareto):
# on shared machines the same point has measured 10x apart under load.
TIMING_NOISE = 0.25

# Cost figures, read from the record's profile. No default tolerance: CPU timing and RSS
# are noisy on shared machines, so gating them is opt-in (`check --tol tokens_per_s=50%`).
register_metric(
    "trainable_pct",
    higher_is_better=False,
    description="trainable share of all parameters",
    kind="cost",
    fmt="sig3",
    unit="%",
)
register_metric("trainable_params", higher_is_better=False, description="trainable parameters", kind="cost", fmt=",.0f")
register_metric("total_params", higher_is_better=False, description="all parameters", kind="cost", fmt=",.0f")
for _phase, _what in (("train", "training"), ("eval", "evaluation")):
    register_metric(
        f"peak_mem_{_phase}_mb",
        higher_is_better=False,
        description=f"peak {_what} memory: NVML, else reserved, else host RSS",
        kind="cost",
        fmt=",.0f",
        unit="MiB",
        source=lambda p, phase=_phase: peak_memory(p, phase)[0],
        noise_rel=0.03,  # host RSS moves by a few MiB from run to run
    )
register_metric(
    "tokens_per_s",
    higher_is_better=True,
    description="train tokens/s at the median timed step (warm-up excluded)",
    kind="cost",
    fmt=",.0f",
    source=median_tokens_per_s,
    noise_rel=TIMING_NOISE,
)
register_metric(
    "samples_per_s",
    higher_is_better=True,
    description="train samples/s (warm-up excluded)",
    kind="cost",
    fmt=",.1f",
    noise_rel=TIMING_NOISE,
)
register_metric(
    "train_s",
    higher_is_better=False,
    description="train wall time",
    kind="cost",
    fmt=",.1f",
    unit="s",
    noise_rel=TIMING_NOISE,
)
register_metric(
    "eval_s",
    higher_is_better=False,
    description="eval wall time",
    kind="cost",
    fmt=",.1f",
    unit="s",
    noise_rel=TIMING_NOISE,
)
register_metric(
    "step_ms",
    higher_is_better=False,
    description="median time per timed optimizer step",
    kind="cost",
    fmt="sig3",
    unit="ms",
    source=lambda p: None if (m := step_time_median(p)) is None else 1000.0 * m,
    noise_rel=TIMING_NOISE,
)
register_metric(
    "adapter_bytes",
    higher_is_better=False,
    description="bytes the method saves",
    kind="cost",
    fmt=",.0f",
    unit="B",
    noise_rel=0.01,  # compared exactly, but a few bytes of file header are not "outside the noise"
)
register_metric(
    "mfu",
    higher_is_better=True,
    description="model FLOPs utilisation: model FLOPs/token x tokens/s over the device's dense peak (null on CPU)",
    kind="cost",
    fmt=".3f",
)
register_metric(
    "estimate_mb",
    higher_is_better=False,
    description="estimated peak allocated memory (lorabench estimate), beside the measured peak",
    kind="cost",
    fmt=",.0f",
    unit="MiB",
    source=lambda p: None if not (p.estimate_bytes or {}).get("allocated") else p.estimate_bytes["allocated"] / MiB,
)
register_metric(
    "predicted_mb",
    higher_is_better=False,
    description="the run's memory prediction (a trace of its training step on fake tensors, or the analytic "
    "model: profile.predicted_method), torch allocated MiB",
    kind="cost",
    fmt=",.0f",
    unit="MiB",
    source=lambda p: None if not p.predicted_peak_bytes else p.predicted_peak_bytes / MiB,
)
register_metric(
    "mem_vs_predicted",
    higher_is_better=False,
    description="measured peak allocated (train, eval) over the prediction: 1.0 is exact, above 1 the prediction "
    "was optimistic (null where no CUDA allocator measured)",
    kind="cost",
    fmt=".3f",
    source=lambda p: p.measured_over_predicted,
)


def _to_target(key: str) -> Callable[[Profile], float | None]:
    """A time-to-target figure from ``profile.time_to_target`` (lorabench.report.target); None unless reached."""

    def source(profile: Profile) -> float | None:
        ttt = profile.time_to_target
        if not isinstance(ttt, dict) or ttt.get("reached") is not True:
            return None
        return ttt.get(key)

    return source


# Time-to-target (issue 18): training spent before the run's eval curve first reached its
# task's target (warm-up included, evaluation excluded). Set when the report is built.
register_metric(
    "steps_to_target",
    higher_is_better=False,
    description="optimizer steps until the eval curve first reached the task's target",
    kind="cost",
    fmt=",.0f",
    source=_to_target("steps"),
)
register_metric(
    "tokens_to_target",
    higher_is_better=False,
    description="training tokens (warm-up included) until the eval curve first reached the task's target",
    kind="cost",
    fmt=",.0f",
    source=_to_target("tokens"),
)
register_metric(
    "seconds_to_target",
    higher_is_better=False,
    description="training seconds (evaluation excluded) until the eval curve first reached the task's target",
    kind="cost",
    fmt=",.1f",
    unit="s",
    source=_to_target("seconds"),
    noise_rel=TIMING_NOISE,
)
register_metric(
    "joules_to_target",
    higher_is_better=False,
    description="device energy (NVML on GPU, RAPL on CPU; whole device) until the eval curve first reached the target",
    kind="cost",
    fmt=",.0f",
    unit="J",
    source=_to_target("joules"),
    noise_rel=TIMING_NOISE,
)


def quality_metrics() -> list[str]:
    return [n for n in METRICS if METRICS.get(n).kind == "quality"]


def cost_metrics() -> list[str]:
    return [n for n in METRICS if METRICS.get(n).kind == "cost"]


def record_values(rec: Record, where: str = "") -> dict[str, float]:
    """Every registered figure of one record: its task metrics and profile cost figures.

    A task metric that is not registered is an error (a silently dropped column would be
    a wrong leaderboard); profile keys that are not registered are ignored.
    """
    out: dict[str, float] = {}
    for name, value in rec.metrics.items():
        if name not in METRICS or METRICS.get(name).kind != "quality":
            raise UsageError(
                f"{where or rec.run_id}: metric {name!r} is not registered{METRICS.suggest(name)}; "
                "declare it with lorabench.metrics.register_metric"
            )
        if value is None:
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where or rec.run_id}: metric {name!r} is not a number: {value!r}") from None
    for name in cost_metrics():
        v = METRICS.get(name).value(rec.profile)
        if v is not None:
            out[name] = v
    return out
