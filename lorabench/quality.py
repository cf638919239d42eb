"""Time-to-target: what a run spent before its quality first reached a target.

Pure functions over a run's periodic-evaluation curve (``curves.eval``: the validation
split when the task has one), shared by the run (which records ``profile.time_to_target``
when the suite names ``select.target``) and the report (which also derives the default
target, 95% of the task's best run, from every record). Each curve point records what
training had cost up to it (``train_tokens``, ``train_s``, and ``train_j`` where the
device has an energy counter), warm-up included and evaluation excluded; the first point
that reaches the target gives ``steps``, ``tokens``, ``seconds`` and ``joules``.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lorabench.metrics import METRICS

DEFAULT_SHARE = 0.95
EXPLICIT_RULE = "select.target"


@dataclass(frozen=True)
class Target:
    """A task's quality target on one metric, and the rule that set it."""

    metric: str
    value: float
    rule: str = EXPLICIT_RULE


def reached(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def default_target(finals: list[float], higher_is_better: bool, share: float = DEFAULT_SHARE) -> float | None:
    """Within ``1 - share`` of the best of ``finals``: ``share x best`` (higher better) or ``best / share``."""
    finals = [v for v in finals if math.isfinite(v)]
    if not finals:
        return None
    best = max(finals) if higher_is_better else min(finals)
    return best * share if higher_is_better else best / share


def time_to_target(curve: list[dict[str, Any]], target: Target) -> dict[str, Any]:
    """The cost at the first curve point that reaches ``target``; ``reached: False`` if none does.

    ``steps`` counts optimizer steps done (a point logged after step index 9 is 10 steps).
    """
    higher = METRICS.get(target.metric).higher_is_better
    out: dict[str, Any] = {"metric": target.metric, "target": target.value, "rule": target.rule}
    for point in curve:
        value = point.get(target.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and reached(value, target.value, higher):
            out.update(reached=True, value=value, steps=int(point["step"]) + 1)
            out["tokens"] = point.get("train_tokens")
            out["seconds"] = point.get("train_s")
            if point.get("train_j") is not None:
                out["joules"] = point["train_j"]
            return out
    out["reached"] = False
    return out
