"""Load a model and tokenizer for a run: built-in, local directory or hub id.

Everything goes through ``from_pretrained``, so the HF cache, ``HF_HUB_OFFLINE`` and
revisions behave as users expect. Quantised bases use bitsandbytes via transformers.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from lorabench.errors import UsageError
from lorabench.models import BUILTIN_MODELS
from lorabench.models.adapt import quantizable
from lorabench.models.ref import ModelKind, ModelRef
from lorabench.vocab import QUANTIZED, TaskFamily

if TYPE_CHECKING:
    from lorabench.suite.schema import ModelDef, QuantSettings

AUTO_CLASSES = {
    TaskFamily.CAUSAL_LM.value: "AutoModelForCausalLM",
    TaskFamily.CLASSIFICATION.value: "AutoModelForSequenceClassification",
    TaskFamily.SEQ2SEQ.value: "AutoModelForSeq2SeqLM",
}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class ModelLoadError(UsageError):
    """A model could not be loaded; the message says why and what to do."""


def resolve_path(path: str) -> str:
    """The directory or hub id to load ``path`` from; built-ins are materialised on first use."""
    ref = ModelRef.parse(path)
    if ref.kind is ModelKind.BUILTIN:
        from lorabench.models.builtin import ensure_builtin  # pulls in torch and transformers

        return str(ensure_builtin(ref.name))
    return ref.known_dir() or ref.path


def compute_dtype(quant: QuantSettings, device: str) -> str:
    """Resolve ``compute_dtype: auto``: bf16 on a GPU that supports it, else fp32."""
    if quant.compute_dtype != "auto":
        return quant.compute_dtype
    import torch

    if device == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _hub_error(path: str, exc: BaseException) -> ModelLoadError:
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    how = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub could not be reached"
    return ModelLoadError(
        f"cannot load model {path!r}: it is not a local directory, {how}, and it is not in the HF cache "
        f"({constants.HF_HUB_CACHE}). Download it where the Hub is reachable (the cache is reused), or point "
        f"the suite at a local directory with config.json. ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    )


def is_encoder_decoder(model: ModelDef) -> bool:
    """Whether ``model`` is an encoder-decoder (T5) rather than decoder-only, from its config alone."""
    if _custom_loader(model) is not None:
        return False
    from transformers import AutoConfig

    path = resolve_path(model.path)
    try:
        config = AutoConfig.from_pretrained(path, revision=model.revision)
    except OSError as exc:
        raise _hub_error(path, exc) from None
    return bool(getattr(config, "is_encoder_decoder", False))


def load_tokenizer(path: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision)
    except OSError as exc:
        raise _hub_error(path, exc) from None
    check_tokenizer(tok, path)
    if tok.pad_token is None:
        # Causal LMs such as GPT-2 ship without a pad token; padding positions are
        # masked out of loss and metrics, so reusing EOS is safe.
        tok.pad_token = tok.eos_token
    return tok


#: Text any real tokenizer turns into ids.
_PROBE = "The quick brown fox jumps over the lazy dog."


def check_tokenizer(tok: Any, path: str) -> None:
    """Refuse a tokenizer with no vocabulary before any training.

    transformers builds an *empty* tokenizer from ``config.json``'s model type when a
    directory has no tokenizer files: every text becomes zero tokens (or only special
    ones), and a run "succeeds" with a perplexity in the hundreds of thousands.
    """
    special = set(getattr(tok, "all_special_ids", []) or [])
    try:
        ids = tok(_PROBE, add_special_tokens=False)["input_ids"]
    except Exception as exc:  # a tokenizer that cannot encode at all
        raise ModelLoadError(f"the tokenizer of {path!r} cannot encode text ({type(exc).__name__}: {exc})") from None
    if len(tok) <= len(special) + 1 or not ids:
        raise ModelLoadError(
            f"the tokenizer of {path!r} is empty (a vocabulary of {len(tok)}, and a plain sentence encodes to "
            f"{len(ids)} ids): the directory has no usable tokenizer files (tokenizer.json, or vocab.json with "
            "merges.txt, vocab.txt, a sentencepiece *.model). Copy them from the model it was saved from."
        )


# A classification head is new and trains in full (peft's modules_to_save); transformers
# would quantise BERT-style `classifier` layers, and int8/4-bit weights cannot take gradients.
CLASSIFIER_HEADS = ["classifier", "score"]


def quantization_config(precision: str, quant: QuantSettings, cdtype: str, skip: list[str] | None = None) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=precision,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, DTYPES[cdtype]),
        llm_int8_skip_modules=skip,
    )


def load_model(
    model: ModelDef,
    family: str,
    precision: str,
    quant: QuantSettings,
    device: str,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Load (model, tokenizer, info). ``info`` records what was resolved for the run."""
    import torch
    import transformers

    custom = _custom_loader(model)
    if custom is not None:
        if model.attn_implementation:
            raise ModelLoadError(
                f"model {model.path!r} is a hand-written built-in with its own attention; "
                "attn_implementation applies to transformers models only"
            )
        return custom(model, family, precision, quant, device, model_kwargs)
    path = resolve_path(model.path)
    revision = model.revision
    auto = getattr(transformers, AUTO_CLASSES[family])
    tokenizer = load_tokenizer(path, revision)
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    info: dict[str, Any] = {"resolved_path": path, "auto_class": AUTO_CLASSES[family]}
    if precision in DTYPES:
        kwargs["dtype"] = getattr(torch, DTYPES[precision])
    else:
        cdtype = compute_dtype(quant, device)
        info["compute_dtype"] = cdtype
        skip = CLASSIFIER_HEADS if family == "classification" else None
        kwargs["quantization_config"] = quantization_config(precision, quant, cdtype, skip)
        kwargs["dtype"] = getattr(torch, DTYPES[cdtype])
        if device == "cuda":
            kwargs["device_map"] = {"": 0}
    attn = attn_implementation(model, device)
    if attn is not None:
        kwargs["attn_implementation"] = attn
        info["attn_implementation"] = attn
    if kwargs.get("pad_token_id") is None and family == "classification":
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    try:
        with quantizable(_config_model_type(path, revision, precision), precision, QUANTIZED) as adaptations:
            if model.weights == "random":
                net = random_model(auto, path, revision, kwargs, device)
            else:
                net = auto.from_pretrained(path, revision=revision, **kwargs)
    except OSError as exc:
        raise _hub_error(path, exc) from None
    if adaptations:
        info["adaptations"] = adaptations
    if "device_map" not in kwargs:
        net.to(device)
    info["model_type"] = net.config.model_type
    if precision not in DTYPES:
        quantized = sum(type(m).__name__ in ("Linear8bitLt", "Linear4bit") for m in net.modules())
        if quantized == 0:
            # Reporting an unquantised model as int8/nf4 would be a wrong result, not a slow one.
            raise ModelLoadError(
                f"bitsandbytes quantised no layer of {path!r} (model_type {net.config.model_type!r}) at "
                f"{precision}; its linear layers are not ones transformers replaces"
            )
        info["quantized_layers"] = quantized
        from lorabench.models.bnb_cpu import disable_cpu_weight_packing

        # Same nf4 numbers on every CPU, and no crash on AVX512-BF16 ones (see bnb_cpu).
        info["bnb_cpu_packing_disabled"] = disable_cpu_weight_packing(net)
    return net, tokenizer, info


