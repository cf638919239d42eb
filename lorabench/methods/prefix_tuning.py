"""Prefix tuning (peft): trained key/value prefixes prepended in every attention layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lorabench.methods.base import MethodContext
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod
from lorabench.suite.typed import check_fields


@dataclass(frozen=True)
class PrefixTuningOptions:
    num_virtual_tokens: int = 20
    prefix_projection: bool = False  # True: reparametrise the prefix through a 2-layer MLP (the paper's trick)
    encoder_hidden_size: int | None = None  # width of that MLP; None: the model's hidden size

    RANGES: ClassVar[dict[str, str]] = {"num_virtual_tokens": ">= 1", "encoder_hidden_size": ">= 1"}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)


def kv_shape(config: Any) -> dict[str, int]:
    """Prefix shape for attention with fewer key/value heads than query heads, where peft misses it.

    peft sizes prefixes for grouped-query attention from ``num_key_value_heads``. Falcon
    names its count ``num_kv_heads`` and, with ``multi_query`` on the original
    architecture (Falcon-7B), uses a single key/value head; without this the prefix has
    one head per query head and the first forward fails.
    """
    if getattr(config, "model_type", None) != "falcon":
        return {}
    heads = config.num_attention_heads
    kv = config.num_kv_heads if (config.new_decoder_architecture or not config.multi_query) else 1
    if kv == heads:
        return {}
    head_dim = config.hidden_size // heads
    return {"num_attention_heads": kv, "token_dim": head_dim * kv}


class PrefixTuning(PeftMethod):
    name = "prefix-tuning"
    description = "prefix tuning (peft): trained key/value prefixes in every attention layer; the model is frozen"
    Options = PrefixTuningOptions

    def peft_config(self, ctx: MethodContext, model_config: Any = None) -> Any:
        from peft import PrefixTuningConfig

        opts: PrefixTuningOptions = ctx.options
        extra: dict[str, Any] = {}
        if opts.encoder_hidden_size is not None:
            extra["encoder_hidden_size"] = opts.encoder_hidden_size
        return PrefixTuningConfig(
            num_virtual_tokens=opts.num_virtual_tokens,
            prefix_projection=opts.prefix_projection,
            task_type=PEFT_TASK_TYPES[ctx.task_family],
            **extra,
            **(kv_shape(model_config) if model_config is not None else {}),
        )

    @classmethod
    def extra_positions(cls, options: PrefixTuningOptions) -> int:
        return options.num_virtual_tokens

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(ctx, getattr(model, "config", None)))

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        cfg = model.peft_config["default"]
        return {**super().resolved(model, ctx), "num_virtual_tokens": cfg.num_virtual_tokens}
