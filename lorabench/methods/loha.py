"""LoHa (peft): the weight update is a Hadamard product of two low-rank products."""

from __future__ import annotations

from typing import Any

from lorabench.methods.base import MethodContext
from lorabench.methods.lycoris import LycorisOptions, lycoris_invalid_reason
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules


class LoHa(PeftMethod):
    name = "loha"
    description = "LoHa (peft): update = (B1·A1) ⊙ (B2·A2), rank r² expressiveness for 2x LoRA's parameters"
    uses_rank = True
    default_rank = 8
    Options = LycorisOptions

    @classmethod
    def invalid_reason(cls, precision: str, model_type: str | None = None) -> str | None:
        return lycoris_invalid_reason("LoHa", precision, model_type) or super().invalid_reason(precision, model_type)

    def peft_config(self, ctx: MethodContext) -> Any:
        from peft import LoHaConfig

        opts: LycorisOptions = ctx.options
        rank = ctx.rank or self.default_rank
        return LoHaConfig(
            r=rank,
            alpha=opts.alpha if opts.alpha is not None else 2 * rank,
            rank_dropout=opts.rank_dropout,
            module_dropout=opts.module_dropout,
            target_modules=target_modules(ctx, opts.target_modules),
            task_type=PEFT_TASK_TYPES[ctx.task_family],
        )
