"""A hand-written LoRA layer, written to be read next to the paper (Hu et al., 2021).

    h = W0·x + (alpha / r) · B·A·x

W0 is the wrapped layer and stays frozen; A (r × in) starts random and B (out × r) at
zero, so training starts from exactly the pretrained function and only A and B learn.
This is the reference that peft's LoRA is checked against (same A, B → same outputs
and gradients); it lives apart from :mod:`lorabench.methods.lora_ref` because it needs
torch at import time and method modules must not.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def linear_shape(layer: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear (bitsandbytes layers are subclasses) or GPT-2's Conv1D."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if type(layer).__name__ == "Conv1D":  # transformers' GPT-2 layer: weight is (in, out), y = x·W + b
        return layer.weight.shape[0], layer.weight.shape[1]
    raise TypeError(f"lora-ref wraps nn.Linear or GPT-2's Conv1D, not {type(layer).__name__}")


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · x·Aᵀ·Bᵀ`` around a frozen linear layer."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        in_features, out_features = linear_shape(base)
        self.base = base
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / r
        device = base.weight.device
        # fp32 whatever the base dtype: the update is small and would underflow in half precision.
        self.lora_A = nn.Parameter(torch.empty(r, in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # the init of nn.Linear, as in the paper's code
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        x = self.dropout(x).to(self.lora_A.dtype)
        update = x @ self.lora_A.T @ self.lora_B.T
        return out + (update * self.scaling).to(out.dtype)


def add_lora(model: nn.Module, module_names: list[str], r: int, alpha: float, dropout: float = 0.0) -> None:
    """Replace each named layer of ``model`` by a :class:`LoRALinear` around it."""
    for name in module_names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout))


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every :class:`LoRALinear` in ``model``, by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
