"""Task registry: task types (families) and built-in task presets usable by name."""

from __future__ import annotations

from typing import Any

from lorabench.registry import Registry
from lorabench.tasks.base import Task

TASK_TYPES: Registry[type[Task]] = Registry("task type")
TASK_TYPES.register("causal-lm", "lorabench.tasks.causal_lm:CausalLM")

# Built-in tasks on synthetic data: offline, deterministic, and learnable by the
# built-in pretrained models (see lorabench.data).
TASK_PRESETS: Registry[dict[str, Any]] = Registry("built-in task")
TASK_PRESETS.register(
    "synthetic-lm",
    {"type": "causal-lm", "data": {"synthetic": "facts"}, "n_train": 600, "n_eval": 80},
)

__all__ = ["TASK_PRESETS", "TASK_TYPES", "Task"]
