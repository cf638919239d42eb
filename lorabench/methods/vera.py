"""VeRA (peft): one pair of frozen random matrices shared by all layers, scaled per layer.

Only the scaling vectors (lambda_b per output, lambda_d per rank) train, so the rank can
be much higher than LoRA's for the same budget. The frozen projections are saved with
the adapter (``save_projection``) so a reload does not depend on regenerating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lorabench.methods.base import MethodContext
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules
from lorabench.suite.typed import check_fields


@dataclass(frozen=True)
class VeraOptions:
    dropout: float = 0.0
    d_initial: float = 0.1  # initial value of lambda_d (the paper's d_init)
    projection_seed: int = 0  # PRNG key of the shared random projections
    target_modules: tuple[str, ...] | None = None

    RANGES: ClassVar[dict[str, str]] = {"dropout": ">= 0 and < 1", "d_initial": "> 0"}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)


class VeRA(PeftMethod):
    name = "vera"
    description = "VeRA (peft): shared frozen random low-rank matrices; only per-layer scaling vectors train"
    uses_rank = True
    default_rank = 256
    Options = VeraOptions

    def peft_config(self, ctx: MethodContext) -> Any:
        from peft import VeraConfig

        opts: VeraOptions = ctx.options
        return VeraConfig(
            r=self.resolve_rank(ctx.rank),
            vera_dropout=opts.dropout,
            d_initial=opts.d_initial,
            projection_prng_key=opts.projection_seed,
            save_projection=True,
            target_modules=target_modules(ctx, opts.target_modules),
            task_type=PEFT_TASK_TYPES[ctx.task_family],
        )

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        return {**super().resolved(model, ctx), "r": model.peft_config["default"].r}
