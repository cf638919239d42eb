"""Model stage: built-in tiny models (pretrained by lorabench itself) and hub/local loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lorabench.registry import Registry


@dataclass(frozen=True)
class BuiltinModel:
    """A tiny model that lorabench builds and pretrains offline, cached by content hash."""

    name: str
    description: str
    model_type: str  # transformers config model_type
    config: dict[str, Any] = field(default_factory=dict)
    objective: Literal["clm", "mlm", "span"] = "clm"
    pretrain_steps: int = 300
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 3e-3
    seed: int = 0
    # A lazy "module:attr" loader for models that are not transformers models (e.g. the
    # hand-written classifier). Signature as lorabench.models.loading.load_model.
    loader: str | None = None


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")


def register_builtin(spec: BuiltinModel) -> None:
    BUILTIN_MODELS.register(spec.name, spec)


register_builtin(
    BuiltinModel(
        name="tiny-gpt2",
        description="GPT-2-style causal LM, 2 layers x 96 wide (~0.27M params), pretrained on built-in prose",
        model_type="gpt2",
        config={"n_layer": 2, "n_embd": 96, "n_head": 4, "n_positions": 256},
        objective="clm",
        pretrain_steps=250,
        batch_size=16,
    )
)
register_builtin(
    BuiltinModel(
        name="tiny-bert",
        description="BERT-style encoder, 2 layers x 96 wide, MLM-pretrained on built-in text (classification)",
        model_type="bert",
        config={
            "num_hidden_layers": 2,
            "hidden_size": 96,
            "num_attention_heads": 4,
            "intermediate_size": 384,
            "max_position_embeddings": 256,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        objective="mlm",
        pretrain_steps=250,
        batch_size=32,
    )
)
register_builtin(
    BuiltinModel(
        name="tiny-t5",
        description="T5-style encoder-decoder, 2+2 layers x 96 wide, denoising-pretrained on built-in text",
        model_type="t5",
        config={
            "num_layers": 2,
            "num_decoder_layers": 2,
            "d_model": 96,
            "d_kv": 24,
            "num_heads": 4,
            "d_ff": 384,
            "relative_attention_num_buckets": 16,
            "relative_attention_max_distance": 64,
            "dropout_rate": 0.0,
            "feed_forward_proj": "relu",
        },
        objective="span",
        pretrain_steps=250,
        batch_size=16,
        seq_len=48,
    )
)
register_builtin(
    BuiltinModel(
        name="handwritten-classifier",
        description="hand-written PyTorch text classifier (embeddings -> mean -> ReLU -> linear), seeded, not pretrained",
        model_type="handwritten-classifier",
        config={"embedding_dim": 64},
        loader="lorabench.models.handwritten:load",
    )
)
