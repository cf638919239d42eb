"""The hand-written PyTorch text classifier from our users' LoRA tutorial, as a built-in model.

    token ids → embedding → mean over real tokens → ReLU → linear → class logits

It is not a transformers model: :func:`load` is the ``loader`` of the built-in model
``handwritten-classifier``, called by :func:`lorabench.models.loading.load_model`
instead of ``from_pretrained``. Its forward takes ``input_ids``/``attention_mask``/
``labels`` and returns ``.loss``/``.logits`` like a transformers classifier, so the
classification task trains and evaluates it as any other model, and peft can wrap it.

There is no pretraining: the tutorial trains this classifier from scratch with SGD, which
in a suite is the ``full`` method. Weights start from a seeded initialisation
(``BuiltinModel.seed``), identical in every run, so every method starts from the same base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lorabench.vocab import QUANTIZED

if TYPE_CHECKING:
    from lorabench.suite.schema import ModelDef, QuantSettings

MODEL_TYPE = "handwritten-classifier"


@dataclass
class ClassifierOutput:
    """What a transformers classifier returns, as far as lorabench's tasks read it."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class Config:
    """A minimal ``config`` (peft and the classification task read ``model_type``/``num_labels``)."""

    def __init__(self, vocab_size: int, embedding_dim: int, num_labels: int, pad_token_id: int) -> None:
        self.model_type = MODEL_TYPE
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.num_labels = num_labels
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = False

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class HandwrittenClassifier(nn.Module):
    """Embedding → mean over tokens → ReLU → linear."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.linear = nn.Linear(config.embedding_dim, config.num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **unused: Any,  # peft passes transformers-style extras (return_dict, output_attentions, ...)
    ) -> ClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        tokens = self.embedding(input_ids) * mask
        pooled = tokens.sum(1) / mask.sum(1).clamp(min=1.0)  # mean over real (non-padding) tokens
        logits = self.linear(torch.relu(pooled))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return ClassifierOutput(loss=loss, logits=logits)


def load(
    model: ModelDef,
    family: str,
    precision: str,
    quant: QuantSettings,
    device: str,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[HandwrittenClassifier, Any, dict[str, Any]]:
    """The ``loader`` hook: (model, tokenizer, info) as :func:`lorabench.models.loading.load_model` returns."""
    from lorabench.models import BUILTIN_MODELS
    from lorabench.models.builtin import build_tokenizer
    from lorabench.models.loading import DTYPES, ModelLoadError
    from lorabench.models.ref import ModelRef

    builtin = BUILTIN_MODELS.get(ModelRef.parse(model.path).name)
    if family != "classification":
        raise ModelLoadError(f"builtin:{builtin.name} is a text classifier; it cannot serve a {family} task")
    if precision in QUANTIZED:
        raise ModelLoadError(
            f"builtin:{builtin.name} is a plain PyTorch model, not a transformers one; bitsandbytes {precision} "
            "loading does not apply (use fp32, bf16 or fp16)"
        )
    tokenizer = build_tokenizer()
    config = Config(
        vocab_size=len(tokenizer),
        embedding_dim=int(builtin.config.get("embedding_dim", 64)),
        num_labels=int((model_kwargs or {}).get("num_labels", 2)),
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # the same base in every run, whatever the run's seed
        torch.manual_seed(builtin.seed)
        net = HandwrittenClassifier(config)
    net.to(device=device, dtype=getattr(torch, DTYPES[precision]))
    info = {
        "model_type": MODEL_TYPE,
        "resolved_path": model.path,
        "auto_class": None,
        "init": f"seeded random initialisation (seed {builtin.seed}); no pretraining",
    }
    return net, tokenizer, info
