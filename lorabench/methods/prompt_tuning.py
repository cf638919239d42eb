"""Prompt tuning (peft): trained virtual-token embeddings prepended to every input.

peft prepends the virtual tokens inside the model, so a causal LM returns logits for
``num_virtual_tokens + seq_len`` positions (its own loss already ignores the prefix).
Tasks score one logit per input token for every method, so a forward hook drops the
virtual positions from the logits; the loss is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from lorabench.methods.base import MethodContext
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod
from lorabench.suite.typed import check_fields


@dataclass(frozen=True)
class PromptTuningOptions:
    num_virtual_tokens: int = 20
    init: Literal["random", "sample_vocab"] = "random"  # sample_vocab: copies of random vocabulary embeddings

    RANGES: ClassVar[dict[str, str]] = {"num_virtual_tokens": ">= 1"}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)


class PromptTuning(PeftMethod):
    name = "prompt-tuning"
    description = "prompt tuning (peft): trained soft-prompt embeddings prepended to the input; the model is frozen"
    Options = PromptTuningOptions

    def peft_config(self, ctx: MethodContext) -> Any:
        from peft import PromptTuningConfig, PromptTuningInit

        opts: PromptTuningOptions = ctx.options
        return PromptTuningConfig(
            num_virtual_tokens=opts.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM if opts.init == "random" else PromptTuningInit.SAMPLE_VOCAB,
            task_type=PEFT_TASK_TYPES[ctx.task_family],
        )

    @classmethod
    def extra_positions(cls, options: PromptTuningOptions) -> int:
        return options.num_virtual_tokens

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        return strip_virtual_logits(super().apply(model, ctx), ctx)

    def load(self, base: Any, ctx: MethodContext, in_dir: Path) -> Any:
        return strip_virtual_logits(super().load(base, ctx, in_dir), ctx)

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        cfg = model.peft_config["default"]
        return {**super().resolved(model, ctx), "num_virtual_tokens": cfg.num_virtual_tokens}


def strip_virtual_logits(model: Any, ctx: MethodContext) -> Any:
    """Make a prompt-tuned causal LM return logits for the real input positions only."""
    if ctx.task_family != "causal-lm":
        return model  # classification logits are per sequence; seq2seq logits are the decoder's
    n = model.peft_config["default"].num_virtual_tokens

    def hook(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        ids = kwargs.get("input_ids", args[0] if args else None)
        logits = getattr(output, "logits", None)
        if ids is not None and logits is not None and logits.dim() == 3 and logits.shape[1] == ids.shape[1] + n:
            output.logits = logits[:, n:]
        return output

    model.register_forward_hook(hook, with_kwargs=True)
    return model
