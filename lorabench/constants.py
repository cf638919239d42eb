"""Names that several stages share (suite schema, planner, methods, models, runs).

This module is at the bottom of the import graph: it imports nothing from lorabench,
so the schema, the planner and the methods can all depend on it without a cycle.
"""

from __future__ import annotations

from typing import Literal

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "nf4", "fp4")
QUANTIZED = ("int8", "nf4", "fp4")  # bitsandbytes bases: frozen, adapters only
Precision = Literal["fp32", "bf16", "fp16", "int8", "nf4", "fp4"]

# The model families a task runs with; each picks an Auto class and a peft task type.
TASK_FAMILIES = ("causal-lm", "classification", "seq2seq")
