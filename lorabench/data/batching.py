"""Batching token rows: padding shared by the tasks and by the built-in models' pretraining.

Below ``tasks/`` and ``models/`` so both use one rule; no torch at import (``lorabench
--help`` and ``validate`` stay light).
"""

from __future__ import annotations

from typing import Any


def pad_batch(rows: list[dict[str, Any]], pad_id: int, left: bool = False) -> dict[str, Any]:
    """Pad ``input_ids``/``labels`` (and any other list fields) to the longest row.

    Right padding for training and scoring; ``left=True`` for decoder-only generation,
    where every prompt must end at the same position.
    """
    import torch  # heavy: imported where a batch is built, not when the package loads

    out: dict[str, Any] = {}
    keys = rows[0].keys()
    longest = {k: max(len(r[k]) for r in rows) for k in keys if isinstance(rows[0][k], list)}
    for k in keys:
        if k not in longest:
            out[k] = torch.tensor([r[k] for r in rows])
            continue
        fill = -100 if k == "labels" else (0 if k.endswith("attention_mask") else pad_id)
        out[k] = torch.tensor(
            [
                [fill] * (longest[k] - len(r[k])) + r[k] if left else r[k] + [fill] * (longest[k] - len(r[k]))
                for r in rows
            ]
        )
    if "attention_mask" not in out and "input_ids" in out:
        lens = torch.tensor([len(r["input_ids"]) for r in rows])
        pos = torch.arange(longest["input_ids"])[None, :]
        real = pos >= longest["input_ids"] - lens[:, None] if left else pos < lens[:, None]
        out["attention_mask"] = real.long()
    return out
