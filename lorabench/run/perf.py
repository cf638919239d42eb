"""The optimised training path (torch.compile, Liger's fused loss) and the run's
performance figures (FLOPs per token, MFU, the memory estimate beside the measurement).
"""

from __future__ import annotations

from typing import Any

from lorabench.accounting.flops import attention_shape, flops_per_token, matmul_params, mfu, peak_tflops
from lorabench.errors import UsageError


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
    from lorabench.accounting.estimate import estimate_model
    from lorabench.accounting.predict import spec_estimate_args

    args, kw = spec_estimate_args(spec, family, device, cdtype, method_options)
    est = estimate_model(*args, **kw, processes=spec.execution.processes, strategy=spec.execution.strategy)
    return {"allocated": est.allocated_bytes, "peak": est.peak_bytes, "breakdown": est.breakdown}


# Models whose logits are exactly output_head(backbone(x).last_hidden_state): no logit
# scaling or soft-capping that a chunked loss would have to repeat.
CHUNKED_CE_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "falcon", "phi3")


def chunked_ce_forward(model: Any, chunk_tokens: int = 4096) -> Any:
    """A causal-LM loss that never materialises the full logits (plain torch, any device).

    The backbone's final hidden states go through the output head ``chunk_tokens`` at
    a time, each chunk under activation checkpointing, so only one chunk's logits (and
    their fp32 copy) exist at once, in the forward and again in the backward pass. The
    loss is the mean next-token cross-entropy over labels != -100, as transformers'
    ``ForCausalLMLoss`` computes it. Returns ``forward(batch) -> loss``.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    mtype = getattr(getattr(hf, "config", None), "model_type", None)
    if mtype not in CHUNKED_CE_MODEL_TYPES:
        raise UsageError(
            f"train.loss: chunked supports causal LMs of types {', '.join(CHUNKED_CE_MODEL_TYPES)}; "
            f"this model is {mtype!r}"
        )
    backbone = hf.base_model
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else hf.get_output_embeddings()

    def chunk_loss(h: Any, labels: Any) -> Any:
        logits = head(h).float()
        return F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")

    def forward(batch: dict[str, Any]) -> Any:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = backbone(**inputs).last_hidden_state
        # next-token targets: position t predicts labels[t + 1]; the last position has none
        shifted = F.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)
        flat = hidden.reshape(-1, hidden.shape[-1])
        total = hidden.new_zeros((), dtype=torch.float32)
        for i in range(0, flat.shape[0], chunk_tokens):
            total = total + checkpoint(
                chunk_loss, flat[i : i + chunk_tokens], shifted[i : i + chunk_tokens], use_reentrant=False
            )
        return total / (shifted != -100).sum().clamp(min=1)

    return forward
