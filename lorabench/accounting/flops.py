"""Training FLOPs per token and model FLOPs utilisation (MFU). Nothing here imports torch.

The FLOPs model (PaLM, Chowdhery et al. 2022, appendix B; Kaplan et al. 2020), per
token processed:

- every matmul weight of N parameters costs 2N in the forward pass and 2N in the
  backward pass for the gradient with respect to its input; a *trainable* weight costs
  another 2N for its own gradient. Full fine-tuning is therefore 6N, a frozen base
  4N (forward plus input gradients; those still flow, because something below or
  inside the layers trains), and each adapter matmul (LoRA A and B) 6 × its size.
  Embedding lookups, norms, biases and element-wise ops are not counted.
- attention scores and the weighted sum (QK^T and PV) cost 4 · layers · d_attn · seq
  forward and twice that backward: 12 · layers · d_attn · seq per token. These
  matmuls have no weights, so a frozen base saves nothing here: their backward needs
  the gradients of both operands either way. The causal mask is not halved (PaLM's
  convention), so kernels that skip masked blocks can exceed the model's count.
- gradient checkpointing recomputes each checkpointed layer's forward during the
  backward pass: that is *hardware* work, not model work. MFU (PaLM's definition)
  excludes it; HFU (hardware FLOPs utilisation) includes it.

MFU = model FLOPs per token × tokens/s ÷ the device's peak dense bf16/fp16 FLOP/s.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# Dense (no structured sparsity) bf16/fp16 tensor-core peaks, TFLOP/s, from NVIDIA's
# datasheets: H100 and H200 "Tensor Core GPU" datasheets (BF16 1,979 / 1,513 / 1,671
# TFLOPS *with sparsity* for SXM / PCIe / NVL, halved here), A100 datasheet (312), L40S
# datasheet (362.05 dense), L40 (181), L4 datasheet (121 dense), A10 datasheet (125; the
# AWS A10G has no public datasheet and is listed at the A10's figure), RTX A6000 (154.8),
# Ada Lovelace whitepaper appendix for the RTX 4090 (165.2 FP16/BF16 with FP32
# accumulate), V100 (125 fp16, no bf16) and T4 (65 fp16) datasheets. Order matters: the
# first pattern that matches the device name wins.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"GH200", 989.0),
    (r"H200", 989.0),
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H100", 989.0),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"L40\b", 181.0),
    (r"A10G", 125.0),
    (r"A10\b", 125.0),
    (r"\bL4\b", 121.0),
    (r"RTX 4090", 165.0),
    (r"A6000", 154.8),
    (r"V100", 125.0),
    (r"\bT4\b", 65.0),
)


def peak_tflops(device_name: str | None) -> float | None:
    """Datasheet dense bf16/fp16 peak for a CUDA device name, or None when not in the table."""
    if not device_name:
        return None
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


@dataclass(frozen=True)
class FlopsPerToken:
    """Training FLOPs per token, split the way the model above counts them."""

    forward: float
    backward: float
    recompute: float  # gradient checkpointing's extra forward (hardware, not model, work)
    attention: float  # the attention-score part of forward + backward, included above

    @property
    def model(self) -> float:
        return self.forward + self.backward

    @property
    def hardware(self) -> float:
        return self.forward + self.backward + self.recompute

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "model": self.model, "hardware": self.hardware}


def flops_per_token(
    frozen_matmul: int,
    trainable_matmul: int,
    layers: int,
    d_attn: int,
    seq_len: int,
    grad_checkpointing: bool = False,
    head_matmul: int = 0,
) -> FlopsPerToken:
    """FLOPs per token of one training step (see the module docstring).

    ``frozen_matmul`` / ``trainable_matmul``: parameters of matmul weights (linear
    layers, the output head, adapter matrices) without / with gradients.
    ``head_matmul``: the part of those in the output head, which checkpointing does not
    recompute (transformers checkpoints the decoder layers only).
    """
    n = frozen_matmul + trainable_matmul
    attn_fwd = 4.0 * layers * d_attn * seq_len
    fwd = 2.0 * n + attn_fwd
    bwd = 2.0 * n + 2.0 * trainable_matmul + 2.0 * attn_fwd
    recompute = (2.0 * (n - head_matmul) + attn_fwd) if grad_checkpointing else 0.0
    return FlopsPerToken(forward=fwd, backward=bwd, recompute=recompute, attention=3.0 * attn_fwd)


def attention_shape(config: dict[str, Any]) -> tuple[int, int]:
    """(layers that attend, width of the attention scores) from a config.json dict.

    Width is heads × head_dim (d_model for most models). An encoder-decoder counts its
    encoder and decoder layers, plus the decoder's cross-attention as one more layer each.
    """
    get = config.get
    d_model = get("hidden_size") or get("n_embd") or get("d_model") or 0
    heads = get("num_attention_heads") or get("n_head") or get("num_heads")
    head_dim = get("head_dim") or get("d_kv")
    d_attn = int(heads * head_dim) if heads and head_dim else int(d_model)
    layers = get("num_hidden_layers") or get("n_layer") or get("num_layers") or 0
    if get("is_encoder_decoder"):
        decoder = get("num_decoder_layers") or layers
        layers = layers + 2 * decoder
    return int(layers), d_attn


def mfu(flops_per_token: float, tokens_per_s: float | None, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None when throughput or peak is unknown)."""
    if not tokens_per_s or not peak_tflops:
        return None
    return flops_per_token * tokens_per_s / (peak_tflops * 1e12)


def matmul_params(model: Any) -> tuple[int, int, int]:
    """(frozen, trainable, output-head) parameters of a built model's matmul weights.

    Counts the weights of every linear layer (``nn.Linear`` and its bitsandbytes
    subclasses, GPT-2's ``Conv1D``, adapter matrices such as LoRA's A and B), once per
    module; bitsandbytes 4-bit weights at their unpacked size. Embedding lookups, norms
    and biases do no matmul and are left out.
    """
    import torch

    frozen = trainable = 0
    for module in model.modules():
        if not (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"):
            continue
        w = getattr(module, "weight", None)
        if w is None:
            continue
        n = w.numel()
        if type(w).__name__ == "Params4bit":
            n = n * 2 * w.element_size()
        if w.requires_grad:
            trainable += n
        else:
            frozen += n
    head = 0
    try:
        out = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        out = None
    if out is not None and getattr(out, "weight", None) is not None:
        w = out.weight
        head = w.numel() * (2 * w.element_size() if type(w).__name__ == "Params4bit" else 1)
    return frozen, trainable, head
