"""The names every stage shares: precisions, task families, statuses, devices, units.

This module is at the bottom of the import graph (it imports nothing from lorabench),
so the schema, the planner, the methods, the run and the CLI all spell these names
from here. The members are string enums: they compare equal to, and serialise as,
the plain strings in suite files and records, so records and run_ids do not change.
"""

from __future__ import annotations

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
