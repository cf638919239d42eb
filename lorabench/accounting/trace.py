"""Traced memory: run one real training step on fake tensors and count what it allocates.

``lorabench estimate --trace`` builds the model the way a run builds it (same config,
dtype and attention implementation; bitsandbytes layers put in by transformers' own
quantizer and quantised by the bitsandbytes functions loading calls; peft's k-bit
preparation; the method's ``apply``; fp32 master weights; gradient checkpointing), then
executes two training steps (forward under autocast, loss, backward, gradient clipping,
a foreach AdamW step, ``zero_grad``) and one evaluation forward, all under
``torch._subclasses.fake_tensor.FakeTensorMode``. Fake tensors carry shapes, dtypes and
storages but no data, so a 70B model traces on a laptop. The second step is the steady
state: optimizer state exists while activations are live.

A GPU run is reproduced on fake *CPU* tensors: on a CPU-only torch build, fake CUDA
tensors cannot be indexed (Python indexing asks for a CUDA device guard). What differs
between the two devices is emulated and listed in ``notes``: CUDA autocast's cast policy
(:class:`CudaAutocastPolicy`), bitsandbytes' CUDA int8 matmul (``MatMul8bitLt`` and the
int32 buffer of its composite kernel), foreach AdamW, cuBLAS's workspace.

:class:`AllocationCounter` is the counting part: a ``TorchDispatchMode`` that sees every
aten (and bitsandbytes) op, counts each new output storage as the CUDA caching
allocator would (rounded up to its 512-byte blocks) until a weakref callback says the
storage was freed, and remembers when the peak happened and what was live. The same
counter runs without fake tensors on a real CPU step; ``tests/test_trace.py`` checks
that fake and real steps allocate the same.

``torch.distributed._tools.mem_tracker.MemTracker`` is not used: it registers a
gradient hook on every parameter and fails on peft models' frozen ones.

Left out: the CUDA context (added as the analytic model's constant in ``peak_bytes``),
the caching allocator's reserved-but-free memory and fragmentation, attention kernels'
CUDA-only workspaces (the CPU kernels' are counted instead), and any padding in real
batches (the trace's batches are full length).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import re
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lorabench.models.ref import ModelKind, ModelRef
from lorabench.suite.schema import QuantSettings
from lorabench.vocab import HeadType, MiB

BLOCK_BYTES = 512  # the CUDA caching allocator rounds every allocation up to 512 bytes (kMinBlockSize)
# cuBLAS's workspace comes from the caching allocator (CUBLAS_WORKSPACE_CONFIG default on Hopper
# is 4096 KiB x 8 = 32 MiB, once per handle/stream); it is live from the first matmul on.
CUBLAS_WORKSPACE_BYTES = 32 * MiB
CATEGORIES = (
    "parameters",
    "quantisation_constants",
    "buffers",
    "gradients",
    "optimizer_state",
    "activations",
    "temporaries",
)


def round_block(nbytes: int) -> int:
    """What the caching allocator hands out for a request of ``nbytes``."""
    return -(-nbytes // BLOCK_BYTES) * BLOCK_BYTES


class _Block:
    __slots__ = ("alloc", "category", "free", "module", "phase", "ref", "size")

    def __init__(self, alloc: int, size: int, category: str, module: str, phase: str) -> None:
        self.alloc, self.free, self.size = alloc, None, size
        self.category, self.module, self.phase = category, module, phase
        self.ref: Any = None


@dataclass
class TraceResult:
    """The peak and what was live at it: by category, by top-level module, and the phase."""

    peak_bytes: int
    phase: str
    by_category: dict[str, int]
    by_module: dict[str, int]
    phase_peaks: dict[str, int] = field(default_factory=dict)
    static: dict[str, int] = field(default_factory=dict)  # what stays between steps, and the gradients' size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AllocationCounter(TorchDispatchMode):
    """Count every storage an op creates, as the CUDA caching allocator would, until it is freed.

    Use as a context manager around the work; :meth:`register` the tensors that existed
    before (parameters, buffers, quantisation constants); :meth:`set_phase` and
    :meth:`tag` name what is allocated and what it is; :meth:`result` gives the peak.
    """

    def __init__(self, device: str = "cuda") -> None:
        super().__init__()
        self.device = device
        self.t = 0
        self.now = 0
        self.peak = 0
        self.peak_t = 0
        self.peak_phase = ""
        self.phase = "setup"
        self.module = "(none)"
        self.blocks: list[_Block] = []
        self.live: dict[int, _Block] = {}
        self.phase_peaks: dict[str, int] = {}
        self.static: dict[str, int] = {}

    # -- bookkeeping ------------------------------------------------------------------
    def _add(self, st: torch.UntypedStorage, category: str, module: str | None = None) -> _Block | None:
        key = st._cdata
        blk = self.live.get(key)
        if blk is not None:
            return blk
        size = round_block(st.nbytes())
        self.t += 1
        blk = _Block(self.t, size, category, module or self.module, self.phase)
        blk.ref = weakref.ref(st, lambda _r, k=key: self._free(k))
        self.live[key] = blk
        self.blocks.append(blk)
        self.now += size
        if self.now > self.phase_peaks.get(self.phase, 0):
            self.phase_peaks[self.phase] = self.now
        if self.now > self.peak:
            self.peak, self.peak_t, self.peak_phase = self.now, self.t, self.phase
        return blk

    def _free(self, key: int) -> None:
        blk = self.live.pop(key, None)
        if blk is None:
            return
        self.t += 1
        blk.free = self.t
        self.now -= blk.size

    def add_bytes(self, nbytes: int, category: str, module: str) -> None:
        """A permanent allocation no op shows (e.g. cuBLAS's workspace)."""
        self.t += 1
        blk = _Block(self.t, round_block(nbytes), category, module, self.phase)
        self.blocks.append(blk)
        self.live[-self.t] = blk
        self.now += blk.size
        if self.now > self.peak:
            self.peak, self.peak_t, self.peak_phase = self.now, self.t, self.phase

    def register(self, tensors: Any, category: str, module: str = "(none)") -> None:
        """Count tensors that exist already (a model's parameters) under ``category``."""
        for t in tree_leaves(tensors):
            if isinstance(t, torch.Tensor):
                blk = self._add(t.untyped_storage(), category, module)
                if blk is not None and blk.category != category:
                    blk.category = category
                    blk.module = module

    def tag(self, tensors: Any, category: str, module: str | None = None) -> None:
        """Reclassify the live storages of ``tensors`` (e.g. gradients once backward made them)."""
        for t in tree_leaves(tensors):
            if isinstance(t, torch.Tensor):
                blk = self.live.get(t.untyped_storage()._cdata)
                if blk is not None:
                    blk.category = category
                    if module is not None:
                        blk.module = module

    def live_by_category(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for blk in self.live.values():
            out[blk.category] = out.get(blk.category, 0) + blk.size
        return out

    def set_phase(self, phase: str) -> None:
        if self.phase == "forward" or self.phase.endswith(".forward"):
            # What the forward pass allocated and still holds is saved for backward (or the loss).
            for blk in self.live.values():
                if blk.phase == self.phase and blk.category == "temporaries":
                    blk.category = "activations"
        self.phase = phase

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func.namespace == "bitsandbytes":
            out = _bnb_composite(self, func, args, kwargs)
            if out is not None:
                return out
        return self.run(func, *args, **kwargs)

    def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``func`` and count its new output storages."""
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == self.device:
                st = t.untyped_storage()
                blk = self.live.get(st._cdata)
                if blk is None:
                    self._add(st, "temporaries")
                elif round_block(st.nbytes()) != blk.size:  # resized in place
                    self.now += round_block(st.nbytes()) - blk.size
                    blk.size = round_block(st.nbytes())
                    if self.now > self.peak:
                        self.peak, self.peak_t, self.peak_phase = self.now, self.t, self.phase
        return out

    # -- the answer -------------------------------------------------------------------
    def result(self) -> TraceResult:
        by_cat: dict[str, int] = {}
        by_mod: dict[str, int] = {}
        for blk in self.blocks:
            if blk.alloc <= self.peak_t and (blk.free is None or blk.free > self.peak_t):
                by_cat[blk.category] = by_cat.get(blk.category, 0) + blk.size
                by_mod[blk.module] = by_mod.get(blk.module, 0) + blk.size
        return TraceResult(
            peak_bytes=self.peak,
            phase=self.peak_phase,
            by_category={k: by_cat[k] for k in CATEGORIES if k in by_cat},
            by_module=dict(sorted(by_mod.items(), key=lambda kv: -kv[1])),
            phase_peaks=dict(self.phase_peaks),
            static=dict(self.static),
        )


def module_group(name: str) -> str:
    """A module's top-level group: ``model.layers.*`` for every layer, else the first two names."""
    name = re.sub(r"^(base_model\.model\.)+", "", name)
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join([*parts[:i], "*"])
    return ".".join(parts[:2]) or "(root)"


@contextlib.contextmanager
def module_scopes(model: torch.nn.Module, counter: AllocationCounter) -> Iterator[None]:
    """Name allocations after the top-level module running them (forward and checkpoint recompute)."""
    groups: dict[int, str] = {}
    for name, mod in model.named_modules():
        if name and module_group(name) != module_group(name.rsplit(".", 1)[0] if "." in name else ""):
            groups.setdefault(id(mod), module_group(name))
    stack: list[str] = []

    def pre(mod: torch.nn.Module, _args: Any) -> None:
        g = groups.get(id(mod))
        if g is not None:
            stack.append(counter.module)
            counter.module = g

    def post(mod: torch.nn.Module, _args: Any, _out: Any) -> None:
        if id(mod) in groups and stack:
            counter.module = stack.pop()

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    try:
        yield
    finally:
        h1.remove()
        h2.remove()


def _fns(*names: str) -> set[Any]:
    out: set[Any] = set()
    for name in names:
        for space in (torch, torch.nn.functional, torch.Tensor, torch.special, torch.linalg):
            fn = getattr(space, name, None)
            if fn is not None:
                out.add(fn)
    return out


# CUDA autocast's cast policy (aten/src/ATen/autocast_mode.cpp, lower_precision_fp and fp32
# lists), for the functions transformers models call.
_LOWER = _fns("linear", "matmul", "__matmul__", "mm", "bmm", "baddbmm", "addmm", "addbmm", "einsum", "mv")
_LOWER |= _fns("conv1d", "conv2d", "scaled_dot_product_attention", "prelu")
_FP32 = _fns("layer_norm", "group_norm", "nll_loss", "mse_loss", "exp", "log", "pow", "__pow__", "rsqrt")
_FP32 |= _fns("reciprocal", "logsumexp", "softplus")
_FP32_OUT = _fns("softmax", "log_softmax", "cumsum", "sum", "prod")  # fp32_set_opt_dtype: computed into fp32


class CudaAutocastPolicy(torch.overrides.TorchFunctionMode):
    """CUDA autocast's casts, applied to CPU tensors standing in for CUDA ones.

    Fake CUDA tensors cannot be indexed on a CPU-only torch build (the Python indexing
    path asks for a CUDA device guard), so the trace runs on fake CPU tensors and
    reproduces what ``torch.autocast("cuda")`` would do: matmul-like functions run at the
    autocast dtype, numerically sensitive ones in fp32, and casts of trainable leaf
    tensors (fp32 master weights) are cached for the autocast region, as autocast caches
    them. Active inside module forwards only (and in gradient checkpointing's recompute,
    which re-enters autocast), never in the backward pass itself.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.depth = 0  # module forwards in progress
        self.enabled = False
        self.cache: dict[int, torch.Tensor] = {}

    def _cast(self, x: Any, to: torch.dtype, frm: tuple[torch.dtype, ...]) -> Any:
        if not isinstance(x, torch.Tensor) or x.dtype not in frm:
            return x
        cacheable = x.is_leaf and x.requires_grad
        if cacheable and id(x) in self.cache:
            return self.cache[id(x)]
        y = x.to(to)
        if cacheable:
            self.cache[id(x)] = y
        return y

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.enabled and self.depth > 0:
            if func in _LOWER:
                frm = (torch.float32, torch.float16, torch.bfloat16)
                frm = tuple(d for d in frm if d != self.dtype)
                args = tuple(self._cast(a, self.dtype, frm) for a in args)
                kwargs = {k: self._cast(v, self.dtype, frm) for k, v in kwargs.items()}
            elif func in _FP32:
                low = (torch.float16, torch.bfloat16)
                args = tuple(self._cast(a, torch.float32, low) for a in args)
                kwargs = {k: self._cast(v, torch.float32, low) for k, v in kwargs.items()}
            elif func in _FP32_OUT and kwargs.get("dtype") is None and args and isinstance(args[0], torch.Tensor):
                if args[0].dtype in (torch.float16, torch.bfloat16):
                    kwargs = {**kwargs, "dtype": torch.float32}
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def region(self) -> Iterator[None]:
        """``with torch.autocast(...)``: casts on, the cast cache freed on exit.

        ``torch.is_autocast_enabled()`` answers True inside, as on a GPU: peft's bitsandbytes
        LoRA layers skip their own dtype conversions when it does.
        """
        saved = torch.is_autocast_enabled

        def enabled(device_type: str | None = None) -> bool:
            return True if device_type in (None, "cuda") else saved(device_type)

        self.enabled = True
        torch.is_autocast_enabled = enabled  # type: ignore[assignment]
        try:
            yield
        finally:
            torch.is_autocast_enabled = saved
            self.enabled = False
            self.cache.clear()

    @contextlib.contextmanager
    def recompute(self) -> Iterator[None]:
        """Gradient checkpointing's recompute: the backward pass runs it with no torch-function
        mode on the stack, so the policy is pushed again (autocast would be re-entered there)."""
        was, outer = self.enabled, self.cache
        self.enabled, self.cache = True, {}  # its own autocast region: casts cached until it ends
        try:
            with self:
                yield
        finally:
            self.enabled, self.cache = was, outer

    def follow_checkpointing(self, model: torch.nn.Module) -> None:
        """Have every checkpointed layer's recompute run under this policy (``context_fn``)."""

        for mod in model.modules():
            fn = getattr(mod, "_gradient_checkpointing_func", None)
            if fn is not None:
                mod._gradient_checkpointing_func = functools.partial(
                    fn, context_fn=lambda: (contextlib.nullcontext(), self.recompute())
                )

    @contextlib.contextmanager
    def module_depth(self) -> Iterator[None]:
        def pre(_m: Any, _a: Any) -> None:
            self.depth += 1

        def post(_m: Any, _a: Any, _o: Any) -> None:
            self.depth -= 1

        h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
        h2 = torch.nn.modules.module.register_module_forward_hook(post, always_call=True)
        try:
            yield
        finally:
            h1.remove()
            h2.remove()


# -- bitsandbytes' composite kernels, as CUDA runs them -----------------------------------
def _bnb_composite(counter: AllocationCounter, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """bitsandbytes ops whose fake kernel skips buffers the CUDA path allocates; None for any other op.

    On CUDA, ``int8_scaled_mm`` and ``int8_mixed_scaled_mm`` run bitsandbytes' "default"
    Python kernels (``backends/default/ops.py``): an int32 matmul output, then a dequant to
    the input dtype. Their fake kernels return only the final output, so the int32 buffer
    (4 bytes per output element, the largest int8 temporary) would go unseen; these are
    transcriptions of those kernels, run op by op so each buffer is counted. With an outlier
    threshold, ``int8_vectorwise_quant`` on CUDA builds ``A.abs() >= threshold`` and finds
    which columns hold outliers; the trace assumes none, so no data-dependent shape is
    needed. The normalised inputs of q/k/v/o/gate/up stay below 6.0, but the
    down-projection's input (act(gate) * up) does not: a real forward of the 1.1B llama
    shape with random weights at batch 8 x 512 found 776-901 of 5,632 columns with an
    outlier, whose fp32 copy ``int8_mixed_scaled_mm`` returns as ``subA`` and
    ``MatMul8bitLt`` keeps (about 13 MiB per layer there, 2% of the step's peak).
    """
    ops = torch.ops.bitsandbytes
    run = counter.run
    if func is ops.int8_scaled_mm.default:
        A, B, row_stats, col_stats = args[:4]
        bias = kwargs.get("bias", args[4] if len(args) > 4 else None)
        dtype = kwargs.get("dtype", args[5] if len(args) > 5 else None)
        out_i32 = run(ops.int8_linear_matmul.default, A, B)
        return run(ops.int8_mm_dequant.default, out_i32, row_stats, col_stats, dtype=dtype or torch.float16, bias=bias)
    if func is ops.int8_mixed_scaled_mm.default:
        A, CA, CB, SCA, SCB = args[:5]
        bias = kwargs.get("bias", args[6] if len(args) > 6 else None)
        sub_a = run(torch.ops.aten.empty.memory_format, [0], dtype=A.dtype, device=A.device)
        out = _bnb_composite(counter, ops.int8_scaled_mm.default, (CA, CB, SCA, SCB), {"bias": bias, "dtype": A.dtype})
        return out, sub_a
    if func is ops.int8_vectorwise_quant.default:
        A = args[0]
        threshold = kwargs.get("threshold", args[1] if len(args) > 1 else 0.0)
        if not threshold:
            return None
        run(torch.ops.aten.ge.Scalar, run(torch.ops.aten.abs.default, A), threshold)  # freed at once
        cols = run(torch.ops.aten.empty.memory_format, [0], dtype=torch.int64, device=A.device)
        out_row, row_stats, _ = run(ops.int8_vectorwise_quant.default, A, 0.0)
        return out_row, row_stats, cols
    return None


# -- building the model as a run builds it ---------------------------------------------
@dataclass(frozen=True)
class TraceConfig:
    """One training configuration to trace (the run's settings that change memory)."""

    precision: str
    batch_size: int
    seq_len: int
    grad_checkpointing: bool = False
    optimizer: str = "adamw"
    attn: str = "sdpa"
    compute_dtype: str = "bf16"
    prepare_kbit: bool = True
    double_quant: bool = True
    max_grad_norm: float | None = 1.0  # the schema's default (train.max_grad_norm)
    eval_batch_size: int | None = None  # None: the training batch size
    device: str = "cuda"


@contextlib.contextmanager
def _bnb_as_on_cuda() -> Iterator[None]:
    """bitsandbytes' int8 matmul as CUDA runs it (MatMul8bitLt); on CPU tensors it would pick MatMul8bitFp."""
    import bitsandbytes as bnb
    from bitsandbytes.autograd._functions import MatMul8bitLt, MatmulLtState

    def matmul(A: Any, B: Any, out: Any = None, state: Any = None, threshold: float = 0.0, bias: Any = None) -> Any:
        state = state or MatmulLtState()
        if threshold > 0.0:
            state.threshold = threshold
        return MatMul8bitLt.apply(A, B, out, bias, state)

    saved = bnb.matmul
    bnb.matmul = matmul
    try:
        yield
    finally:
        bnb.matmul = saved


def _saved_bnb_caches() -> contextlib.AbstractContextManager[None]:
    """bitsandbytes caches its quantisation maps per process; keep fake tensors out of that cache."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        import bitsandbytes.functional as bnbf

        saved = dict(bnbf.name2qmap)
        # Built from Python values (data-dependent ops), so built for real, before any fake tensor.
        bnbf.name2qmap.setdefault("dynamic", bnbf.create_dynamic_map())
        try:
            yield
        finally:
            bnbf.name2qmap.clear()
            bnbf.name2qmap.update(saved)

    return guard()


def build_skeleton(
    auto: Any, config: Any, raw: dict[str, Any], family: str, cfg: TraceConfig
) -> tuple[Any, Any, dict[str, Any]]:
    """(model on the meta device, the k-bit quantizer or None, info), as ``load_model`` shapes it.

    Built with the run's dtype and attention implementation; for k-bit precisions the
    bitsandbytes layers are put in by transformers' own quantizer (the ``preprocess_model``
    that a k-bit ``from_pretrained`` runs). Must run outside ``FakeTensorMode`` (its meta
    tensors would be fake ones, which ``to_empty`` cannot swap).
    """
    from transformers.quantizers import AutoHfQuantizer

    from lorabench.accounting.params import untie_like_checkpoint
    from lorabench.models.adapt import quantizable
    from lorabench.models.loading import CLASSIFIER_HEADS, DTYPES, quantization_config
    from lorabench.vocab import QUANTIZED

    kbit = cfg.precision in QUANTIZED
    dtype = getattr(torch, DTYPES[cfg.compute_dtype if kbit else cfg.precision])
    info: dict[str, Any] = {}
    with quantizable(config.model_type, cfg.precision, QUANTIZED) as adaptations, torch.device("meta"):
        net = auto.from_config(config, dtype=dtype, attn_implementation=cfg.attn)
    if adaptations:
        info["adaptations"] = adaptations
    untie_like_checkpoint(net, raw)
    quantizer = None
    if kbit:
        skip = CLASSIFIER_HEADS if family == "classification" else None
        qc = quantization_config(cfg.precision, QuantSettings(double_quant=cfg.double_quant), cfg.compute_dtype, skip)
        quantizer = AutoHfQuantizer.from_config(qc, pre_quantized=False)
        quantizer.preprocess_model(net, device_map={"": 0}, dtype=dtype)
        net.hf_quantizer = quantizer
        quantised = 0
        for mod in net.modules():
            w = getattr(mod, "weight", None)
            if type(w).__name__ == "Int8Params":  # what k-bit preparation sees after loading: int8
                w.data = w.data.to(torch.int8)
            quantised += type(w).__name__ in ("Int8Params", "Params4bit")
        if not quantised:
            from lorabench.models.loading import ModelLoadError

            raise ModelLoadError(
                f"bitsandbytes quantised no layer of this {config.model_type} model at {cfg.precision}; its "
                "linear layers are not ones transformers replaces"
            )
        quantizer.postprocess_model(net)
    return net, quantizer, info


def _bnb_param(data: torch.Tensor, **attrs: Any) -> torch.nn.Parameter:
    """A frozen parameter carrying bitsandbytes' attributes.

    ``Params4bit``/``Int8Params`` themselves cannot wrap a fake tensor (``_make_subclass``
    refuses a tensor that already has a Python subclass); the layers only read these
    attributes, so a parameter that has them behaves the same in forward and backward.
    """
    p = torch.nn.Parameter(data, requires_grad=False)
    for key, value in attrs.items():
        setattr(p, key, value)
    return p


def materialise(net: Any, cfg: TraceConfig, info: dict[str, Any]) -> Any:
    """Give the prepared meta model storage on ``cfg.device`` (fake or real); quantise as loading does.

    Every parameter and buffer gets a new tensor of its shape and dtype (tied parameters
    stay tied). Each k-bit weight arrives at the compute dtype and is quantised by the
    bitsandbytes functions that ``Params4bit._quantize``/``Int8Params._quantize`` call,
    which frees the unquantised copy: what loading onto the GPU does.
    ``Module.to_empty`` is not used: it turns parameter subclasses into plain parameters
    and unties tied ones.
    """
    from lorabench.models.loading import DTYPES
    from lorabench.vocab import QUANTIZED

    if cfg.precision in QUANTIZED:
        import bitsandbytes as bnb

        params4, int8 = bnb.nn.Params4bit, bnb.nn.Int8Params
    else:  # no bitsandbytes layer in the model (and bitsandbytes may be hidden: accounting.slim)
        params4 = int8 = ()
    device = torch.device("cpu")
    compute = getattr(torch, DTYPES[cfg.compute_dtype])
    memo: dict[int, Any] = {}
    quantised = 0
    for mod in net.modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            new = memo.get(id(p))
            if new is None:
                if isinstance(p, params4):  # Params4bit._quantize
                    packed, state = bnb.functional.quantize_4bit(
                        torch.empty(p.shape, dtype=compute, device=device),
                        blocksize=p.blocksize,
                        compress_statistics=p.compress_statistics,
                        quant_type=p.quant_type,
                        quant_storage=p.quant_storage,
                    )
                    new = _bnb_param(
                        packed,
                        quant_state=state,
                        blocksize=p.blocksize,
                        compress_statistics=p.compress_statistics,
                        quant_type=p.quant_type,
                        quant_storage=p.quant_storage,
                        bnb_quantized=True,
                        module=mod,
                    )
                    mod.quant_state = state
                    quantised += 1
                elif isinstance(p, int8):  # Int8Params._quantize
                    weight = torch.empty(p.shape, dtype=compute, device=device).contiguous().to(torch.float16)
                    cb, scb, _ = bnb.functional.int8_vectorwise_quant(weight)
                    del weight
                    new = _bnb_param(cb, CB=cb, SCB=scb, has_fp16_weights=p.has_fp16_weights)
                    quantised += 1
                else:
                    new = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device), p.requires_grad)
                memo[id(p)] = new
            mod._parameters[name] = new
        for name, buf in list(mod._buffers.items()):
            if buf is not None:
                mod._buffers[name] = torch.empty(buf.shape, dtype=buf.dtype, device=device)
    if quantised:
        info["quantized_layers"] = quantised
    return net


def _batch(family: str, config: Any, batch: int, seq: int, device: str) -> dict[str, Any]:
    """A full-length batch as the task's collate makes it (int64 ids, mask and labels).

    The all-ones attention mask is allocated but handed to the model as None: with no
    padding, transformers drops it and asks SDPA for ``is_causal`` (``_ignore_causal_mask_sdpa``),
    but on fake tensors it cannot read the mask's values and would build a 4-D mask instead.
    """
    vocab = int(getattr(config, "vocab_size", 2) or 2)
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    out: dict[str, Any] = {"input_ids": ids, "attention_mask": None, "_mask": torch.ones_like(ids)}
    if family == "classification":
        out["labels"] = torch.zeros(batch, dtype=torch.long, device=device)
    else:  # causal LM: labels are the inputs; seq2seq: the target sequence, as long as the source
        out["labels"] = ids.clone()
    return out


def run_step(
    model: Any,
    family: str,
    config: Any,
    cfg: TraceConfig,
    counter: AllocationCounter,
    autocast_dtype: torch.dtype | None,
    steps: int = 2,
    policy: CudaAutocastPolicy | None = None,
) -> None:
    """Training steps and one evaluation forward, as ``run.train.train`` and the task's evaluate run them.

    Step 1 allocates the optimizer state; step 2 is the steady state, where the state is
    live during forward and backward. The optimizer is foreach AdamW, torch's default for
    CUDA parameters (fake parameters would otherwise fall back to the per-tensor loop).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the method left no trainable parameters")
    foreach = cfg.device == "cuda"
    device = "cpu"  # fake CPU tensors stand in for CUDA ones (see CudaAutocastPolicy)
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=foreach)
    else:
        opt = torch.optim.SGD(params, lr=1e-4, foreach=foreach)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        if policy is not None:
            return policy.region()
        return torch.autocast(device_type="cpu", dtype=autocast_dtype)

    model.train()
    # Names live as long as in run.train.train: `loss` and `batch` are rebound by the next
    # step, so the previous step's autograd graph is released only once the next forward
    # has returned. Saved tensors are freed during backward anyway, but what a custom
    # autograd Function keeps as a plain ``ctx`` attribute lives as long as the graph:
    # bitsandbytes' MatMul8bitLt keeps each int8 layer's input (``ctx.tensors``), so on an
    # int8 base every layer's inputs of step n are still held during step n + 1's forward.
    loss: Any = None
    batch: Any = None
    for step in range(1, steps + 1):
        counter.set_phase(f"step{step}.batch")
        batch = _batch(family, config, cfg.batch_size, cfg.seq_len, device)
        counter.set_phase(f"step{step}.forward")
        with autocast():
            loss = model(**{k: v for k, v in batch.items() if k != "_mask"}).loss
        counter.set_phase(f"step{step}.backward")
        loss.backward()
        counter.tag([p.grad for p in params if p.grad is not None], "gradients")
        counter.static["gradients"] = counter.live_by_category().get("gradients", 0)
        counter.set_phase(f"step{step}.optimizer")
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=foreach)
        opt.step()
        counter.tag([list(s.values()) for s in opt.state.values()], "optimizer_state")
        opt.zero_grad(set_to_none=True)
    del loss, batch  # train() returns before the evaluation: its locals are gone
    live = counter.live_by_category()
    for key in ("parameters", "quantisation_constants", "buffers", "optimizer_state"):
        counter.static[key] = live.get(key, 0)
    counter.set_phase("eval.forward")
    model.eval()
    batch = _batch(family, config, cfg.eval_batch_size or cfg.batch_size, cfg.seq_len, device)
    with torch.no_grad(), autocast():
        if family == "causal-lm":  # tasks/causal_lm.py: fp32 logits, per-token cross-entropy, argmax
            logits = model(input_ids=batch["input_ids"], attention_mask=None).logits
            logits = logits[:, :-1].float()
            target = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none"
            )
            guess = logits.argmax(-1)
            del logits, nll, guess
        else:
            model(**{k: v for k, v in batch.items() if k != "_mask"})
    counter.set_phase("done")