def attn_implementation(model: ModelDef, device: str) -> str | None:
    """The suite's ``attn_implementation``, checked: a clear error where it cannot run."""
    attn = model.attn_implementation
    if attn == "flash_attention_2":
        if device != "cuda":
            raise ModelLoadError("attn_implementation flash_attention_2 needs a CUDA device (this run is on cpu)")
        if importlib.util.find_spec("flash_attn") is None:
            raise ModelLoadError(
                "attn_implementation flash_attention_2 needs the flash-attn package, which is not installed "
                "(pip install flash-attn --no-build-isolation, on a CUDA machine); or use sdpa"
            )
    return attn


def _config_model_type(path: str, revision: str | None, precision: str) -> str | None:
    """``config.model_type`` for a quantised load (adaptations depend on it); None otherwise."""
    if precision in DTYPES:
        return None
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, revision=revision).model_type


def _custom_loader(model: ModelDef) -> Any:
    """The loader of a built-in model that is not a transformers model, if any."""
    ref = ModelRef.parse(model.path)
    if ref.kind is not ModelKind.BUILTIN:
        return None

    spec = BUILTIN_MODELS.get(ref.name)
    if spec.loader is None:
        return None
    module, _, attr = spec.loader.partition(":")
    return getattr(importlib.import_module(module), attr)


def random_model(auto: Any, path: str, revision: str | None, kwargs: dict[str, Any], device: str) -> Any:
    """Random weights with the real architecture (speed/memory runs, no weight download).

    Built where they run, in the dtype they run in (``from_config`` under a torch device
    context), so a 7B model never exists as fp32 on the CPU. A k-bit base is then handed to
    ``from_pretrained`` as an in-memory state dict: transformers' bitsandbytes quantizer
    quantises it exactly as it would a checkpoint, with no file written or read. The peak
    while loading is one copy in the compute dtype plus the quantised one.
    """
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, revision=revision)
    for key in ("pad_token_id", "num_labels"):
        if key in kwargs:
            setattr(config, key, kwargs[key])
    target = torch.device("cuda", 0) if device == "cuda" else torch.device(device)
    with torch.device(target):
        extra = {"attn_implementation": kwargs["attn_implementation"]} if "attn_implementation" in kwargs else {}
        net = auto.from_config(config, dtype=kwargs.get("dtype"), **extra)
    if "quantization_config" not in kwargs:
        return net
    cls, state = type(net), net.state_dict()
    del net  # the state dict keeps the tensors; the module tree is not needed
    rest = {k: v for k, v in kwargs.items() if k not in ("pad_token_id", "num_labels")}
    quantised = cls.from_pretrained(None, config=config, state_dict=state, **rest)
    del state
    if target.type == "cuda":
        gc.collect()
        # Hand the unquantised copy back to the driver: otherwise the caching allocator keeps
        # it reserved and the train phase's reserved/NVML peaks would include it.
        torch.cuda.empty_cache()
    return quantised
