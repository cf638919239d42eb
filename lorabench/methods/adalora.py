"""AdaLoRA (peft): SVD-shaped LoRA whose rank budget is reallocated during training.

Each target starts at ``init_r`` and the total budget shrinks to ``rank`` (the average
target rank) on a cubic schedule between ``tinit`` and ``total_step - tfinal``; peft
needs ``total_step`` up front, and :meth:`after_step` must run after every optimizer
step (before gradients are cleared) to update importance scores and masks. Both come
from the run: ``total_step`` is the run's optimizer steps, and the warm-up/final phases
are given as fractions of it so one suite works at any step count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lorabench.methods.base import MethodContext, resolve_alpha, settle_alpha
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, lora_default_targets, target_modules
from lorabench.suite.typed import check_fields, check_ranges


@dataclass(frozen=True)
class AdaLoraOptions:
    init_r: int | None = None  # None: 1.5 x the target rank, as in the paper's setups (12 -> 8)
    alpha: float | str | None = None  # None: alpha_ratio x target rank, else 2 x; "2r" as for lora
    alpha_ratio: float | None = None  # alpha = alpha_ratio x target rank, as for lora
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: peft's AdaLoRA default, else its LoRA default
    tinit_frac: float = 0.0  # share of steps before pruning starts (peft's tinit)
    tfinal_frac: float = 0.0  # share of steps with the final budget fixed (peft's tfinal)
    delta_t: int = 1  # steps between budget reallocations (peft's deltaT)
    orth_reg_weight: float = 0.5

    RANGES: ClassVar[dict[str, str]] = {
        "init_r": ">= 1",
        "alpha": "> 0",
        "alpha_ratio": "> 0",
        "dropout": ">= 0 and < 1",
        "tinit_frac": ">= 0 and < 1",
        "tfinal_frac": ">= 0 and < 1",
        "delta_t": ">= 1",
        "orth_reg_weight": ">= 0",
    }

    def __post_init__(self) -> None:
        settle_alpha(self)
        bad = {name for name, _ in check_ranges(self, self.RANGES)}
        extra = []
        if not bad & {"tinit_frac", "tfinal_frac"} and self.tinit_frac + self.tfinal_frac >= 1.0:
            extra.append(
                (
                    "tfinal_frac",
                    f"`tinit_frac` + `tfinal_frac` should be < 1 (some steps must reallocate the budget), "
                    f"got {self.tinit_frac} + {self.tfinal_frac}",
                )
            )
        check_fields(self, self.RANGES, extra)


class AdaLoRA(PeftMethod):
    name = "adalora"
    description = "AdaLoRA (peft): SVD-form LoRA whose rank budget is pruned towards `rank` during training"
    uses_rank = True
    default_rank = 8
    Options = AdaLoraOptions

    def peft_config(self, ctx: MethodContext) -> Any:
        from peft import AdaLoraConfig
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING

        opts: AdaLoraOptions = ctx.options
        rank = self.resolve_rank(ctx.rank)
        # Parameter counting (lorabench params) builds the config without a run: any
        # positive step count gives the same parameters.
        total = ctx.train_steps or 1
        targets = target_modules(ctx, opts.target_modules)
        if targets is None:
            targets = lora_default_targets(ctx, TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING)
        return AdaLoraConfig(
            target_r=rank,
            init_r=opts.init_r if opts.init_r is not None else max(rank, (3 * rank) // 2),
            lora_alpha=resolve_alpha(opts.alpha, rank, opts.alpha_ratio),
            lora_dropout=opts.dropout,
            target_modules=targets,
            total_step=total,
            tinit=int(opts.tinit_frac * total),
            tfinal=int(opts.tfinal_frac * total),
            deltaT=opts.delta_t,
            orth_reg_weight=opts.orth_reg_weight,
            task_type=PEFT_TASK_TYPES[ctx.task_family],
        )

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        model = super().apply(model, ctx)
        # `ranknum` is a frozen constant (the scaling's r); peft creates it frozen, but
        # moving it to the meta device (lorabench params) re-creates it as trainable.
        for n, p in model.named_parameters():
            if ".ranknum." in n:
                p.requires_grad_(False)
        return model

    def task_forward(self, model: Any) -> Any:
        """The task loss alone: the transformers model under peft's AdaLoRA tuner.

        peft's ``AdaLoraModel.forward`` adds ``orth_reg_weight`` x the orthogonality
        term to ``outputs.loss``; calling the model it wraps (what that forward calls
        first) gives the same outputs without it. The term comes back from
        :meth:`regularisers`, so training optimises exactly what peft's forward returns.
        """
        inner = model.get_base_model()
        return lambda batch: inner(**batch).loss

    def regularisers(self, model: Any) -> dict[str, Any]:
        weight = model.peft_config["default"].orth_reg_weight
        if not weight:
            return {}
        return {"orth_reg": weight * orthogonality(model.base_model, "default")}

    def after_step(self, model: Any, step: int) -> None:
        tuner = model.base_model
        tuner.update_and_allocate(step)
        cfg = model.peft_config["default"]
        if step == cfg.total_step - 1 and cfg.rank_pattern:
            # Training is over: cut the pruned ranks out of the modules (peft only masks
            # them until it saves), so the model evaluated here is the same computation,
            # shape for shape, as the saved adapter reloaded onto a fresh base.
            prune_masked_ranks(tuner, cfg.rank_pattern)

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        cfg = model.peft_config["default"]
        out = {**super().resolved(model, ctx), "target_r": cfg.target_r, "init_r": cfg.init_r}
        out.update(total_step=cfg.total_step, tinit=cfg.tinit, tfinal=cfg.tfinal, lora_alpha=cfg.lora_alpha)
        if cfg.rank_pattern:
            ranks = [int(sum(v)) for v in cfg.rank_pattern.values()]
            out["final_ranks"] = {"total": sum(ranks), "min": min(ranks), "max": max(ranks), "layers": len(ranks)}
        return out

    def load(self, base: Any, ctx: MethodContext, in_dir: Path) -> Any:
        from peft import PeftModel

        # peft quirk: an AdaLoRA model loaded in inference mode has no trainable adapter
        # name, and its forward crashes whenever a loss is computed (labels given).
        model = PeftModel.from_pretrained(base, str(in_dir), is_trainable=True)
        _restore_fp32_values(model, in_dir)
        for p in model.parameters():
            p.requires_grad_(False)
        return model


def orthogonality(tuner: Any, adapter: str) -> Any:
    """peft's AdaLoRA orthogonal regulariser, unweighted: mean over A and B of ||P P^T - I||_F.

    The formula of ``peft.tuners.adalora.AdaLoraModel.forward`` (as of peft 0.21), which
    only exists there folded into ``outputs.loss``; ``tests/test_first_loss.py`` checks
    that task loss + ``orth_reg_weight`` x this equals peft's own forward loss, so a peft
    that changes the formula fails the test rather than the benchmark.
    """
    import torch

    total, count = None, 0
    for name, p in tuner.model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and adapter in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            eye = torch.eye(*cov.size(), out=torch.empty_like(cov))
            term = torch.norm(cov - eye, p="fro")
            total = term if total is None else total + term
            count += 1
    return total / count if count else torch.zeros(())


def prune_masked_ranks(tuner: Any, rank_pattern: dict[str, Any]) -> None:
    """peft's ``resize_modules_by_rank_pattern``, keeping the trained fp32 values.

    peft re-creates each resized adapter in its base layer's dtype, which on a bf16/fp16
    base would round the trained (fp32) A, E, B and ranknum; they are copied back.
    """
    import torch

    layers = {n: m for n, m in tuner.model.named_modules() if hasattr(m, "lora_E") and "default" in m.lora_E}
    keys = ("lora_A", "lora_E", "lora_B", "ranknum")
    trained = {n: [getattr(m, k)["default"].detach().clone() for k in keys] for n, m in layers.items()}
    tuner.resize_modules_by_rank_pattern(rank_pattern, "default")
    with torch.no_grad():
        for name, module in layers.items():
            mask = rank_pattern.get(f"{name}.lora_E.default", rank_pattern.get(f"{name}.lora_E"))
            if mask is None:
                continue
            keep = torch.as_tensor(mask, dtype=torch.bool).view(-1)
            a, e, b, ranknum = trained[name]
            module.lora_A["default"].data = a[keep]
            module.lora_E["default"].data = e[keep]
            module.lora_B["default"].data = b[:, keep]
            module.ranknum["default"].data = ranknum  # the scaling's r, in the dtype training used


def _restore_fp32_values(model: Any, in_dir: Path) -> None:
    """Copy the saved adapter into the loaded one again, now that it is fp32.

    On a bf16/fp16 base peft resizes AdaLoRA's modules in the base dtype, loads the fp32
    weights into them (rounding) and only then upcasts; the second copy is exact.
    """
    import torch
    from safetensors.torch import load_file

    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in load_file(str(in_dir / "adapter_model.safetensors")).items():
            param = params.get(f"{key}.default")  # peft saves names without the adapter name
            if param is not None and param.shape == value.shape and param.dtype == value.dtype:
                param.copy_(value)
