"""Peak training memory from a model's config alone: ``lorabench estimate``.

The estimate mirrors what a lorabench run does (see ``run/pipeline.py``): trainable
parameters are kept in fp32 (master weights), peft's k-bit preparation upcasts every
non-quantised parameter to fp32, activations run at the autocast dtype. Terms, in bytes
(b = batch, s = sequence, h = hidden, h_kv = key/value width, f = MLP width, a = heads,
V = vocabulary, L = layers, e = activation bytes, e_r = residual-stream bytes):

- ``weights``: the base model's parameters. fp32: 4 B each; bf16/fp16: 2 B, except the
  ones that train (held in fp32). int8: 1 B per linear weight plus one fp32 scale per
  output row. nf4/fp4: 0.5 B per linear weight plus, per 64-weight block, an absmax
  that is fp32 (4 B) or, with double quantisation, 8-bit (1 B) plus an fp32 constant
  per 256 blocks. Everything else (embeddings, norms, the head) is at the compute
  dtype, or fp32 after k-bit preparation (its upcast is reported on its own line).
- ``adapter``: parameters the method adds, fp32.
- ``gradients``: one fp32 gradient per trainable parameter.
- ``optimizer_state``: AdamW 8 B per trainable parameter (two fp32 moments), 8-bit
  AdamW 2 B plus one fp32 scale per 256-value block per moment, SGD 0 (no momentum).
- ``activations``: per layer and token, saved for backward: e·(4h + 2h_kv) for the
  matmul inputs and the attention kernel's q, k, v and output, 8h for the fp32 copies
  the two norms save, and the MLP: 3·e_io·f + e·f gated (SwiGLU), e_io·f + e·f
  otherwise, where e_io is the dtype between ops (fp32 after k-bit preparation, whose
  fp32 norms and bitsandbytes layers return their input's dtype; else e); 2·e_io·h more
  when norms train; GPT-2's ``gelu_new`` (written out of element-wise ops) 3·e_io·f
  more. Eager attention adds the softmax probabilities a·s·e (with attention dropout
  a·s·(2e + 1): the mask and the dropped copy too; on CPU, sdpa with dropout runs the
  same math path); dropout adds two bytes per residual element. With
  gradient checkpointing only each layer's input (h·e_r) is kept, plus one layer's
  activations while it is recomputed.
- int8 (bitsandbytes' ``MatMul8bitLt``): each int8 layer also saves its own input at the
  between-ops dtype, e_io·(2h + f) per layer and token (attention and MLP inputs, the
  down-projection input; the o-projection's is the attention output, saved anyway), and
  the widest int8 matmul holds transient buffers while it runs (``int8_matmul_buffers``:
  an fp16 copy and int8 rows of its input, an int32 product and its fp16 dequant,
  b·s·(3·max(h, f) + 6·max(f, h + 2h_kv))). Both found by ``lorabench estimate --trace``.
  Those inputs are kept as a ``ctx`` attribute, released with the autograd graph, which
  the training loop frees only when the next forward has returned: during that forward
  every layer's inputs of the previous step are still held (``int8_held_inputs``,
  L·b·s·(e_io·(2h + f) + e·h)); the peak of an int8 run is then in the forward pass.
- ``adapter_dropout``: LoRA's dropout (``lora_dropout`` > 0) saves a bool mask of each
  adapter's input and a dropped copy at e for the adapter's matmul: b·s·Σ in_features·(1 + e),
  summed over the adapted layers (one layer's share with gradient checkpointing); the
  trace finds about 10% more on the 1.1B llama shape (bf16 and nf4 alike).
- ``logits``: b·s·V·max(e + 8, 12) for a causal LM: in the forward pass the autocast
  logits, their fp32 copy and the fp32 log-softmax the loss saves; in the backward
  pass that log-softmax, its gradient and the logits' gradient (fp32). A chunked or
  fused loss (``train.loss``) holds at most 4096 tokens' logits at a time.
- ``optimizer_step``: the fp32 temporaries of a foreach AdamW step (4 B per trainable).
- ``cuda_context``: the CUDA context and kernels (512 MiB, typical; not counted by
  torch's allocator, so ``allocated_bytes`` leaves it out and ``peak_bytes`` keeps it).

Peak = weights + adapter + optimizer state + max(activations + logits (+ int8 buffers and
held inputs), gradients + optimizer step): activations are freed during the backward pass
as gradients appear.

Over several processes (``execution.processes`` = N, the figure is per rank): the
batch is the global batch, so each rank's activations and logits are those of
batch/N rows. DDP replicates everything else (its gradient buckets are the gradients
themselves, ``gradient_as_bucket_view``). FSDP divides weights, their k-bit upcast,
adapter, gradients, optimizer state and its step by N, and adds ``fsdp_gathered_unit``:
the whole parameters of the unit being computed, all-gathered for its forward or
backward (one layer's share of the weights; the root's embeddings and head, which
FSDP2 keeps gathered through the step, are not modelled).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from lorabench.errors import UsageError
from lorabench.models.ref import ModelKind, ModelRef
from lorabench.vocab import FLOAT_PRECISIONS, PRECISIONS, QUANTIZED, MiB, Precision, TaskFamily

CUDA_CONTEXT_BYTES = 512 * MiB
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
ATTENTION = ("eager", "sdpa", "flash_attention_2")
NF4_BLOCK = 64
DQ_BLOCK = 256
ADAM8_BLOCK = 256
CHUNK_TOKENS = 4096


@dataclass(frozen=True)
class Shape:
    """What the activation terms need from a config."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_width: int  # key/value projection width (h for multi-head, less with grouped queries)
    vocab: int
    gated_mlp: bool = False
    dropout: bool = False
    causal_lm: bool = True
    composite_gelu: bool = False  # GPT-2's gelu_new: written out of element-wise ops, saves 3 more f-sized tensors


