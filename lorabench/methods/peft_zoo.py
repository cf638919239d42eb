"""What every peft type does on lorabench's three task families: the table of cases.

One row per ``PeftType`` and family (causal LM on tiny-gpt2, classification on tiny-bert,
seq2seq on tiny-t5): the config that trains it, or why it does not apply, or the error
peft raises. ``tests/test_peft_zoo.py`` runs every row (build, count, train, save, reload)
and fails when a row no longer says what happens; the README's table is rendered from
these rows (``lorabench list methods --peft-types --markdown``), so it cannot drift.

No torch here: ``lorabench list`` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FAMILIES = ("causal-lm", "classification", "seq2seq")
MODELS = {"causal-lm": "builtin:tiny-gpt2", "classification": "builtin:tiny-bert", "seq2seq": "builtin:tiny-t5"}
# The attention projections of each built-in (GPT-2 fuses q/k/v in one Conv1D).
ATTN = {"causal-lm": ["c_attn"], "classification": ["query", "value"], "seq2seq": ["q", "v"]}
FFN = {"causal-lm": ["c_fc"], "classification": ["intermediate.dense"], "seq2seq": ["wi"]}
NORMS = {"causal-lm": ["ln_1", "ln_2"], "classification": ["LayerNorm"], "seq2seq": ["layer_norm"]}

CONV1D = "peft's {t} adapts only torch.nn.Linear (and Conv2d/Embedding); GPT-2's attention is a transformers Conv1D"


@dataclass(frozen=True)
class Case:
    """One peft type on one family: ``works`` (with ``config``), ``n/a`` (``reason``) or ``fails`` (``error``)."""

    outcome: Literal["works", "n/a", "fails"]
    config: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # n/a: why the type does not apply; fails: a substring of the error peft raises


def works(**config: Any) -> Case:
    return Case("works", config)


def na(reason: str) -> Case:
    return Case("n/a", reason=reason)


def fails(error: str, **config: Any) -> Case:
    return Case("fails", config, error)


def _targets(**extra: Any) -> dict[str, Case]:
    """``works`` on every family with the attention projections as targets, plus ``extra`` fields."""
    return {f: works(target_modules=ATTN[f], **extra) for f in FAMILIES}


def _linear_only(peft_type: str, **extra: Any) -> dict[str, Case]:
    """Types whose layers are nn.Linear only: GPT-2's Conv1D is refused, BERT and T5 train."""
    return {
        "causal-lm": fails("is not supported", target_modules=ATTN["causal-lm"], **extra),
        "classification": works(target_modules=ATTN["classification"], **extra),
        "seq2seq": works(target_modules=ATTN["seq2seq"], **extra),
    }


def _all(case: Case) -> dict[str, Case]:
    return dict.fromkeys(FAMILIES, case)


# Keyed by PeftType value. Configs are small (the built-ins are 96 wide) and name targets
# explicitly: several types have no per-architecture default for GPT-2, BERT or T5.
CASES: dict[str, dict[str, Case]] = {
    "LORA": _targets(r=4),
    "ADALORA": {f: works(target_modules=ATTN[f], init_r=6, target_r=4, total_step=4) for f in FAMILIES},
    "LOHA": _targets(r=4),
    "LOKR": _targets(r=4),
    "IA3": {f: works(target_modules=ATTN[f] + FFN[f], feedforward_modules=FFN[f]) for f in FAMILIES},
    "VERA": _targets(r=16),
    "PROMPT_TUNING": _all(works(num_virtual_tokens=4)),
    "PREFIX_TUNING": _all(works(num_virtual_tokens=4)),
    "P_TUNING": _all(works(num_virtual_tokens=4, encoder_hidden_size=32)),
}
