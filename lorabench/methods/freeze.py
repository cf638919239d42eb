"""Partial fine-tuning: train only the top-k transformer blocks and/or named modules.

A classification task's new head always trains too: it starts random, and a frozen
random head would make every other choice meaningless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lorabench.methods.base import Method, MethodContext, head_parameter_names
from lorabench.suite.typed import check_fields


@dataclass(frozen=True)
class FreezeOptions:
    top_k: int | None = 1  # last k blocks of the largest block list
    modules: tuple[str, ...] | None = None  # regexes matched (re.search) against parameter names

    def __post_init__(self) -> None:
        if self.top_k is None and not self.modules:
            raise ValueError("freeze needs `top_k` or `modules`")
        check_fields(self, {"top_k": ">= 1"})


def block_lists(model: Any) -> list[tuple[str, Any]]:
    """ModuleLists of repeated blocks (e.g. ``transformer.h``), longest first.

    Lists inside a block (T5's ``block.0.layer``: attention, cross-attention, MLP) are
    not block lists, however long. Among equally long lists the one nearest the output
    comes first (an encoder-decoder's decoder).
    """
    import torch

    found = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) > 0 and not any(p.isdigit() for p in n.split("."))
    ]
    order = {n: i for i, (n, _) in enumerate(found)}
    return sorted(found, key=lambda nm: (-len(nm[1]), -order[nm[0]]))


class Freeze(Method):
    name = "freeze"
    description = "train only the top-k blocks and/or named modules; the rest stays frozen"
    trains_base_weights = True
    Options = FreezeOptions

    def _selected(self, model: Any, opts: FreezeOptions) -> list[str]:
        names: set[str] = set()
        if opts.top_k is not None:
            lists = block_lists(model)
            if not lists:
                raise ValueError("freeze.top_k: the model has no list of blocks")
            prefix, blocks = lists[0]
            if opts.top_k > len(blocks):
                raise ValueError(f"freeze.top_k={opts.top_k} but the model has {len(blocks)} blocks")
            for i in range(len(blocks) - opts.top_k, len(blocks)):
                names.update(f"{prefix}.{i}.{n}" for n, _ in blocks[i].named_parameters())
        for pattern in opts.modules or ():
            hits = [n for n, _ in model.named_parameters() if re.search(pattern, n)]
            if not hits:
                raise ValueError(f"freeze.modules: {pattern!r} matches no parameter")
            names.update(hits)
        return sorted(names)

    def apply(self, model: Any, ctx: MethodContext) -> Any:
        selected = set(self._selected(model, ctx.options)) | head_parameter_names(model, ctx.task_family)
        for n, p in model.named_parameters():
            p.requires_grad_(n in selected)
        return model

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        return {
            "trainable_modules": sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad})
        }
