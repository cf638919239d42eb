"""Sanity flags: markers a run earns when its numbers should not be read as a result.

A record carries ``flags`` (a list of names below). The leaderboard and report show each
as a short marker with its meaning, so a degenerate run (loss never fell, one class
predicted, empty generations) is never read as a method's quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

FLAG_MEANINGS: dict[str, str] = {
    "did_not_learn": "training loss did not fall below its start by the required margin",
    "single_class": "the classifier predicted one class for every evaluation example",
    "empty_generations": "most generated summaries were empty",
}

# did_not_learn: the mean training loss over the last 10% of steps must be at least 2%
# below the mean over the first 10%. A fine-tuned model whose loss moves by less than
# that has learned nothing measurable (a classifier at chance sits at ln 2 throughout);
# 2% keeps real but small gains (a pretrained LM adapting to new text) unflagged.
WINDOW_FRACTION = 0.1
DID_NOT_LEARN_MARGIN = 0.02
# empty_generations: more than this share of generated texts are empty (after strip).
EMPTY_SHARE = 0.5


def loss_windows(curve: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """Mean loss over the first and the last 10% of logged steps (at least one step each)."""
    losses = [float(point[1]) for point in curve]
    if not losses:
        return None
    k = max(1, math.ceil(WINDOW_FRACTION * len(losses)))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def did_not_learn(curve: Sequence[Sequence[float]], margin: float = DID_NOT_LEARN_MARGIN) -> bool:
    """True when the loss's end window is not ``margin`` (relative) below its start window.

    ``curve`` is the record's ``curves.train_loss`` ([step, loss, lr] per step). A run of
    one step has the same start and end, so it cannot show learning and is flagged.
    """
    windows = loss_windows(curve)
    if windows is None:
        return True
    first, last = windows
    return not last < first - margin * abs(first)


def single_class(predictions: Sequence[dict[str, Any]]) -> bool:
    """True when every prediction is the same class while the references hold several."""
    preds = {p["prediction"] for p in predictions}
    refs = {p["reference"] for p in predictions}
    return len(predictions) > 1 and len(preds) == 1 and len(refs) > 1


def empty_generations(predictions: Sequence[dict[str, Any]], share: float = EMPTY_SHARE) -> bool:
    """True when more than ``share`` of the generated texts are empty or whitespace."""
    if not predictions:
        return False
    empty = sum(not str(p["prediction"]).strip() for p in predictions)
    return empty > share * len(predictions)


def compute_flags(
    task_type: str, curve: Sequence[Sequence[float]], predictions: Sequence[dict[str, Any]]
) -> tuple[list[str], dict[str, Any]]:
    """The flags a finished run earns, and the figures behind them (for ``resolved.sanity``)."""
    flags: list[str] = []
    windows = loss_windows(curve)
    if did_not_learn(curve):
        flags.append("did_not_learn")
    if task_type == "classification" and single_class(predictions):
        flags.append("single_class")
    if task_type == "summarization" and empty_generations(predictions):
        flags.append("empty_generations")
    details: dict[str, Any] = {
        "loss_first_window": windows[0] if windows else None,
        "loss_last_window": windows[1] if windows else None,
        "window_fraction": WINDOW_FRACTION,
        "did_not_learn_margin": DID_NOT_LEARN_MARGIN,
    }
    if task_type == "summarization" and predictions:
        details["empty_share"] = sum(not str(p["prediction"]).strip() for p in predictions) / len(predictions)
    if task_type == "classification" and predictions:
        details["predicted_classes"] = len({p["prediction"] for p in predictions})
    return flags, details