@dataclass(frozen=True)
class Inventory:
    """Parameter counts by how they are stored (from the meta-device model)."""

    quant_numel: int  # linear weights bitsandbytes would quantise
    quant_rows: int  # their output rows (int8 keeps one fp32 scale per row)
    quant_tensors: int
    other_base: int  # every other base parameter: embeddings, norms, biases, the head
    trainable_base: int  # base parameters that train (all of them for full fine-tuning)
    adapter: int  # parameters the method adds
    norms_train: bool = False


@dataclass
class Estimate:
    """``peak_bytes`` includes the CUDA context; ``allocated_bytes`` is torch's allocator view."""

    peak_bytes: int
    allocated_bytes: int
    breakdown: dict[str, int]
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    method: str = "analytic"  # "trace": lorabench.accounting.trace ran the step on fake tensors
    detail: dict[str, Any] = field(default_factory=dict)  # the trace's peak phase, by-module split, ...

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _dtype_bytes(name: str) -> int:
    return 4 if name == "fp32" else 2


def weight_bytes(inv: Inventory, precision: str, compute_dtype: str, prepare_kbit: bool, double_quant: bool) -> dict:
    """Base weights, by storage: see the module docstring."""
    if precision in FLOAT_PRECISIONS:
        e = _dtype_bytes(precision)
        base = inv.quant_numel + inv.other_base
        return {"weights": (base - inv.trainable_base) * e + inv.trainable_base * 4}
    if precision == Precision.INT8:
        quant = inv.quant_numel + 4 * inv.quant_rows
    else:
        blocks = -(-inv.quant_numel // NF4_BLOCK)
        absmax = blocks + 4 * -(-blocks // DQ_BLOCK) if double_quant else 4 * blocks
        quant = inv.quant_numel // 2 + absmax
    other = inv.other_base * _dtype_bytes(compute_dtype)
    out = {"weights": quant + other}
    if prepare_kbit and compute_dtype != "fp32":
        out["kbit_fp32_upcast"] = inv.other_base * (4 - _dtype_bytes(compute_dtype))
    return out


def optimizer_bytes(trainable: int, optimizer: str) -> int:
    if optimizer == "adamw":
        return 8 * trainable
    if optimizer == "adamw8bit":
        return 2 * (trainable + 4 * -(-trainable // ADAM8_BLOCK))
    return 0


def layer_activation_bytes(
    shape: Shape,
    tokens: int,
    seq: int,
    e: int,
    attn: str,
    norms_train: bool,
    e_io: int | None = None,
    int8: bool = False,
) -> int:
    """Bytes one layer saves for backward over ``tokens`` = batch × seq tokens.

    ``e`` is the autocast dtype every matmul input is cast to (and saved at); ``e_io``
    the dtype of the tensors between ops, which is fp32 (4) after k-bit preparation
    because its fp32 norms and bitsandbytes layers return their input's dtype. The MLP's
    element-wise tensors are saved at ``e_io``, plus their cast copy when it differs.
    """
    h, f = shape.hidden, shape.intermediate
    e_io = e if e_io is None else e_io
    # q, k, v and the attention output (saved by the kernel), the o-projection input,
    # the attention and MLP inputs (normed, cast): e·(4h + 2h_kv); the norms' fp32 copies: 8h.
    per_token = e * (4 * h + 2 * shape.kv_width) + 8 * h
    if shape.gated_mlp:  # act(gate) saves gate, gate·up saves act(gate) and up, down saves the product
        per_token += 3 * e_io * f + e * f
    else:  # act saves its input, fc2 its output (cast)
        per_token += e_io * f + e * f
    if shape.composite_gelu:  # 0.5·x·(1 + tanh(...)): tanh's output, 1 + it, and 0.5·x
        per_token += 3 * e_io * f
    if norms_train:
        per_token += 2 * e_io * h
    if attn == "eager":  # the softmax output; with dropout also its mask and the dropped copy
        per_token += shape.heads * seq * ((2 * e + 1) if shape.dropout else e)
    else:
        per_token += 4 * shape.heads  # the kernel's log-sum-exp, fp32
    if shape.dropout:
        per_token += 2 * h
    if int8:  # bnb's MatMul8bitLt saves its own input (attention, MLP and down-projection inputs) at e_io
        per_token += e_io * (2 * h + f)
    return per_token * tokens


def int8_buffer_bytes(shape: Shape, tokens: int) -> int:
    """The widest int8 matmul's transient buffers: fp16 copy and int8 rows of its input, int32 and fp16 outputs."""
    widest_in = max(shape.hidden, shape.intermediate)
    widest_out = max(shape.intermediate, shape.hidden + 2 * shape.kv_width)
    return tokens * (3 * widest_in + 6 * widest_out)


def int8_held_bytes(shape: Shape, tokens: int, e: int, e_io: int) -> int:
    """The previous step's int8 inputs, still held while the next forward runs.

    ``MatMul8bitLt`` keeps its input as a plain ``ctx`` attribute, which lives as long as
    the autograd graph, and the training loop releases the graph when ``loss`` is rebound
    after the next forward: per layer the attention and MLP inputs and the
    down-projection input at e_io, and the o-projection input at e.
    """
    return shape.layers * tokens * (e_io * (2 * shape.hidden + shape.intermediate) + e * shape.hidden)


def estimate(
    shape: Shape,
    inv: Inventory,
    precision: str,
    batch_size: int,
    seq_len: int,
    grad_checkpointing: bool = False,
    optimizer: str = "adamw",
    attn: str = "sdpa",
    compute_dtype: str = "bf16",
    prepare_kbit: bool = True,
    double_quant: bool = True,
    device: str = "cuda",
    loss: str = "default",
    dropout_features: int = 0,
    processes: int = 1,
    strategy: str = "ddp",
) -> Estimate:
    """Every term of the module docstring, for one training configuration (per rank over ``processes``).

    ``dropout_features``: the summed input width of the adapter layers with dropout (LoRA's
    ``lora_dropout``), over the whole model.
    """
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    if attn not in ATTENTION:
        raise UsageError(f"unknown attention implementation {attn!r}; known: {', '.join(ATTENTION)}")
    kbit = precision in QUANTIZED
    e = _dtype_bytes(compute_dtype) if kbit else _dtype_bytes(precision)
    # The residual stream is fp32 whenever the embeddings are: fp32 runs, full fine-tuning
    # (trainable weights are upcast) and k-bit preparation (it upcasts the embeddings).
    base_total = inv.quant_numel + inv.other_base
    fp32_stream = e == 4 or (kbit and prepare_kbit) or inv.trainable_base * 2 > base_total
    e_r = 4 if fp32_stream else e
    if processes < 1 or batch_size % processes:
        raise UsageError(f"the batch ({batch_size}) must split evenly over {processes} processes")
    tokens = batch_size // processes * seq_len  # each rank's share of the global batch
    trainable = inv.trainable_base + inv.adapter
    b: dict[str, int] = {}
    b.update(weight_bytes(inv, precision, compute_dtype, prepare_kbit, double_quant))
    b["adapter"] = 4 * inv.adapter
    b["gradients"] = 4 * trainable
    b["optimizer_state"] = optimizer_bytes(trainable, optimizer)
    e_io = 4 if (kbit and prepare_kbit) else e
    # On CPU, sdpa with dropout runs PyTorch's math path, which saves what eager attention does.
    kernel = "eager" if (device == "cpu" and attn == "sdpa" and shape.dropout) else attn
    layer = layer_activation_bytes(shape, tokens, seq_len, e, kernel, inv.norms_train, e_io, int8=precision == "int8")
    b["activations_per_layer"] = layer
    if grad_checkpointing:
        acts = shape.layers * tokens * shape.hidden * e_r + layer
    else:
        acts = shape.layers * layer
    acts += tokens * shape.hidden * (e_r + 4)  # embeddings' output and the final norm's fp32 copy
    if dropout_features:
        # Each adapter's dropout saves its bool mask, and a dropped copy at the autocast
        # dtype is saved for the adapter's matmul beside the shared input (the trace shows
        # the same 3 bytes per element at bf16 whether the stream is bf16 or fp32).
        drop = tokens * dropout_features * (1 + e)
        b["adapter_dropout"] = drop
        acts += drop if not grad_checkpointing else drop // max(1, shape.layers)
    b["activations"] = acts
    # A chunked or fused loss holds one chunk's logits at a time (4096 tokens for `chunked`).
    logit_tokens = tokens if loss == "default" else min(tokens, CHUNK_TOKENS)
    b["logits"] = logit_tokens * shape.vocab * max(e + 8, 12) if shape.causal_lm else 0
    b["optimizer_step"] = 4 * trainable if optimizer == "adamw" else 0
    if precision == "int8":
        b["int8_matmul_buffers"] = int8_buffer_bytes(shape, tokens)
        b["int8_held_inputs"] = int8_held_bytes(shape, tokens, e, e_io)
    b["cuda_context"] = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    if processes > 1 and strategy == "fsdp":
        b["fsdp_gathered_unit"] = (b["weights"] + b.get("kbit_fp32_upcast", 0)) // max(1, shape.layers)
        for key in ("weights", "kbit_fp32_upcast", "adapter", "gradients", "optimizer_state", "optimizer_step"):
            if key in b:
                b[key] = -(-b[key] // processes)  # each rank's shard (rounded up)
    static = b["weights"] + b.get("kbit_fp32_upcast", 0) + b["adapter"] + b["optimizer_state"]
    static += b.get("fsdp_gathered_unit", 0)
    forward = acts + b["logits"] + b.get("int8_matmul_buffers", 0) + b.get("int8_held_inputs", 0)
    dynamic = max(forward, b["gradients"] + b["optimizer_step"])
    allocated = static + dynamic
    return Estimate(
        peak_bytes=allocated + b["cuda_context"],
        allocated_bytes=allocated,
        breakdown=b,
        inputs={
            "precision": precision,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "grad_checkpointing": grad_checkpointing,
            "optimizer": optimizer,
            "attn_implementation": attn,
            "loss": loss,
            "processes": processes,
            "strategy": strategy if processes > 1 else None,
            "compute_dtype": compute_dtype if kbit else None,
            "activation_bytes": e,
            "residual_bytes": e_r,
            "between_ops_bytes": e_io,
            "device": device,
            "shape": dataclasses.asdict(shape),
            "params": dataclasses.asdict(inv),
        },
    )


def shape_from_config(config: dict[str, Any], causal_lm: bool = True) -> Shape:
    """Shape terms from a config.json dict (llama, GPT-2, BERT, T5 and similar names)."""
    get = config.get
    hidden = int(get("hidden_size") or get("n_embd") or get("d_model") or 0)
    heads = int(get("num_attention_heads") or get("n_head") or get("num_heads") or 1)
    head_dim = int(get("head_dim") or get("d_kv") or hidden // heads)
    kv_heads = int(get("num_key_value_heads") or heads)
    layers = int(get("num_hidden_layers") or get("n_layer") or get("num_layers") or 0)
    if get("is_encoder_decoder"):
        layers += int(get("num_decoder_layers") or get("num_layers") or 0)
    inter = int(get("intermediate_size") or get("n_inner") or get("d_ff") or 4 * hidden)
    act = str(get("hidden_act") or get("activation_function") or get("feed_forward_proj") or "")
    gated = bool(
        get("model_type") in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3") or "gated" in act
    )
    drop = any(
        float(get(k) or 0) > 0
        for k in ("resid_pdrop", "attn_pdrop", "hidden_dropout_prob", "attention_dropout", "dropout_rate", "dropout")
    )
    return Shape(
        composite_gelu=act == "gelu_new",
        layers=layers,
        hidden=hidden,
        intermediate=inter,
        heads=heads,
        kv_width=kv_heads * head_dim,
        vocab=int(get("vocab_size") or 0),
        gated_mlp=gated,
        dropout=drop,
        causal_lm=causal_lm,
    )


def inventory(net: Any, base_ids: set[int], quant_ids: dict[int, int], norms_train: bool) -> Inventory:
    """Classify a meta-device model's parameters (after the method was applied)."""
    seen: set[int] = set()
    quant_numel = quant_rows = quant_tensors = other = trainable_base = adapter = 0
    for p in net.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        if id(p) not in base_ids:
            adapter += n
            continue
        if p.requires_grad:
            trainable_base += n
        if id(p) in quant_ids:
            quant_numel += n
            quant_rows += quant_ids[id(p)]
            quant_tensors += 1
        else:
            other += n
    return Inventory(quant_numel, quant_rows, quant_tensors, other, trainable_base, adapter, norms_train)


def _config_dir(model: str) -> str:
    """A directory holding ``config.json`` for MODEL: builtin:NAME, config:NAME, packaged:NAME, a directory or a config file."""

    ref = ModelRef.parse(model)
    if ref.kind is ModelKind.BUILTIN:
        from lorabench.models import BUILTIN_MODELS
        from lorabench.models.loading import resolve_path

        if ref.name not in BUILTIN_MODELS:
            raise UsageError(BUILTIN_MODELS.unknown_message(ref.name))
        if BUILTIN_MODELS.get(ref.name).loader is not None:
            raise UsageError(f"{model} is a hand-written model with no transformers config to estimate from")
        return resolve_path(model)
    shipped = ref.shipped_dir()
    if shipped is not None:
        return shipped
    path = os.path.expanduser(model)
    if os.path.isfile(path):
        tmp = tempfile.mkdtemp(prefix="lorabench-config-")
        shutil.copy(path, os.path.join(tmp, "config.json"))
        return tmp
    return path


def estimate_model(
    model: str,
    method: str,
    precision: str,
    batch_size: int,
    seq_len: int,
    rank: int | None = None,
    target_modules: list[str] | None = None,
    grad_checkpointing: bool = False,
    optimizer: str = "adamw",
    attn: str | None = None,
    device: str = "cuda",
    compute_dtype: str | None = None,
    prepare_kbit: bool = True,
    double_quant: bool = True,
    task_type: str | None = None,
    method_opts: Any = None,
    loss: str = "default",
    processes: int = 1,
    strategy: str = "ddp",
) -> Estimate:
    """Build MODEL on the meta device, apply the method as a run would, and :func:`estimate`."""

    import torch

    from lorabench.accounting.params import apply_on_meta, check_rank, meta_model, method_options, read_config
    from lorabench.methods import method_class
    from lorabench.methods.base import method_context
    from lorabench.models.loading import CLASSIFIER_HEADS

    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if batch_size < 1 or seq_len < 1:
        raise UsageError("--batch-size and --seq-len should be >= 1")
    cls = method_class(method, dataclasses.asdict(method_opts) if dataclasses.is_dataclass(method_opts) else None)
    check_rank(cls, rank)
    options = method_opts if method_opts is not None else method_options(cls, None, target_modules)
    path = _config_dir(model)
    config, raw = read_config(path)
    with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
        raw_full = json.load(fh)
    reason = cls.invalid_reason(precision, config.model_type)
    if reason:
        raise UsageError(f"{method} at {precision} on a {config.model_type} model is invalid: {reason}")
    net, task_type, family, notes = meta_model(path, config, raw, task_type)
    quant_ids: dict[int, int] = {}
    base_ids: set[int] = set()

    def base_parts(net: Any) -> Any:
        """Which of ``net``'s weights are base and which bitsandbytes would quantise (by id)."""
        out = net.get_output_embeddings() if hasattr(net, "get_output_embeddings") else None
        skip = {id(out.weight)} if out is not None else set()
        quant_ids.clear()
        for name, mod in net.named_modules():
            conv1d = type(mod).__name__ == "Conv1D"  # GPT-2's transposed linear; bitsandbytes replaces it too
            if (isinstance(mod, torch.nn.Linear) or conv1d) and id(mod.weight) not in skip:
                if name.split(".")[-1] not in CLASSIFIER_HEADS:
                    quant_ids[id(mod.weight)] = mod.weight.shape[1 if conv1d else 0]
        base_ids.clear()
        base_ids.update(id(p) for p in net.parameters())
        return net

    base_parts(net)
    ctx = method_context(
        cls,
        rank=rank,
        options=options,
        task_family=family,
        precision=precision,
        model_type=config.model_type,
        target_modules=tuple(target_modules) if target_modules and method_opts is not None else None,
    )
    try:
        net = apply_on_meta(cls, net, ctx, lambda: base_parts(meta_model(path, config, raw, task_type, None, "cpu")[0]))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{method} cannot be applied to {model!r} ({config.model_type}): {exc}") from None
    norms_train = any(p.requires_grad for n, p in net.named_parameters() if "norm" in n.lower() or "ln_" in n.lower())
    dropout_features = sum(
        int(getattr(mod, "in_features", 0) or 0)
        for mod in net.modules()
        if isinstance(getattr(mod, "lora_dropout", None), torch.nn.ModuleDict)
        and any(isinstance(d, torch.nn.Dropout) and d.p > 0 for d in mod.lora_dropout.values())
    )
    inv = inventory(net, base_ids, quant_ids, norms_train)
    cdtype = compute_dtype or ("bf16" if device == "cuda" else "fp32")
    shape = shape_from_config({**raw_full, **config.to_dict()}, causal_lm=family == TaskFamily.CAUSAL_LM)
    attn = attn or ("eager" if getattr(config, "_attn_implementation", None) == "eager" else "sdpa")
    result = estimate(
        shape,
        inv,
        precision,
        batch_size,
        seq_len,
        grad_checkpointing=grad_checkpointing,
        optimizer=optimizer,
        attn=attn,
        compute_dtype=cdtype,
        prepare_kbit=prepare_kbit,
        double_quant=double_quant,
        device=device,
        loss=loss,
        dropout_features=dropout_features,
        processes=processes,
        strategy=strategy,
    )
    result.inputs.update(model=model, method=method, rank=ctx.rank, task_type=task_type)
    result.notes.extend(notes)
    if getattr(config, "is_encoder_decoder", False):
        # T5-XXL, LoRA bf16 at batch 1 x 128: the step's own memory (activations, logits)
        # is 1,228 MiB here against 3,802 MiB traced; the weights agree to the byte.
        result.inputs["activations_apply"] = False
        result.notes.append(
            "the activation and logits terms are written for one decoder-only stack and do not apply to an "
            "encoder-decoder model (two stacks, cross-attention, T5's attention with position bias): on T5-XXL "
            "they come to a third of the traced step; the weights, gradients and optimizer state still apply. "
            "Use --trace"
        )
    return result
