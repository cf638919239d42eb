"""Task registry: task types (families) and built-in task presets usable by name."""

from __future__ import annotations

from typing import Any

from lorabench.registry import Registry
from lorabench.tasks.base import Task

TASK_TYPES: Registry[type[Task]] = Registry("task type")
TASK_TYPES.register("causal-lm", "lorabench.tasks.causal_lm:CausalLM")
TASK_TYPES.register("classification", "lorabench.tasks.classification:Classification")
TASK_TYPES.register("summarization", "lorabench.tasks.summarization:Summarization")

# Built-in tasks on synthetic data: offline, deterministic, and learnable by the
# built-in pretrained models (see lorabench.data).
TASK_PRESETS: Registry[dict[str, Any]] = Registry("built-in task")
TASK_PRESETS.register(
    "synthetic-lm",
    {"type": "causal-lm", "data": {"synthetic": "facts"}, "n_train": 600, "n_eval": 80},
)
TASK_PRESETS.register(
    "synthetic-sentiment",
    {"type": "classification", "data": {"synthetic": "sentiment"}, "num_labels": 2, "n_train": 1600, "n_eval": 200},
)
TASK_PRESETS.register(
    "synthetic-dialogsum",
    {
        "type": "summarization",
        "data": {"synthetic": "dialogues"},
        "prompt": "{input} <sep>",  # the built-in vocabulary has no "summarize:"
        "max_target_len": 24,
        "n_train": 800,
        "n_eval": 64,
    },
)

__all__ = ["TASK_PRESETS", "TASK_TYPES", "Task"]
