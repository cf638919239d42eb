"""Saving and loading the trainable part of a non-peft model as safetensors."""

from __future__ import annotations

from pathlib import Path

import torch

FILENAME = "trainable.safetensors"


def save_trainable(model: torch.nn.Module, out_dir: Path) -> None:
    """Write every trainable parameter (shared tensors once) to ``out_dir``."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(out_dir / FILENAME))


def load_trainable(model: torch.nn.Module, in_dir: Path) -> None:
    """Load tensors written by :func:`save_trainable`; every name must match."""
    from safetensors.torch import load_file

    tensors = load_file(str(in_dir / FILENAME))
    params = dict(model.named_parameters())
    missing = set(tensors) - set(params)
    if missing:
        raise KeyError(f"saved tensors not in model: {sorted(missing)[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            # Restore the trained tensor as saved (fp32 master weights on a half-precision
            # base, see upcast_trainable), not rounded to the fresh base's dtype.
            params[name].data = value.to(params[name].device)
