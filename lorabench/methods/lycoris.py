"""Shared options and rules of peft's LyCORIS methods (LoHa, LoKr)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lorabench.methods.base import MethodContext, resolve_alpha, settle_alpha
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules
from lorabench.suite.typed import check_fields


@dataclass(frozen=True)
class LycorisOptions:
    alpha: float | str | None = None  # None: alpha_ratio x rank, else 2 x rank; "2r" as for lora
    alpha_ratio: float | None = None  # alpha = alpha_ratio x rank, as for lora
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: peft's default (its LoRA table)

    RANGES: ClassVar[dict[str, str]] = {
        "alpha": "> 0",
        "alpha_ratio": "> 0",
        "rank_dropout": ">= 0 and < 1",
        "module_dropout": ">= 0 and < 1",
    }

    def __post_init__(self) -> None:
        settle_alpha(self)
        check_fields(self, self.RANGES)


def lycoris_invalid_reason(name: str, precision: str, model_type: str | None) -> str | None:
    """Combinations peft's LyCORIS layers cannot wrap."""
    if precision in ("nf4", "fp4"):
        return (
            f"peft's {name} builds its update from the base weight's shape, and bitsandbytes packs 4-bit "
            "weights (two values per byte), so the shapes do not match; int8 works"
        )
    if model_type == "gpt2":
        return (
            f"peft's {name} wraps nn.Linear/Conv layers only, and GPT-2's projections (c_attn, c_proj, c_fc) are "
            "transformers Conv1D modules"
        )
    return None


class LycorisMethod(PeftMethod):
    """LoHa and LoKr differ only in peft's config class; this builds either."""

    uses_rank = True
    default_rank = 8
    Options = LycorisOptions
    peft_config_class: ClassVar[str]  # e.g. "LoHaConfig"
    label: ClassVar[str]  # e.g. "LoHa", for messages

    @classmethod
    def invalid_reason(cls, precision: str, model_type: str | None = None) -> str | None:
        return lycoris_invalid_reason(cls.label, precision, model_type) or super().invalid_reason(precision, model_type)

    def peft_config(self, ctx: MethodContext) -> Any:
        import peft

        opts: LycorisOptions = ctx.options
        rank = self.resolve_rank(ctx.rank)
        return getattr(peft, self.peft_config_class)(
            r=rank,
            alpha=resolve_alpha(opts.alpha, rank, opts.alpha_ratio),
            rank_dropout=opts.rank_dropout,
            module_dropout=opts.module_dropout,
            target_modules=target_modules(ctx, opts.target_modules),
            task_type=PEFT_TASK_TYPES[ctx.task_family],
        )

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        """With the alpha peft was given: ``alpha: 2r`` is only a number once the rank is known."""
        cfg = model.peft_config["default"]
        return {**super().resolved(model, ctx), "r": cfg.r, "alpha": cfg.alpha}
