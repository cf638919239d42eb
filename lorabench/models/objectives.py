"""Pretraining objectives for built-in models: what data they see and how it is batched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Objective:
    make_data: Callable[..., Any]
    sample: Callable[..., dict[str, Any]]
    model_class: Callable[[], Any] | None = None  # None: AutoModelForCausalLM


def _clm_data(spec: Any, tokenizer: Any, n_docs: int) -> Any:
    from lorabench.models.builtin import _clm_batches

    return _clm_batches(spec, tokenizer, n_docs)


def _clm_sample(data: Any, batch_size: int, gen: Any, tokenizer: Any) -> dict[str, Any]:
    import torch

    idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
    x = data[idx]
    return {"input_ids": x, "labels": x}


OBJECTIVES: dict[str, Objective] = {"clm": Objective(_clm_data, _clm_sample)}
