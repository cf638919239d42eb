"""rsLoRA (peft): LoRA scaled by alpha/sqrt(r) instead of alpha/r (Kalajdzievski, 2023)."""

from __future__ import annotations

from typing import Any, ClassVar

from lorabench.methods.lora import LoRA


class RsLoRA(LoRA):
    name = "rslora"
    description = "rank-stabilised LoRA (peft): scaling alpha/sqrt(r), so high ranks keep learning"
    extra: ClassVar[dict[str, Any]] = {"use_rslora": True}
