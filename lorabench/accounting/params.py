"""Parameter accounting without weights: ``lorabench params MODEL --method M ...``.

The model is built from its config alone on the meta device (no weights, no memory:
a 70B shape takes about a second), the method is applied exactly as a run applies it
(through peft for peft methods), and parameters are counted with the convention of
peft's ``get_nb_trainable_parameters`` (:func:`lorabench.accounting.counting.count_parameters`):

- every tensor of ``named_parameters()`` once, so tied weights count once;
- bitsandbytes 4-bit weights at their unpacked size. On the meta device there are no
  packed weights, so a count is the same at every precision, as a loaded nf4 model's is;
- for sequence classification, peft trains a copy of the head (``modules_to_save``) and
  keeps the original, so the head counts twice in the total and once as trainable.

Tying follows the checkpoint's own ``config.json``: transformers 5 builds every T5 with
``lm_head`` tied to the input embeddings (its T5Config forces ``tie_word_embeddings``
to True) and unties it only when loading a checkpoint whose ``lm_head`` differs, as
T5 v1.1 / FLAN-T5 / mT5 checkpoints do. A config that says ``tie_word_embeddings:
false`` therefore gets a separate ``lm_head`` here, as the loaded model would have.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from lorabench.accounting.counting import count_parameters
from lorabench.errors import UsageError
from lorabench.models.ref import ModelKind, ModelRef
from lorabench.vocab import PRECISIONS, HeadType, TaskFamily

CONVENTION = (
    "peft get_nb_trainable_parameters: tied tensors once; bitsandbytes 4-bit weights at their unpacked size "
    "(so every precision gives the same count); a seq-cls head counted twice in the total (original + "
    "trainable modules_to_save copy)"
)


@dataclass
class ParamCount:
    """What ``lorabench params`` reports (``--json`` prints it as a dict)."""

    model: str
    model_type: str
    method: str
    rank: int | None
    task_type: str
    precision: str
    trainable_params: int
    total_params: int
    trainable_pct: float
    tie_word_embeddings: bool
    resolved: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    convention: str = CONVENTION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """peft's ``print_trainable_parameters`` line."""
        return (
            f"trainable params: {self.trainable_params:,d} || all params: {self.total_params:,d} || "
            f"trainable%: {self.trainable_pct:.4f}"
        )


# The head each built-in model is fine-tuned with, from its pretraining objective.
BUILTIN_TASK_TYPES = {"clm": HeadType.CAUSAL_LM.value, "mlm": HeadType.SEQ_CLS.value, "span": HeadType.SEQ2SEQ_LM.value}


def _builtin_config(model: str) -> tuple[Any, dict[str, Any]]:
    """A built-in model's config, built as its pretraining builds it: no pretraining needed to count."""
    from lorabench.models import BUILTIN_MODELS
    from lorabench.models.builtin import build_config, build_tokenizer

    spec = BUILTIN_MODELS.get(ModelRef.parse(model).name)
    config = build_config(spec, build_tokenizer())
    return config, config.to_dict()


def read_config(model: str) -> tuple[Any, dict[str, Any]]:
    """(transformers config, the raw config.json dict) from a built-in, a local directory or the HF cache/Hub."""
    from transformers import AutoConfig, PretrainedConfig

    from lorabench.models.loading import _hub_error

    ref = ModelRef.parse(model)
    if ref.kind is ModelKind.BUILTIN:
        return _builtin_config(model)
    path = ref.known_dir() or ref.path
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise UsageError(f"{model!r} is a directory without config.json")
    _check_config_file(path)
    try:
        raw, _ = PretrainedConfig.get_config_dict(path)
        config = AutoConfig.from_pretrained(path)
    except OSError as exc:
        raise _hub_error(model, exc) from None
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"cannot build a config from {model!r}: {str(exc)[:300]}") from None
    return config, raw


def _check_config_file(path: str) -> None:
    """A local config.json must be a JSON object with no negative size: one clear line, not a traceback."""

    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        return  # a hub id: transformers looks it up
    try:
        with open(file, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"{file}: not a readable config.json ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{file}: a config.json must be a JSON object, got {type(data).__name__}")
    for key, value in data.items():
        # A size or count must not be negative: it builds nonsense or crashes torch mid-way.
        if isinstance(value, int) and not isinstance(value, bool) and value < 0 and _is_size(key):
            raise UsageError(f"{file}: {key} must be >= 0, got {value}")


def _is_size(key: str) -> bool:
    return key.startswith(("n_", "num_")) or key.endswith(("_size", "_dim", "_layers", "_heads", "_embd", "_positions"))


