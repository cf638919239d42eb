"""BitFit: train only the bias terms (Ben Zaken et al., 2022).

Every parameter named ``*.bias`` trains, LayerNorm biases included, as in the paper;
a classification task's new head trains in full too (the paper trains its task head,
and peft's rule for every adapter method is the same). Biases of bitsandbytes layers
are ordinary float tensors, so BitFit also runs on an int8/4-bit base.
"""

from __future__ import annotations

from typing import Any

from lorabench.methods.base import Method, MethodContext, head_parameter_names


def bias_parameter_names(model: Any) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}


def _match_norm_weights(model: Any, biases: set[str]) -> None:
    """Keep a norm layer's frozen 1-D weight in fp32 when its bias trains in fp32.

    Trainable parameters are kept in fp32 (``upcast_trainable``) on a bf16/fp16 base;
    LayerNorm needs its weight and bias in one dtype, and its weight is tiny.
    """
    import torch

    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if (
            f"{name}.bias" in biases
            and isinstance(weight, torch.nn.Parameter)
            and weight.dim() == 1
            and weight.dtype in (torch.float16, torch.bfloat16)
        ):
            weight.data = weight.data.float()


class BitFit(Method):
    name = "bitfit"
    description = "BitFit: train only the bias terms (plus a classification head); every weight stays frozen"

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        head = head_parameter_names(model, ctx.task_family)
        biases = bias_parameter_names(model) - head
        if not biases:
            raise ValueError(
                f"bitfit: this {ctx.model_type} model has no bias parameters to train "
                "(T5, LLaMA and most recent decoders are bias-free); pick another method"
            )
        selected = biases | head
        for n, p in model.named_parameters():
            p.requires_grad_(n in selected)
        _match_norm_weights(model, biases)
        return model

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        head = head_parameter_names(model, ctx.task_family)
        trained = [n for n, p in model.named_parameters() if p.requires_grad]
        return {"bias_tensors": len([n for n in trained if n not in head]), "head": sorted(head)}
