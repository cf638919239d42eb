"""What a task is to lorabench: options (no torch), data preparation, metrics, evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class TaskData:
    """Prepared examples. ``train`` rows are dicts of token lists; ``eval`` is task-shaped."""

    train: list[dict[str, list[int]]]
    eval: Any
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[dict[str, Any]]
    tokens: int = 0


class Task:
    """Base class for a task family. Subclasses set the class attributes."""

    name: ClassVar[str]
    family: ClassVar[str]  # "causal-lm" | "classification" | "seq2seq" (picks the Auto class)
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, task_name: str, options: dict[str, Any]) -> None:
        self.task_name = task_name
        self.options = options

    def model_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments (e.g. ``num_labels``)."""
        return {}

    def prepare(self, tokenizer: Any, train: dict[str, Any], seed: int) -> TaskData:
        raise NotImplementedError

    def collate(self, rows: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
        """Pad a list of train rows into a batch (labels padded with -100)."""
        return pad_batch(rows, tokenizer.pad_token_id)

    def count_tokens(self, batch: dict[str, Any]) -> int:
        """Non-padding tokens the model processed (inputs, plus decoder labels for seq2seq)."""
        return int(batch["attention_mask"].sum())

    def evaluate(self, model: Any, tokenizer: Any, data: TaskData, eval_cfg: dict[str, Any], ctx: Any) -> EvalResult:
        raise NotImplementedError


def pad_batch(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad ``input_ids``/``labels`` (and any other list fields) to the longest row."""
    import torch

    out: dict[str, Any] = {}
    keys = rows[0].keys()
    longest = {k: max(len(r[k]) for r in rows) for k in keys if isinstance(rows[0][k], list)}
    for k in keys:
        if k not in longest:
            out[k] = torch.tensor([r[k] for r in rows])
            continue
        fill = -100 if k == "labels" else (0 if k.endswith("attention_mask") else pad_id)
        out[k] = torch.tensor([r[k] + [fill] * (longest[k] - len(r[k])) for r in rows])
    if "attention_mask" not in out and "input_ids" in out:
        lens = torch.tensor([len(r["input_ids"]) for r in rows])
        out["attention_mask"] = (torch.arange(longest["input_ids"])[None, :] < lens[:, None]).long()
    return out
