"""The names every stage shares: precisions, task families, statuses, devices, units.

This module is at the bottom of the import graph (it imports nothing from lorabench),
so the schema, the planner, the methods, the run and the CLI all spell these names
from here. The members are string enums: they compare equal to, and serialise as,
the plain strings in suite files and records, so records and run_ids do not change.
"""

from __future__ import annotations

import re
from enum import StrEnum

MiB = 1024 * 1024  # the one unit behind every ``*_mb`` figure and every "MiB" printed


class Precision(StrEnum):
    """How the base model's weights are held during a run."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    NF4 = "nf4"
    FP4 = "fp4"


PRECISIONS = tuple(p.value for p in Precision)
# bitsandbytes bases: frozen, adapters only.
QUANTIZED = (Precision.INT8.value, Precision.NF4.value, Precision.FP4.value)
# Precisions whose weights are a torch dtype (the rest are bitsandbytes formats).
FLOAT_PRECISIONS = (Precision.FP32.value, Precision.BF16.value, Precision.FP16.value)


class TaskFamily(StrEnum):
    """The model family a task runs with: it picks the Auto class and peft's task type."""

    CAUSAL_LM = "causal-lm"
    CLASSIFICATION = "classification"
    SEQ2SEQ = "seq2seq"


TASK_FAMILIES = tuple(f.value for f in TaskFamily)
# peft's ``TaskType`` name for each family (the value of ``LoraConfig(task_type=...)``).
PEFT_TASK_TYPES = {
    TaskFamily.CAUSAL_LM.value: "CAUSAL_LM",
    TaskFamily.CLASSIFICATION.value: "SEQ_CLS",
    TaskFamily.SEQ2SEQ.value: "SEQ_2_SEQ_LM",
}


class HeadType(StrEnum):
    """``lorabench params/estimate --task-type``: peft's names for the head a model is tuned with."""

    CAUSAL_LM = "causal-lm"
    SEQ2SEQ_LM = "seq2seq-lm"
    SEQ_CLS = "seq-cls"

    @property
    def family(self) -> TaskFamily:
        return _HEAD_FAMILY[self]

    @classmethod
    def of(cls, family: str) -> HeadType:
        """The head a task family trains."""
        return next(h for h, f in _HEAD_FAMILY.items() if f == family)


_HEAD_FAMILY = {
    HeadType.CAUSAL_LM: TaskFamily.CAUSAL_LM,
    HeadType.SEQ2SEQ_LM: TaskFamily.SEQ2SEQ,
    HeadType.SEQ_CLS: TaskFamily.CLASSIFICATION,
}


class Status(StrEnum):
    """What became of a run: a leaderboard cell, whatever happened to its process."""

    SUCCESS = "success"
    FAILED = "failed"
    OOM = "oom"
    DIVERGED = "diverged"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    FAILED_ENV = "failed_env"  # the machine's fault (full disk, quota): resume reruns it
    PREDICTED_OOM = "predicted_oom"  # not run: its traced peak exceeds execution.gpu_memory; resume re-decides


STATUSES = tuple(s.value for s in Status)


class Device(StrEnum):
    """``execution.device``: where a run trains (``auto``: CUDA when torch sees it)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def resolve_device(choice: str, cuda_available: bool | None = None) -> str:
    """The one rule that turns ``execution.device`` into the device a run uses.

    ``cuda_available`` defaults to torch's answer (inside a run's process); a driver
    that must not initialise CUDA passes what it knows instead (e.g. a Ray cluster's GPUs).
    Returns the plain string (``"cpu"``/``"cuda"``), as records and torch take it.
    """
    if cuda_available is None:
        import torch  # heavy: only the run's process asks torch, never validate or the CLI

        cuda_available = torch.cuda.is_available()
    device = Device(choice)
    if device is Device.AUTO:
        return (Device.CUDA if cuda_available else Device.CPU).value
    if device is Device.CUDA and not cuda_available:
        raise RuntimeError("execution.device is 'cuda' but torch sees no CUDA device")
    return device.value


# Memory as nvidia-smi reports memory.total for each card (MiB): what the driver can hand out.
GPU_MEMORY_MIB: dict[str, int] = {
    "H200-141GB": 143771,
    "H100-80GB": 81559,
    "A100-80GB": 81920,
    "A100-40GB": 40960,
    "L40S": 46068,
    "A6000": 49140,
    "A10G": 23028,
    "L4": 23034,
    "RTX4090": 24564,
    "RTX3090": 24576,
    "T4": 15360,
    "V100-32GB": 32768,
    "V100-16GB": 16384,
}


def memory_size(text: str) -> int | None:
    """'24GiB', '80GB', '40960MiB', '24G' -> bytes (GB and G read as GiB, as cards are sold); None if not a size."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(GiB|GB|G|MiB|MB|M|TiB|TB|T)?\s*", text, re.IGNORECASE)
    if not m:
        return None
    value, unit = float(m.group(1)), (m.group(2) or "GiB").lower()
    return int(value * {"t": 1024**4, "g": 1024**3, "m": MiB}[unit[0]])


def card_memory(name: str) -> int | None:
    """Bytes of a known card (any letter case), None for an unknown name."""
    for key, mib in GPU_MEMORY_MIB.items():
        if key.lower() == name.strip().lower():
            return mib * MiB
    return None


def gpu_budget(text: str) -> int:
    """A card name ("A100-40GB") or a size ("80GiB") -> bytes; ValueError names both forms."""
    found = card_memory(text)
    found = memory_size(text) if found is None else found
    if found is None:
        raise ValueError(
            f"{text!r} is neither a size (24GiB, 80GB, 40960MiB) nor a known card ({', '.join(GPU_MEMORY_MIB)})"
        )
    return found
