"""IA³ (peft): learned vectors that rescale keys, values and feed-forward activations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.methods.base import MethodContext
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules


@dataclass(frozen=True)
class IA3Options:
    target_modules: tuple[str, ...] | None = None  # None: peft's per-architecture default
    # Which targets scale their input (feed-forward) rather than their output. None: peft's
    # default for the architecture, restricted to the chosen targets.
    feedforward_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.feedforward_modules is not None and self.target_modules is not None:
            extra = set(self.feedforward_modules) - set(self.target_modules)
            if extra and tuple(self.target_modules) != ("all-linear",):
                raise ValueError(f"`feedforward_modules` must be among `target_modules`, not {sorted(extra)}")


class IA3(PeftMethod):
    name = "ia3"
    description = "IA³ (peft): learned per-channel scaling of keys, values and feed-forward activations"
    Options = IA3Options

    def peft_config(self, ctx: MethodContext) -> Any:
        from peft import IA3Config
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF

        opts: IA3Options = ctx.options
        targets = target_modules(ctx, opts.target_modules)
        ff: Any = list(opts.feedforward_modules) if opts.feedforward_modules is not None else None
        if ff is None and isinstance(targets, list):
            # peft's default feed-forward list only applies when every entry is a target.
            ff = [m for m in FF.get(ctx.model_type, []) if m in targets]
        return IA3Config(
            target_modules=targets,
            feedforward_modules=ff,
            task_type=PEFT_TASK_TYPES[ctx.task_family],
        )
