"""The optimised training path (torch.compile, Liger's fused loss) and the run's
performance figures (FLOPs per token, MFU, the memory estimate beside the measurement).
"""

from __future__ import annotations

from typing import Any

from lorabench.errors import UsageError
from lorabench.flops import attention_shape, flops_per_token, matmul_params, mfu, peak_tflops


def apply_liger(model: Any, device: str) -> str:
    """Patch ``model`` with Liger kernels (fused linear + cross-entropy, RMSNorm, SwiGLU, RoPE).

    Liger's kernels are Triton kernels: they need a CUDA device and the liger-kernel
    package. Anything else is a usage error that says so, never a silent fallback.
    """
    if device != "cuda":
        raise UsageError("train.loss: liger needs a CUDA device (Liger's kernels are Triton GPU kernels)")
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError as exc:
        raise UsageError(
            f"train.loss: liger needs the liger-kernel package ({exc}); pip install liger-kernel"
        ) from None
    _apply_liger_kernel_to_instance(model=model)
    return "liger-kernel fused linear cross-entropy"


def compile_model(model: Any) -> Any:
    """``torch.compile`` the module the training loop calls; the original stays for saving."""
    import torch

    return torch.compile(model)


def flops_profile(
    model: Any,
    config: dict[str, Any] | None,
    seq_len: int,
    grad_checkpointing: bool,
    tokens_per_s: float | None,
    device: str,
    device_name: str | None,
    autocast_16bit: bool,
    peak_override: float | None,
) -> tuple[dict[str, Any], list[str]]:
    """``model_flops_per_token``, ``hardware_flops_per_token``, ``mfu``, ``hfu`` and the peak used."""
    notes: list[str] = []
    if not config:
        return {"model_flops_per_token": None, "mfu": None}, ["no transformers config: FLOPs per token not computed"]
    frozen, trainable, head = matmul_params(model)
    layers, d_attn = attention_shape(config)
    f = flops_per_token(frozen, trainable, layers, d_attn, seq_len, grad_checkpointing, head)
    peak, source = peak_override, "execution.peak_tflops"
    if peak is None and device == "cuda":
        if autocast_16bit:
            peak, source = peak_tflops(device_name), "datasheet dense bf16/fp16"
            if peak is None:
                notes.append(f"mfu is null: {device_name!r} is not in the peak table; set execution.peak_tflops")
        else:
            notes.append("mfu is null: the peak table holds bf16/fp16 figures and this run has no 16-bit autocast")
    elif peak is None:
        notes.append(f"mfu is null: no datasheet peak for a {device} run; set execution.peak_tflops to compute it")
    out = {
        "model_flops_per_token": f.model,
        "hardware_flops_per_token": f.hardware,
        "flops_matmul_params": {"frozen": frozen, "trainable": trainable, "head": head},
        "peak_tflops": peak,
        "peak_tflops_source": source if peak is not None else None,
        "mfu": mfu(f.model, tokens_per_s, peak),
        "hfu": mfu(f.hardware, tokens_per_s, peak),
    }
    return out, notes


def estimate_for_spec(spec: Any, method_options: Any, family: str, device: str, cdtype: str | None) -> dict[str, Any]:
    """The memory estimate for this run's configuration (``lorabench estimate``'s numbers)."""
    from lorabench.estimate import estimate_model

    tm = spec.model.get("target_modules")
    est = estimate_model(
        spec.model["path"],
        spec.method,
        spec.precision,
        spec.train["batch_size"],
        spec.train["max_seq_len"],
        rank=spec.rank,
        target_modules=list(tm) if tm else None,
        grad_checkpointing=bool(spec.train["grad_checkpointing"]),
        optimizer=spec.train["optimizer"],
        attn=spec.model.get("attn_implementation"),
        device=device,
        compute_dtype=cdtype,
        prepare_kbit=bool(spec.quantization.get("prepare_kbit", True)),
        double_quant=bool(spec.quantization.get("double_quant", True)),
        task_type={"causal-lm": "causal-lm", "seq2seq": "seq2seq-lm", "classification": "seq-cls"}[family],
        method_opts=method_options,
    )
    return {"allocated": est.allocated_bytes, "peak": est.peak_bytes, "breakdown": est.breakdown}
