"""Metric registry: every reported number knows which direction is better.

Leaderboard sorting, Pareto fronts and (later) ``lorabench check`` read the direction
from here and never hard-code it (lm-eval-harness's ``higher_is_better``).
No torch import: the report side uses this too.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.registry import Registry


@dataclass(frozen=True)
class Metric:
    """How one metric is named, compared and shown."""

    name: str
    higher_is_better: bool
    description: str
    kind: str = "quality"  # "quality" (task metric) or "cost" (profile figure)
    fmt: str = ".4g"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str, *, higher_is_better: bool, description: str, kind: str = "quality", fmt: str = ".4g"
) -> Metric:
    """Register a metric with its direction; a name may be registered once."""
    metric = Metric(name, higher_is_better, description, kind, fmt)
    METRICS.register(name, metric)
    return metric


# Task metrics.
register_metric("perplexity", higher_is_better=False, description="exp(token-weighted mean NLL)")
register_metric("token_accuracy", higher_is_better=True, description="next-token argmax accuracy")
register_metric("eval_loss", higher_is_better=False, description="token-weighted mean NLL")
register_metric("accuracy", higher_is_better=True, description="classification accuracy")
register_metric("macro_f1", higher_is_better=True, description="unweighted mean of per-class F1")
for _r in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
    register_metric(_r, higher_is_better=True, description=f"{_r} F-measure x100 (rouge-score)")

# Cost figures from the profile.
register_metric("trainable_pct", higher_is_better=False, description="trainable share", kind="cost")
register_metric("tokens_per_s", higher_is_better=True, description="train tokens/s", kind="cost")
register_metric("samples_per_s", higher_is_better=True, description="train samples/s", kind="cost")
register_metric("train_s", higher_is_better=False, description="train wall seconds", kind="cost")
register_metric("eval_s", higher_is_better=False, description="eval wall seconds", kind="cost")
register_metric("adapter_bytes", higher_is_better=False, description="saved bytes", kind="cost")
for _phase in ("train", "eval"):
    for _src in ("rss", "allocated", "reserved", "nvml"):
        register_metric(
            f"peak_{_src}_{_phase}_mb",
            higher_is_better=False,
            description=f"peak {_src} memory during {_phase} (MiB)",
            kind="cost",
            fmt=".1f",
        )


def metric(name: str) -> Metric:
    """Look up a registered metric (did-you-mean on typos)."""
    return METRICS.get(name)
