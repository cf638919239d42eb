"""Running one row of lorabench.methods.peft_zoo: build, count, train, save, reload (in-process).

Shared by tests/test_peft_zoo.py and scripts/peft_zoo_probe.py (which prints what
happens for rows not written yet).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from lorabench.methods.base import MethodContext
from lorabench.methods.peft_type import PeftTypeOptions, method_for
from lorabench.methods.peft_zoo import MODELS

TASK_TYPES = {"causal-lm": "causal-lm", "classification": "seq-cls", "seq2seq": "seq2seq-lm"}
_BASES: dict[str, Any] = {}


def base(family: str, precision: str = "fp32") -> Any:
    """A fresh copy of the family's built-in: loaded once per process, then deep-copied (fp32)."""
    import copy

    if precision != "fp32":  # bitsandbytes weights do not deep-copy reliably: load again
        return _load(family, precision)
    if family not in _BASES:
        _BASES[family] = _load(family, precision)
    return copy.deepcopy(_BASES[family])


def _load(family: str, precision: str) -> Any:
    from lorabench.models.loading import load_model
    from lorabench.suite.schema import ModelDef, QuantSettings

    kwargs = {"num_labels": 2} if family == "classification" else {}
    return load_model(
        ModelDef(path=MODELS[family]), family, precision, QuantSettings(double_quant=True), "cpu", kwargs
    )[0]


def batch(family: str, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, 12), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if family == "causal-lm":
        out["labels"] = ids.clone()
    elif family == "classification":
        out["labels"] = torch.tensor([0, 1])
    else:
        out["labels"] = torch.randint(5, vocab, (2, 6), generator=g)
    return out


def apply(peft_type: str, family: str, config: dict[str, Any], net: Any, precision: str = "fp32") -> Any:
    """The case's config through lorabench's own peft-type method, as a run applies it."""
    opts = PeftTypeOptions(peft_type, dict(config))
    cls = method_for(f"peft:{peft_type}", opts)
    ctx = MethodContext(
        rank=None,
        options=opts,
        task_family=family,
        precision=precision,
        model_type=net.config.model_type,
        target_modules=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls().apply(net, ctx)


def run_case(peft_type: str, family: str, config: dict[str, Any], tmp: Path, steps: int = 2) -> dict[str, Any]:
    """Build, count, train ``steps`` steps, save, reload; returns what was measured (raises on failure)."""
    from peft import PeftModel

    from lorabench.accounting.counting import count_parameters
    from lorabench.accounting.params import count

    torch.manual_seed(0)
    model = apply(peft_type, family, config, base(family))
    trainable, total = count_parameters(model)
    peft_trainable, peft_total = model.get_nb_trainable_parameters()
    meta = count(
        MODELS[family],
        f"peft:{peft_type}",
        task_type=TASK_TYPES[family],
        num_labels=2 if family == "classification" else None,
        method_opts=PeftTypeOptions(peft_type, dict(config)),
    )
    data = batch(family, model.config.vocab_size)
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**data).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    changed = sum(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    model.eval()
    inputs = {k: v for k, v in data.items() if k != "labels" or family == "seq2seq"}
    with torch.no_grad():
        out = model(**inputs).logits
    model.save_pretrained(str(tmp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = PeftModel.from_pretrained(base(family), str(tmp))
    reloaded.eval()
    with torch.no_grad():
        again = reloaded(**inputs).logits
    return {
        "trainable": trainable,
        "total": total,
        "peft_trainable": peft_trainable,
        "peft_total": peft_total,
        "meta_trainable": meta.trainable_params,
        "losses": losses,
        "changed": changed,
        "n_trainable_tensors": len(params),
        "out": out,
        "again": again,
    }
