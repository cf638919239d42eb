"""Shared wrapper for methods that peft implements: build a config, call get_peft_model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorabench.methods.base import Method, MethodContext
from lorabench.vocab import PEFT_TASK_TYPES  # noqa: F401  (the methods import it from here)


def target_modules(ctx: MethodContext, option: tuple[str, ...] | None) -> Any:
    """The method option wins, then the model definition; None lets peft pick per architecture."""
    chosen = option if option is not None else ctx.target_modules
    if chosen is None:
        return None
    if tuple(chosen) == ("all-linear",):
        return "all-linear"
    return list(chosen)


def lora_default_targets(ctx: MethodContext, own_mapping: dict[str, Any]) -> Any:
    """peft's LoRA defaults for architectures a method's own peft mapping lacks.

    Some methods (AdaLoRA) have a shorter per-architecture table than LoRA; for those
    architectures LoRA's choice is the sensible default. None keeps peft's own choice.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA

    if ctx.model_type in own_mapping:
        return None
    found = LORA.get(ctx.model_type)
    return list(found) if isinstance(found, list) else found


class PeftMethod(Method):
    """A method that peft implements; subclasses only build the peft config."""

    def peft_config(self, ctx: MethodContext) -> Any:
        raise NotImplementedError

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(ctx))

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        cfg = model.peft_config["default"]
        out: dict[str, Any] = {"peft_type": str(cfg.peft_type.value)}
        tm = getattr(cfg, "target_modules", None)
        if tm is not None:
            out["target_modules"] = sorted(tm) if not isinstance(tm, str) else tm
        mts = getattr(cfg, "modules_to_save", None)
        if mts:
            out["modules_to_save"] = sorted(mts)
        return out

    def save(self, model: Any, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir))

    def load(self, base: Any, ctx: MethodContext, in_dir: Path) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(in_dir))