def infer_task_type(config: Any) -> str:
    """The usual fine-tuning head for the checkpoint's architecture.

    seq-cls for classifiers and masked-LM encoders (BERT, RoBERTa: fine-tuned with a
    classification head), seq2seq-lm for encoder-decoders, causal-lm otherwise.
    """
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForSequenceClassification", "ForMaskedLM")) for a in archs):
        return HeadType.SEQ_CLS.value
    return (HeadType.SEQ2SEQ_LM if getattr(config, "is_encoder_decoder", False) else HeadType.CAUSAL_LM).value


def method_options(cls: Any, alpha: float | None, target_modules: list[str] | None) -> Any:
    """The method's options with the command line's overrides, validated like a suite's."""
    names = {f.name for f in dataclasses.fields(cls.Options)}
    kwargs: dict[str, Any] = {}
    for key, value in (("alpha", alpha), ("target_modules", target_modules)):
        if value is None:
            continue
        if key not in names:
            raise UsageError(
                f"method {cls.name!r} has no `{key}` option (options: {', '.join(sorted(names)) or 'none'})"
            )
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return cls.Options(**kwargs)
    except ValueError as exc:
        raise UsageError(f"{cls.name}: {exc}") from None


def untie_like_checkpoint(model: Any, raw: dict[str, Any]) -> bool:
    """Give ``lm_head`` its own weight where config.json says the checkpoint does not tie it."""
    import torch

    if _tied(model) and raw.get("tie_word_embeddings") is False:
        out = model.get_output_embeddings()
        out.weight = torch.nn.Parameter(torch.empty_like(out.weight))
        return True
    return False


def _tied(model: Any) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight


# Largest model built with real (random) weights when a method cannot be applied on the
# meta device (it initialises from the base weights: SVD, sparsity masks): 400 MB in fp32.
CPU_FALLBACK_PARAMS = 100_000_000


def check_rank(cls: Any, rank: int | None) -> None:
    """The one rule for ``--rank`` in ``params`` and ``estimate``: >= 1, and only for methods with a rank."""
    if rank is not None and not cls.uses_rank:
        raise UsageError(f"method {cls.name!r} has no rank; drop --rank")
    if rank is not None and rank < 1:
        raise UsageError(f"--rank should be >= 1, got {rank}")


