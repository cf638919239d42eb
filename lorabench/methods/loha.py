"""LoHa (peft): the weight update is a Hadamard product of two low-rank products."""

from __future__ import annotations

from lorabench.methods.lycoris import LycorisMethod


class LoHa(LycorisMethod):
    name = "loha"
    description = "LoHa (peft): update = (B1·A1) ⊙ (B2·A2), rank r² expressiveness for 2x LoRA's parameters"
    label = "LoHa"
    peft_config_class = "LoHaConfig"
