"""LoRA through peft (also QLoRA and int8-LoRA: the precision axis picks the base)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from lorabench.methods.base import MethodContext, resolve_alpha
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules
from lorabench.suite.typed import check_fields


def lora_alpha(alpha: float | None, alpha_ratio: float | None, rank: int) -> float:
    """The LoRA alpha a run uses: ``alpha`` as given, else ``alpha_ratio`` × rank, else 2 × rank.

    A rank sweep at a fixed ``alpha`` also sweeps the update's scale alpha/r (4 down to 0.5
    over r = 4..32 at alpha 16); ``alpha_ratio`` keeps alpha/r fixed, which is what a rank
    sweep usually means. The resolved value is in the record (resolved.method.lora_alpha).
    """
    return resolve_alpha(alpha, rank, alpha_ratio)


def check_alpha(alpha: float | None, alpha_ratio: float | None) -> None:
    """Options validation shared by the LoRA-family option classes."""
    if alpha is not None and alpha <= 0:
        raise ValueError(f"`alpha` should be > 0, got {alpha}")
    if alpha_ratio is not None and alpha_ratio <= 0:
        raise ValueError(f"`alpha_ratio` should be > 0, got {alpha_ratio}")
    if alpha is not None and alpha_ratio is not None:
        raise ValueError(f"set `alpha` ({alpha}) or `alpha_ratio` ({alpha_ratio}), not both")


@dataclass(frozen=True)
class LoraOptions:
    alpha: float | None = None  # None: alpha_ratio × rank, else 2 × rank; the resolved value is recorded
    alpha_ratio: float | None = None  # alpha = alpha_ratio × rank: a rank sweep keeps the scale alpha/r fixed
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: peft's per-architecture default
    bias: Literal["none", "all", "lora_only"] = "none"

    RANGES: ClassVar[dict[str, str]] = {"dropout": ">= 0 and < 1", "alpha": "> 0"}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)
        check_alpha(self.alpha, self.alpha_ratio)


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