def apply_on_meta(cls: Any, net: Any, ctx: Any, build_cpu: Any) -> Any:
    """Apply the method on the meta device; methods that read base weights get a CPU build if small.

    Some peft types initialise from the weights (FRoD's and AdaMSS's decompositions,
    SHiRA's random masks via ``nonzero``), which meta tensors cannot provide.
    """
    import torch

    try:
        # New tensors on the meta device too: peft creates adapter weights on the default device,
        # and a rank of 10^8 would allocate tens of GB for a number that needs no memory.
        with warnings.catch_warnings(), torch.device("meta"):  # deprecation chatter between peft and transformers
            warnings.simplefilter("ignore", FutureWarning)
            return cls().apply(net, ctx)
    except (NotImplementedError, RuntimeError) as exc:
        if "meta" not in str(exc).lower():
            raise
        size = sum(p.numel() for p in net.parameters())
        if size > CPU_FALLBACK_PARAMS:
            raise UsageError(
                f"{cls.name} initialises from the base model's weights ({exc}), so it cannot be counted on the "
                f"meta device, and a {size:,}-parameter model is too large to build on the CPU for it"
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls().apply(build_cpu(), ctx)


def meta_model(
    model: str,
    config: Any,
    raw: dict[str, Any],
    task_type: str | None = None,
    num_labels: int | None = None,
    device: str = "meta",
) -> tuple[Any, str, str, list[str]]:
    """(model on the meta device, task type, family, notes): no weights, no memory.

    ``device="cpu"`` builds it with random weights, for methods that read them.
    """
    import torch
    import transformers

    from lorabench.models.loading import AUTO_CLASSES

    task_type = task_type or infer_task_type(config)
    if task_type not in tuple(HeadType):
        raise UsageError(f"unknown task type {task_type!r}; known: {', '.join(HeadType)}")
    family = HeadType(task_type).family.value
    if num_labels is not None:
        config.num_labels = num_labels
    auto = getattr(transformers, AUTO_CLASSES[family])
    try:
        with torch.device(device):
            net = auto.from_config(config)
    except ValueError as exc:  # e.g. an encoder-only config asked for a causal LM
        raise UsageError(f"{model!r} cannot be built as {task_type} ({auto.__name__}): {exc}") from None
    except (TypeError, RuntimeError, ArithmeticError, AttributeError) as exc:  # sizes of 0 and other nonsense
        raise UsageError(
            f"{model!r}: its config does not build a model ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    notes = []
    if untie_like_checkpoint(net, raw):
        notes.append(
            "config.json has tie_word_embeddings: false, so lm_head is counted separately (transformers builds "
            "this model tied from a config alone, and unties it when loading the checkpoint)"
        )
    return net, task_type, family, notes


def count(
    model: str,
    method: str,
    rank: int | None = None,
    alpha: float | None = None,
    target_modules: list[str] | None = None,
    task_type: str | None = None,
    num_labels: int | None = None,
    precision: str = "fp32",
    method_opts: Any = None,
) -> ParamCount:
    """Count trainable and total parameters of ``method`` on ``model``, without weights.

    ``method_opts``: checked options to use as they are (a peft-type entry's), instead of
    the method's defaults with ``alpha``/``target_modules`` applied.
    """
    from lorabench.methods import method_class
    from lorabench.methods.base import method_context

    cls = method_class(method, dataclasses.asdict(method_opts) if dataclasses.is_dataclass(method_opts) else None)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    check_rank(cls, rank)
    options = method_opts if method_opts is not None else method_options(cls, alpha, target_modules)
    builtin = _custom_builtin(model)
    if builtin is not None:
        return _count_custom(model, builtin, cls, rank, options, task_type, num_labels, precision)
    config, raw = read_config(model)
    reason = cls.invalid_reason(precision, config.model_type)
    if reason:
        raise UsageError(f"{method} at {precision} on a {config.model_type} model is invalid: {reason}")
    ref = ModelRef.parse(model)
    if task_type is None and ref.kind is ModelKind.BUILTIN:
        from lorabench.models import BUILTIN_MODELS

        task_type = BUILTIN_TASK_TYPES[BUILTIN_MODELS.get(ref.name).objective]
    net, task_type, family, notes = meta_model(model, config, raw, task_type, num_labels)
    ctx = method_context(
        cls,
        rank=rank,
        options=options,
        task_family=family,
        precision=precision,
        model_type=config.model_type,
        target_modules=None,
    )
    try:
        net = apply_on_meta(cls, net, ctx, lambda: meta_model(model, config, raw, task_type, num_labels, "cpu")[0])
    except (ValueError, TypeError) as exc:  # e.g. target modules that match nothing, a bias-free bitfit
        raise UsageError(f"{method} cannot be applied to {model!r} ({config.model_type}): {exc}") from None
    if next(net.parameters()).device.type != "meta":
        notes.append(f"{method} initialises from the base weights, so it was built on the CPU with random weights")
    trainable, total = count_parameters(net)
    return ParamCount(
        model=model,
        model_type=config.model_type,
        method=method,
        rank=ctx.rank,
        task_type=task_type,
        precision=precision,
        trainable_params=trainable,
        total_params=total,
        trainable_pct=100.0 * trainable / total if total else 0.0,
        tie_word_embeddings=_tied(net),
        resolved=cls().resolved(net, ctx),
        notes=notes,
    )


def _custom_builtin(model: str) -> Any:
    """The spec of a built-in model that is not a transformers model (it has its own loader), else None."""
    ref = ModelRef.parse(model)
    if ref.kind is not ModelKind.BUILTIN:
        return None
    from lorabench.models import BUILTIN_MODELS

    spec = BUILTIN_MODELS.get(ref.name)  # an unknown name: UsageError with did-you-mean
    return spec if spec.loader is not None else None


def _count_custom(
    model: str,
    spec: Any,
    cls: Any,
    rank: int | None,
    options: Any,
    task_type: str | None,
    num_labels: int | None,
    precision: str,
) -> ParamCount:
    """Count on a built-in plain-PyTorch model: built by its own loader (milliseconds, seeded) on the CPU."""

    from lorabench.methods.base import method_context
    from lorabench.suite.schema import ModelDef, QuantSettings

    task_type = task_type or HeadType.SEQ_CLS.value
    if task_type != HeadType.SEQ_CLS:
        raise UsageError(f"{model} is a text classifier; only --task-type seq-cls applies")
    reason = cls.invalid_reason(precision, spec.model_type)
    if reason:
        raise UsageError(f"{cls.name} at {precision} on a {spec.model_type} model is invalid: {reason}")
    module, _, attr = spec.loader.partition(":")
    loader = getattr(importlib.import_module(module), attr)
    kwargs = {"num_labels": num_labels} if num_labels is not None else {}
    net, _tok, _info = loader(
        ModelDef(path=model), TaskFamily.CLASSIFICATION.value, "fp32", QuantSettings(), "cpu", kwargs
    )
    ctx = method_context(
        cls,
        rank=rank,
        options=options,
        task_family=TaskFamily.CLASSIFICATION.value,
        precision=precision,
        model_type=spec.model_type,
        target_modules=None,
    )
    try:
        net = cls().apply(net, ctx)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{cls.name} cannot be applied to {model!r} ({spec.model_type}): {exc}") from None
    trainable, total = count_parameters(net)
    return ParamCount(
        model=model,
        model_type=spec.model_type,
        method=cls.name,
        rank=ctx.rank,
        task_type=task_type,
        precision=precision,
        trainable_params=trainable,
        total_params=total,
        trainable_pct=100.0 * trainable / total if total else 0.0,
        tie_word_embeddings=False,
        resolved=cls().resolved(net, ctx),
    )
