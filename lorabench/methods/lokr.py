"""LoKr (peft): the weight update is a Kronecker product of a small and a low-rank matrix."""

from __future__ import annotations

from lorabench.methods.lycoris import LycorisMethod


class LoKr(LycorisMethod):
    name = "lokr"
    description = "LoKr (peft): update = C ⊗ (B·A), a Kronecker factorisation with very few parameters"
    label = "LoKr"
    peft_config_class = "LoKrConfig"
