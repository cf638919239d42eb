"""PiSSA (peft): LoRA initialised from the principal singular vectors of each weight.

PiSSA moves the top-r singular directions of W into A·B and leaves the residual
W − A·B in the base layer, so the base weights change at initialisation. The saved
adapter holds the trained A and B; :meth:`load` re-runs the same deterministic
initialisation on a fresh base (peft does this when it reads the adapter config) to
rebuild the residual, so a reload reproduces the fine-tuned model exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lorabench.methods.base import MethodContext
from lorabench.methods.lora import LoRA, LoraOptions
from lorabench.vocab import QUANTIZED


@dataclass(frozen=True)
class PissaOptions(LoraOptions):
    # None: exact SVD (deterministic, slow on big matrices); n: randomised SVD with n
    # power iterations (peft's "pissa_niter_n"), seeded by `init_seed` so a reload matches.
    svd_niter: int | None = None
    init_seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {**LoraOptions.RANGES, "svd_niter": ">= 1"}  # null: an exact SVD


class PiSSA(LoRA):
    name = "pissa"
    description = "PiSSA (peft): LoRA initialised from the top-r singular vectors; the base keeps the residual"
    Options = PissaOptions

    @classmethod
    def invalid_reason(cls, precision: str, model_type: str | None = None) -> str | None:
        if precision in QUANTIZED:
            return (
                "PiSSA rewrites each base weight as the residual W - A·B at initialisation, and peft needs a "
                f"float base for that; a {precision} bitsandbytes base is frozen and packed (QPiSSA means "
                "quantising the residual after a float initialisation, which lorabench does not do)"
            )
        return super().invalid_reason(precision, model_type)

    _decompose = True

    def variant_kwargs(self, ctx: MethodContext) -> dict[str, Any]:
        if not self._decompose:
            return {}
        niter = ctx.options.svd_niter
        return {"init_lora_weights": "pissa" if niter is None else f"pissa_niter_{niter}"}

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        # On the meta device (lorabench params) there are no weights to decompose, and
        # PiSSA's parameters have exactly LoRA's shapes.
        self._decompose = not any(p.is_meta for p in model.parameters())
        with _seeded(ctx.options.init_seed):
            return super().apply(model, ctx)

    def load(self, base: Any, ctx: MethodContext, in_dir: Path) -> Any:
        with _seeded(ctx.options.init_seed):  # the same residual as at apply time
            return super().load(base, ctx, in_dir)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's RNG seeded, then restore the run's own RNG state."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