def _register_model(counter: AllocationCounter, model: Any) -> None:
    """Name what the built model holds: parameters, bitsandbytes' constants, buffers."""
    names = {id(m): module_group(n) for n, m in model.named_modules() if n}
    for mod in model.modules():
        group = names.get(id(mod), "(root)")
        for p in mod.parameters(recurse=False):
            counter.register(p, "parameters", group)
            state = getattr(p, "quant_state", None)
            if state is not None:
                consts = [state.absmax, state.code, state.offset]
                if state.state2 is not None:
                    consts += [state.state2.absmax, state.state2.code]
                counter.register([c for c in consts if isinstance(c, torch.Tensor)], "quantisation_constants", group)
            if getattr(p, "SCB", None) is not None:
                counter.register(p.SCB, "quantisation_constants", group)
        for b in mod.buffers(recurse=False):
            counter.register(b, "buffers", group)


def trace_training(
    auto: Any,
    config: Any,
    raw: dict[str, Any],
    family: str,
    method_cls: Any,
    mctx: Any,
    cfg: TraceConfig,
    fake: bool = True,
) -> tuple[TraceResult, dict[str, Any]]:
    """Build, prepare, apply the method and run the steps; every allocation on ``cfg.device`` counted."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lorabench.methods.prepare import enable_grad_checkpointing, upcast_trainable
    from lorabench.models.loading import DTYPES
    from lorabench.vocab import QUANTIZED

    kbit = cfg.precision in QUANTIZED
    amp_name = cfg.compute_dtype if kbit else cfg.precision
    amp = getattr(torch, DTYPES[amp_name]) if amp_name in ("bf16", "fp16") else None
    counter = AllocationCounter("cpu")
    cuda = cfg.device == "cuda"
    policy = CudaAutocastPolicy(amp) if cuda and amp is not None else None
    net, _quantizer, info = build_skeleton(auto, config, raw, family, cfg)
    # Preparation, the method and the fp32 master weights go on the meta model: inside
    # FakeTensorMode, Module.to() cannot swap fake parameters (what peft does to adapters).
    if kbit and cfg.prepare_kbit:  # run/pipeline.py: prepare_base
        from peft import prepare_model_for_kbit_training

        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=cfg.grad_checkpointing)
    net = method_cls().apply(net, mctx)
    upcast_trainable(net)
    if cfg.grad_checkpointing:
        enable_grad_checkpointing(net)
        if policy is not None:
            policy.follow_checkpointing(net)
    mode: Any = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    with contextlib.ExitStack() as stack:
        # bitsandbytes only for k-bit bases: `estimate` hides it from other commands' imports
        # (accounting.slim), and an unquantised model never calls it.
        if kbit:
            stack.enter_context(_saved_bnb_caches())
        stack.enter_context(mode)
        if cuda and kbit:
            stack.enter_context(_bnb_as_on_cuda())
        if policy is not None:
            stack.enter_context(policy)
            stack.enter_context(policy.module_depth())
        stack.enter_context(counter)
        counter.set_phase("load")
        net = materialise(net, cfg, info)
        _register_model(counter, net)
        if cuda:
            for mod in net.modules():  # CPU-only weight repacking for inference (bnb_cpu.py)
                if hasattr(mod, "support_avx512bf16_for_cpu"):
                    mod.support_avx512bf16_for_cpu = False
            counter.add_bytes(CUBLAS_WORKSPACE_BYTES, "temporaries", "(cuBLAS workspace)")
        with module_scopes(net, counter):
            run_step(net, family, config, cfg, counter, amp, policy=policy)
        result = counter.result()
        del net
    return result, info


# -- lorabench estimate --trace ------------------------------------------------------------
def trace_model(
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
    eval_batch_size: int | None = None,
    max_grad_norm: float | None = 1.0,
    layers: int | None = None,
) -> Any:
    """``estimate_model``'s question answered by tracing the step: an ``Estimate`` with method "trace".

    Models deeper than ``EXTRAPOLATE_ABOVE`` layers are traced at 2 and 4 layers and the
    figures extended linearly to the full depth (every decoder layer allocates the same,
    so memory is affine in depth; ``benchmarks/trace_extrapolation.py`` prints the
    difference from a full trace). ``layers`` traces exactly that many layers instead.

    Raises ``Untraceable`` with the reason where a configuration cannot be traced (the
    caller falls back to the analytic figure and says so).
    """
    import transformers

    from lorabench.accounting.estimate import CUDA_CONTEXT_BYTES, Estimate, _config_dir
    from lorabench.accounting.params import infer_task_type, method_options, read_config
    from lorabench.errors import UsageError
    from lorabench.methods import method_class
    from lorabench.methods.base import method_context
    from lorabench.models.loading import AUTO_CLASSES

    if loss != "default":
        raise Untraceable(f"train.loss {loss!r} is not traced (its kernel replaces the model's loss)")
    if attn == "flash_attention_2":
        raise Untraceable("flash_attention_2 needs the flash-attn package and a GPU; trace with sdpa instead")
    if optimizer == "adamw8bit":
        raise Untraceable("adamw8bit is not traced (bitsandbytes' 8-bit optimizer state is not built here)")
    ref = ModelRef.parse(model)
    if ref.kind is ModelKind.BUILTIN:
        from lorabench.models import BUILTIN_MODELS

        if BUILTIN_MODELS.get(ref.name).loader is not None:
            raise Untraceable(f"{model} is a hand-written model with no transformers config to build")
    cls = method_class(method, dataclasses.asdict(method_opts) if dataclasses.is_dataclass(method_opts) else None)
    if rank is not None and not cls.uses_rank:
        raise UsageError(f"method {method!r} has no rank; drop --rank")
    options = method_opts if method_opts is not None else method_options(cls, None, target_modules)
    path = _config_dir(model)
    config, raw = read_config(path)
    reason = cls.invalid_reason(precision, config.model_type)
    if reason:
        raise UsageError(f"{method} at {precision} on a {config.model_type} model is invalid: {reason}")
    task_type = task_type or infer_task_type(config)
    if task_type not in tuple(HeadType):
        raise UsageError(f"unknown task type {task_type!r}; known: {', '.join(HeadType)}")
    family = HeadType(task_type).family.value
    ctx = method_context(
        cls,
        rank=rank,
        options=options,
        task_family=family,
        precision=precision,
        model_type=config.model_type,
        target_modules=tuple(target_modules) if target_modules and method_opts is not None else None,
    )
    cdtype = compute_dtype or ("bf16" if device == "cuda" else "fp32")
    cfg = TraceConfig(
        precision=precision,
        batch_size=batch_size,
        seq_len=seq_len,
        grad_checkpointing=grad_checkpointing,
        optimizer=optimizer,
        attn=attn or "sdpa",
        compute_dtype=cdtype,
        prepare_kbit=prepare_kbit,
        double_quant=double_quant,
        max_grad_norm=max_grad_norm,
        eval_batch_size=eval_batch_size,
        device=device,
    )
    auto = getattr(transformers, AUTO_CLASSES[family])

    depth = _layers(config)
    extrapolated = layers is None and depth is not None and depth > EXTRAPOLATE_ABOVE

    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()  # config chatter, once per traced model
    bnb_log = logging.getLogger("bitsandbytes")
    bnb_level = bnb_log.level
    bnb_log.setLevel(logging.ERROR)  # "inputs will be cast ... to float16", once per int8 layer call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation chatter between peft, transformers and bitsandbytes
        try:
            if extrapolated:
                lo = trace_training(auto, _with_layers(config, 2), raw, family, cls, ctx, cfg)[0]
                result, info = trace_training(auto, _with_layers(config, 4), raw, family, cls, ctx, cfg)
                result = _extrapolate(lo, result, 2, 4, depth)
            else:
                result, info = trace_training(auto, _with_layers(config, layers or depth), raw, family, cls, ctx, cfg)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{method} cannot be applied to {model!r} ({config.model_type}): {exc}") from None
        except UsageError:
            raise
        except Exception as exc:  # an op fake tensors cannot follow: the caller falls back, and says why
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise Untraceable(f"the step could not be traced on fake tensors ({type(exc).__name__}: {first})") from exc
        finally:
            transformers.utils.logging.set_verbosity(verbosity)
            bnb_log.setLevel(bnb_level)
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    notes = [
        f"traced: peak in {result.phase}; two training steps and one eval forward on fake tensors "
        "(batches of full length, no padding)",
    ]
    if device == "cuda":
        notes.append(
            "CUDA emulated on CPU fake tensors: autocast's cast policy, bitsandbytes' CUDA int8 path, "
            f"foreach AdamW, a {CUBLAS_WORKSPACE_BYTES // MiB} MiB cuBLAS workspace; attention kernels' "
            "workspaces are CPU's"
        )
    if extrapolated:
        notes.append(f"traced at 2 and 4 layers and extended linearly to {depth} (identical layers)")
    if precision == "int8":
        notes.append(
            "int8: no outlier columns assumed (threshold 6.0); with random llama weights 14-16% of the "
            "down-projection's input columns hold one, whose fp32 copy bitsandbytes keeps for backward (not counted)"
        )
    est = Estimate(
        peak_bytes=result.peak_bytes + context,
        allocated_bytes=result.peak_bytes,
        breakdown={**result.by_category, "cuda_context": context},
        inputs={
            "model": model,
            "method": method,
            "rank": ctx.rank,
            "task_type": task_type,
            "precision": precision,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "grad_checkpointing": grad_checkpointing,
            "optimizer": optimizer,
            "attn_implementation": cfg.attn,
            "loss": loss,
            "compute_dtype": cdtype if precision in ("int8", "nf4", "fp4") else None,
            "device": device,
        },
        notes=notes,
        method="trace",
        detail={
            "phase": result.phase,
            "by_module": result.by_module,
            "phase_peaks": result.phase_peaks,
            "static": result.static,
            **({"build": info} if info else {}),
        },
    )
    return est


EXTRAPOLATE_ABOVE = 6


def _layers(config: Any) -> int | None:
    """The depth to extrapolate over: decoder-only stacks (and T5 with equal encoder/decoder depth)."""
    if getattr(config, "is_encoder_decoder", False):
        n, m = getattr(config, "num_layers", None), getattr(config, "num_decoder_layers", None)
        return n if n is not None and n == m else None
    if getattr(config, "layer_types", None) is not None:
        return None  # layers differ (sliding/full attention patterns): trace them all
    return getattr(config, "num_hidden_layers", None)


def _with_layers(config: Any, k: int | None) -> Any:

    if k is None or k == _layers(config):
        return config
    out = copy.deepcopy(config)
    if getattr(config, "is_encoder_decoder", False):
        out.num_layers = out.num_decoder_layers = k
    else:
        out.num_hidden_layers = k
    return out


def _extrapolate(lo: TraceResult, hi: TraceResult, n_lo: int, n_hi: int, n: int) -> TraceResult:
    """Each figure extended along the line through (n_lo, lo) and (n_hi, hi) to depth n."""

    def ext(a: int, b: int) -> int:
        return max(0, round(b + (b - a) * (n - n_hi) / (n_hi - n_lo)))

    def ext_dict(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: ext(a.get(k, 0), b.get(k, 0)) for k in b}

    # Each phase's peak is affine in depth, the overall peak is not: the largest phase at
    # 4 layers (the backward pass) need not be the largest at 80 (int8: the next forward,
    # with the previous step's inputs held). The deep model's peak is its largest phase;
    # the live-at-the-peak breakdown stays the line through the two traces' own peaks.
    phase_peaks = ext_dict(lo.phase_peaks, hi.phase_peaks)
    phase, peak = max(phase_peaks.items(), key=lambda kv: kv[1], default=(hi.phase, hi.peak_bytes))
    return TraceResult(
        peak_bytes=peak,
        phase=phase,
        by_category=ext_dict(lo.by_category, hi.by_category),
        by_module=dict(sorted(ext_dict(lo.by_module, hi.by_module).items(), key=lambda kv: -kv[1])),
        phase_peaks=phase_peaks,
        static=ext_dict(lo.static, hi.static),
    )


class Untraceable(Exception):
    """This configuration cannot be traced; the message says why."""


def compare(analytic: Any, traced: Any, tolerance: float = 0.10) -> tuple[list[dict[str, Any]], list[str]]:
    """Term by term, the analytic model against the trace: (rows, one line per term off by more than ``tolerance``).

    The terms are the ones both can state: what stays (weights with their constants and
    adapters; optimizer state), the gradients, and what the step adds at its peak.
    """
    a, st = analytic.breakdown, traced.detail.get("static", {})
    a_static = a.get("weights", 0) + a.get("kbit_fp32_upcast", 0) + a.get("adapter", 0)
    t_static = st.get("parameters", 0) + st.get("quantisation_constants", 0) + st.get("buffers", 0)
    a_dyn = analytic.allocated_bytes - a_static - a.get("optimizer_state", 0)
    t_dyn = traced.allocated_bytes - t_static - st.get("optimizer_state", 0)
    rows = [
        {"term": "weights (+ constants, adapters)", "analytic": a_static, "trace": t_static},
        {"term": "optimizer_state", "analytic": a.get("optimizer_state", 0), "trace": st.get("optimizer_state", 0)},
        {"term": "gradients (all)", "analytic": a.get("gradients", 0), "trace": st.get("gradients", 0)},
        {"term": "step at its peak (activations, logits, ...)", "analytic": a_dyn, "trace": t_dyn},
        {"term": "allocated (torch)", "analytic": analytic.allocated_bytes, "trace": traced.allocated_bytes},
    ]
    flags = []
    for row in rows:
        ref = row["trace"]
        row["ratio"] = round(row["analytic"] / ref, 4) if ref else None
        if ref and abs(row["analytic"] - ref) > tolerance * ref:
            flags.append(
                f"analytic {row['term']} is {100 * (row['analytic'] - ref) / ref:+.0f}% off the trace "
                f"({row['analytic'] / MiB:,.0f} vs {ref / MiB:,.0f} MiB)"
            )
    return rows, flags
