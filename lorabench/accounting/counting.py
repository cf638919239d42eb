"""Parameter counting with one convention, for runs, ``lorabench params`` and estimates alike."""

from __future__ import annotations

from typing import Any


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) with peft's ``get_nb_trainable_parameters`` convention.

    Shared (tied) tensors count once; bitsandbytes ``Params4bit`` hold two 4-bit values
    per byte of storage, so they count as ``numel × 2 × itemsize`` (their unpacked size).
    """
    trainable = total = 0
    for _, p in model.named_parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            itemsize = (
                p.element_size()
                if hasattr(p, "element_size")
                else getattr(getattr(p, "quant_storage", None), "itemsize", 1)
            )
            n = n * 2 * itemsize
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
