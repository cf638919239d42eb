"""Model architectures shipped as config directories: ``path: config:NAME`` in a suite.

They let a suite measure what a real architecture costs (``weights: random``) with no
download. See ``README.md`` here for where each config comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorabench.registry import Registry

PREFIX = "config:"
ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ShippedConfig:
    """One directory under ``lorabench/models/configs`` (config.json + tokenizer)."""

    name: str
    description: str

    @property
    def path(self) -> Path:
        return ROOT / self.name


MODEL_CONFIGS: Registry[ShippedConfig] = Registry("shipped model config")
for _cfg in (
    ShippedConfig("llama-1b", "TinyLlama 1.1B shape (22 layers, hidden 2048, GQA 32/4 heads), no weights"),
    ShippedConfig("llama-7b", "Llama 2 7B shape (32 layers, hidden 4096, 32 heads), no weights"),
    ShippedConfig(
        "falcon-7b", "Falcon 7B shape (32 layers, hidden 4544, 71 heads, multi-query, parallel attention), no weights"
    ),
):
    MODEL_CONFIGS.register(_cfg.name, _cfg)


def config_dir(name: str) -> Path:
    """The shipped directory of ``config:NAME``; an unknown name is a UsageError with a suggestion."""
    return MODEL_CONFIGS.get(name).path
