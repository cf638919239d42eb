"""Method registry: one file per method plus one line here.

Suites may also define methods by peft type (``methods.NAME: {peft_type: OFT, config: ...}``);
:func:`method_class` resolves a run's method name either way.
"""

from collections.abc import Mapping
from typing import Any

from lorabench.errors import UsageError
from lorabench.methods.base import Method
from lorabench.registry import Registry


def _check_method(name: str, cls: type[Method]) -> None:
    """peft's register_peft_method idea: a method's pieces are checked when it is loaded."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"method {name!r}: {cls!r} is not a lorabench.methods.base.Method subclass")
    cls.check_registration(name)


METHODS: Registry[type[Method]] = Registry("method", check=_check_method)
METHODS.register("full", "lorabench.methods.full:Full")
METHODS.register("freeze", "lorabench.methods.freeze:Freeze")
METHODS.register("bitfit", "lorabench.methods.bitfit:BitFit")
METHODS.register("lora", "lorabench.methods.lora:LoRA")
METHODS.register("lora-ref", "lorabench.methods.lora_ref:LoRARef")
METHODS.register("dora", "lorabench.methods.dora:DoRA")
METHODS.register("rslora", "lorabench.methods.rslora:RsLoRA")
METHODS.register("pissa", "lorabench.methods.pissa:PiSSA")
METHODS.register("adalora", "lorabench.methods.adalora:AdaLoRA")
METHODS.register("vera", "lorabench.methods.vera:VeRA")
METHODS.register("loha", "lorabench.methods.loha:LoHa")
METHODS.register("lokr", "lorabench.methods.lokr:LoKr")
METHODS.register("ia3", "lorabench.methods.ia3:IA3")
METHODS.register("prompt-tuning", "lorabench.methods.prompt_tuning:PromptTuning")
METHODS.register("prefix-tuning", "lorabench.methods.prefix_tuning:PrefixTuning")


def is_peft_entry(options: Any) -> bool:
    """Whether a method's options define it by peft type (``{peft_type: ..., config: ...}``)."""
    return isinstance(options, Mapping) and "peft_type" in options


def method_class(name: str, options: Any = None) -> type[Method]:
    """The class of method ``name``: a registered one, or a peft-type entry built from ``options``."""
    if name in METHODS:
        return METHODS.get(name)
    if is_peft_entry(options):
        from lorabench.methods.peft_type import PeftTypeOptions, method_for

        return method_for(name, PeftTypeOptions(str(options["peft_type"]), dict(options.get("config") or {})))
    raise UsageError(METHODS.unknown_message(name))


__all__ = ["METHODS", "Method", "is_peft_entry", "method_class"]
