"""DoRA (peft): LoRA with the weight split into magnitude and direction (Liu et al., 2024)."""

from __future__ import annotations

from typing import Any, ClassVar

from lorabench.methods.lora import LoRA


class DoRA(LoRA):
    name = "dora"
    description = "DoRA (peft): weight-decomposed LoRA, a trained magnitude vector plus a LoRA direction update"
    extra: ClassVar[dict[str, Any]] = {"use_dora": True}
