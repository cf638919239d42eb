"""LoRA through peft (also QLoRA and int8-LoRA: the precision axis picks the base)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from lorabench.methods.base import MethodContext, resolve_alpha, settle_alpha
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules
from lorabench.suite.typed import check_fields


def lora_alpha(alpha: float | None, alpha_ratio: float | None, rank: int) -> float:
    """The LoRA alpha a run uses: ``alpha`` as given, else ``alpha_ratio`` × rank, else 2 × rank.

    A rank sweep at a fixed ``alpha`` also sweeps the update's scale alpha/r (4 down to 0.5
    over r = 4..32 at alpha 16); ``alpha_ratio`` keeps alpha/r fixed, which is what a rank
    sweep usually means (a suite may write it ``alpha: 2r``). The resolved value is in the
    record (resolved.method.lora_alpha).
    """
    return resolve_alpha(alpha, rank, alpha_ratio)


@dataclass(frozen=True)
class LoraOptions:
    # None: alpha_ratio × rank, else 2 × rank; "2r" is alpha_ratio 2 (settle_alpha); the resolved value is recorded
    alpha: float | str | None = None
    alpha_ratio: float | None = None  # alpha = alpha_ratio × rank: a rank sweep keeps the scale alpha/r fixed
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: peft's per-architecture default
    bias: Literal["none", "all", "lora_only"] = "none"

    RANGES: ClassVar[dict[str, str]] = {"dropout": ">= 0 and < 1", "alpha": "> 0", "alpha_ratio": "> 0"}

    def __post_init__(self) -> None:
        settle_alpha(self)
        check_fields(self, self.RANGES)


class LoRA(PeftMethod):
    name = "lora"
    description = "LoRA (peft): low-rank A·B updates on target linears; QLoRA at nf4, int8-LoRA at int8"
    uses_rank = True
    default_rank = 8
    Options = LoraOptions
    extra: ClassVar[dict[str, Any]] = {}  # fixed LoraConfig kwargs for LoRA variants (DoRA, rsLoRA, ...)

    def variant_kwargs(self, ctx: MethodContext) -> dict[str, Any]:
        """LoraConfig kwargs that make a LoRA variant; options may shape them (PiSSA)."""
        return dict(self.extra)

    def peft_config(self, ctx: MethodContext) -> Any:
        from peft import LoraConfig

        opts: LoraOptions = ctx.options
        rank = self.resolve_rank(ctx.rank)
        return LoraConfig(
            r=rank,
            lora_alpha=lora_alpha(opts.alpha, opts.alpha_ratio, rank),
            lora_dropout=opts.dropout,
            target_modules=target_modules(ctx, opts.target_modules),
            bias=opts.bias,
            task_type=PEFT_TASK_TYPES[ctx.task_family],
            **self.variant_kwargs(ctx),
        )

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        cfg = model.peft_config["default"]
        return {**super().resolved(model, ctx), "r": cfg.r, "lora_alpha": cfg.lora_alpha}
