"""Method registry: one file per method plus one line here."""

from lorabench.methods.base import Method
from lorabench.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("full", "lorabench.methods.full:Full")
METHODS.register("freeze", "lorabench.methods.freeze:Freeze")
METHODS.register("lora", "lorabench.methods.lora:LoRA")

__all__ = ["METHODS", "Method"]
