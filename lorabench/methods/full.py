"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import Any

from lorabench.methods.base import Method, MethodContext


class Full(Method):
    name = "full"
    description = "full fine-tuning: every parameter is trainable"
    trains_base_weights = True

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
