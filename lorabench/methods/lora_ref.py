"""lora-ref: a hand-written LoRA (no peft), the reference our users' own material teaches.

The layer itself is in :mod:`lorabench.methods.lora_ref_layer`. Targets follow peft's
rules (an explicit list matches a module name or its dotted suffix; ``all-linear`` is
every linear layer but the output and classification heads; unset means peft's LoRA
default for the architecture), so lora-ref and ``lora`` wrap the same layers.

What is saved is only A, B and alpha (r is A's first dimension): one safetensors file
whose keys are ``<module>.lora_A`` / ``<module>.lora_B`` and whose metadata holds alpha.
For a classification task the new head trains in full, as peft does, and is saved with
them under ``head.<parameter>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lorabench.methods.base import HEAD_NAMES, Method, MethodContext, head_parameter_names, settle_alpha
from lorabench.methods.lora import lora_alpha
from lorabench.suite.typed import check_fields

FILENAME = "lora_ref.safetensors"


@dataclass(frozen=True)
class LoraRefOptions:
    alpha: float | str | None = None  # None: alpha_ratio × rank, else 2 × rank, as for lora; "2r" as for lora
    alpha_ratio: float | None = None  # alpha = alpha_ratio × rank (lora.lora_alpha)
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: the model definition's, else peft's LoRA default

    RANGES: ClassVar[dict[str, str]] = {"dropout": ">= 0 and < 1", "alpha": "> 0", "alpha_ratio": "> 0"}

    def __post_init__(self) -> None:
        settle_alpha(self)
        check_fields(self, self.RANGES)


def resolve_targets(model: Any, ctx: MethodContext, option: tuple[str, ...] | None) -> list[str]:
    """Full names of the layers to wrap, by peft's matching rules."""
    from lorabench.methods.lora_ref_layer import linear_shape

    chosen = option if option is not None else ctx.target_modules
    if chosen is None:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

        chosen = DEFAULTS.get(ctx.model_type)
        if not isinstance(chosen, list):
            raise ValueError(
                f"lora-ref: no default target modules for model type {ctx.model_type!r}; "
                "set `target_modules` on the method or the model definition"
            )

    def linear(m: Any) -> bool:
        try:
            linear_shape(m)
        except TypeError:
            return False
        return True

    names = [n for n, m in model.named_modules() if n and linear(m)]
    if tuple(chosen) == ("all-linear",):
        out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        skip = {n for n, m in model.named_modules() if m is out_emb or n.rsplit(".", 1)[-1] in HEAD_NAMES}
        found = [n for n in names if n not in skip]
    else:
        found = [n for n in names if any(n == t or n.endswith("." + t) for t in chosen)]
    if not found:
        raise ValueError(
            f"lora-ref: target modules {list(chosen)} match no linear layer of this {ctx.model_type} model"
        )
    return found


class LoRARef(Method):
    name = "lora-ref"
    description = "hand-written reference LoRA (no peft): A, B and alpha/r on nn.Linear and GPT-2's Conv1D"
    uses_rank = True
    default_rank = 8
    Options = LoraRefOptions

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        from lorabench.methods.lora_ref_layer import add_lora

        opts: LoraRefOptions = ctx.options
        rank = self.resolve_rank(ctx.rank)
        targets = resolve_targets(model, ctx, opts.target_modules)
        # A head that is also a LoRA target (e.g. the hand-written classifier's only
        # linear) gets the low-rank update instead of full training.
        head = {
            n for n in head_parameter_names(model, ctx.task_family) if not any(n.startswith(t + ".") for t in targets)
        }
        for p in model.parameters():
            p.requires_grad_(False)
        add_lora(model, targets, rank, lora_alpha(opts.alpha, opts.alpha_ratio, rank), opts.dropout)
        params = dict(model.named_parameters())
        for n in head:
            params[n].requires_grad_(True)
        return model

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        from lorabench.methods.lora_ref_layer import lora_layers

        layers = lora_layers(model)
        first = next(iter(layers.values()))
        return {
            "target_modules": sorted({n.rsplit(".", 1)[-1] for n in layers}),
            "wrapped_layers": len(layers),
            "r": first.r,
            "alpha": first.alpha,
        }

    def save(self, model: Any, out_dir: Path) -> None:
        from safetensors.torch import save_file

        from lorabench.methods.lora_ref_layer import lora_layers

        layers = lora_layers(model)
        tensors = {}
        for name, layer in layers.items():
            tensors[f"{name}.lora_A"] = layer.lora_A.detach().contiguous().clone()
            tensors[f"{name}.lora_B"] = layer.lora_B.detach().contiguous().clone()
        lora_params = {f"{n}.lora_A" for n in layers} | {f"{n}.lora_B" for n in layers}
        for n, p in model.named_parameters():
            if p.requires_grad and n not in lora_params:
                tensors[f"head.{n}"] = p.detach().contiguous().clone()
        alphas = {layer.alpha for layer in layers.values()}
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(out_dir / FILENAME), metadata={"alpha": repr(alphas.pop())})

    def load(self, base: Any, ctx: MethodContext, in_dir: Path) -> Any:
        import torch
        from safetensors import safe_open

        from lorabench.methods.lora_ref_layer import add_lora, lora_layers

        with safe_open(str(in_dir / FILENAME), framework="pt") as fh:
            alpha = float(fh.metadata()["alpha"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        names = sorted(k.removesuffix(".lora_A") for k in tensors if k.endswith(".lora_A"))
        for p in base.parameters():
            p.requires_grad_(False)
        rank = tensors[f"{names[0]}.lora_A"].shape[0]
        add_lora(base, names, rank, alpha)
        params = dict(base.named_parameters())
        with torch.no_grad():
            for name, layer in lora_layers(base).items():
                layer.lora_A.copy_(tensors[f"{name}.lora_A"])
                layer.lora_B.copy_(tensors[f"{name}.lora_B"])
            for key, value in tensors.items():
                if key.startswith("head."):
                    params[key.removeprefix("head.")].copy_(value)
        return base
