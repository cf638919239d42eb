"""Model preparation around a method's ``apply``, shared by the run and the estimate tracer.

The tracer must build the model exactly as a run does, so these live below both.
"""

from __future__ import annotations

from typing import Any


def prepare_kbit(model: Any, grad_checkpointing: bool) -> Any:
    """peft's k-bit preparation for a quantised base (fp32 norms and head, input grads)."""
    from peft import prepare_model_for_kbit_training  # peft touches CUDA at import: runs and traces only

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=grad_checkpointing)


def upcast_trainable(model: Any) -> None:
    """Keep trainable parameters in fp32 (master weights) whatever the base dtype."""
    import torch  # methods/ stays torch-free at import: validate and list read method classes

    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()


def enable_grad_checkpointing(model: Any) -> None:
    """Activation checkpointing without reentrant autograd (what transformers recommends)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
