"""What a fine-tuning method is to lorabench: metadata (no torch) plus apply/save/load.

A method module must not import torch at import time: ``validate`` and ``list`` load
method classes to read their options and rules. Torch is imported inside methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lorabench.vocab import QUANTIZED

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class NoOptions:
    """For methods that take no options."""


@dataclass(frozen=True)
class MethodContext:
    """What a method needs to know about the run it is applied in."""

    rank: int | None
    options: Any
    task_family: str  # "causal-lm" | "classification" | "seq2seq"
    precision: str
    model_type: str  # config.model_type, e.g. "gpt2"
    target_modules: tuple[str, ...] | None  # the model definition's override, if any
    # Optimizer steps the run will take: budget schedules (AdaLoRA) need it up front.
    train_steps: int | None = None


# peft's names for a sequence-classification head (PeftModelForSequenceClassification
# trains these in full as `modules_to_save`); non-peft methods follow the same rule.
HEAD_NAMES = ("classifier", "score")


def head_parameter_names(model: torch.nn.Module, task_family: str) -> set[str]:
    """Parameters of a newly initialised classification head, which must train in full."""
    if task_family != "classification":
        return set()
    heads = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in HEAD_NAMES]
    return {n for n, _ in model.named_parameters() if any(n.startswith(h + ".") for h in heads)}


class Method:
    """Base class. Subclasses set the class attributes and implement :meth:`apply`."""

    name: ClassVar[str]
    description: ClassVar[str]
    uses_rank: ClassVar[bool] = False
    default_rank: ClassVar[int | None] = None
    # Methods that update base weights cannot run on a frozen quantised base.
    trains_base_weights: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    @classmethod
    def invalid_reason(cls, precision: str, model_type: str | None = None) -> str | None:
        """Why this method cannot run at ``precision`` on ``model_type`` (None when it can).

        ``model_type`` is None where validation cannot know it without loading (hub ids).
        """
        if cls.trains_base_weights and precision in QUANTIZED:
            return (
                f"{cls.name} updates base weights, which are frozen {precision} tensors in bitsandbytes; "
                "use an adapter method (e.g. lora) on a quantised base"
            )
        return None

    def apply(self, model: torch.nn.Module, ctx: MethodContext) -> torch.nn.Module:
        """Return the model with exactly the method's parameters trainable."""
        raise NotImplementedError

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """Called after each optimizer step, before gradients are cleared (AdaLoRA's budget)."""

    def resolved(self, model: torch.nn.Module, ctx: MethodContext) -> dict[str, Any]:
        """Options as actually applied (e.g. resolved target modules), for the record."""
        return {}

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Save what a user must keep to reproduce the fine-tune (the trainable state)."""
        from lorabench.methods.state import save_trainable

        save_trainable(model, out_dir)

    def load(self, base: torch.nn.Module, ctx: MethodContext, in_dir: Path) -> torch.nn.Module:
        """Rebuild the fine-tuned model from ``base`` and what :meth:`save` wrote."""
        from lorabench.methods.state import load_trainable

        model = self.apply(base, ctx)
        load_trainable(model, in_dir)
        return model
