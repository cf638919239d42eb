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

from lorabench.methods.peft_type import NOT_APPLICABLE

FAMILIES = ("causal-lm", "classification", "seq2seq")
MODELS = {"causal-lm": "builtin:tiny-gpt2", "classification": "builtin:tiny-bert", "seq2seq": "builtin:tiny-t5"}
# The attention projections of each built-in (GPT-2 fuses q/k/v in one Conv1D).
ATTN: dict[str, list[str]] = {"causal-lm": ["c_attn"], "classification": ["query", "value"], "seq2seq": ["q", "v"]}
FFN = {"causal-lm": ["c_fc"], "classification": ["intermediate.dense"], "seq2seq": ["wi"]}
NORMS = {"causal-lm": ["ln_1", "ln_2"], "classification": ["LayerNorm"], "seq2seq": ["layer_norm"]}

CONV1D = "peft's {t} adapts only torch.nn.Linear (and Conv2d/Embedding); GPT-2's attention is a transformers Conv1D"


@dataclass(frozen=True)
class Case:
    """One peft type on one family: ``works`` (with ``config``), ``n/a`` (``reason``), ``fails`` (``reason``:
    a substring of peft's error) or ``curated`` (``reason``: the lorabench method that runs it)."""

    outcome: Literal["works", "n/a", "fails", "curated"]
    config: dict[str, Any] = field(default_factory=dict)
    # n/a: why the type does not apply; fails: a substring of the error raised (peft's, or lorabench's refusal)
    reason: str = ""
    note: str = ""  # what a reader of the table should know about a working case


def works(note: str = "", **config: Any) -> Case:
    return Case("works", config, note=note)


def na(reason: str) -> Case:
    return Case("n/a", reason=reason)


def fails(error: str, note: str = "", **config: Any) -> Case:
    return Case("fails", config, error, note)


def _targets(**extra: Any) -> dict[str, Case]:
    """``works`` on every family with the attention projections as targets, plus ``extra`` fields."""
    return {f: works(target_modules=ATTN[f], **extra) for f in FAMILIES}


def _all(case: Case) -> dict[str, Case]:
    return dict.fromkeys(FAMILIES, case)


def _conv1d(peft_type: str, error: str = "Conv1D", **extra: Any) -> dict[str, Case]:
    """A type peft builds for nn.Linear only: refused on GPT-2, trains on BERT and T5."""
    return {
        "causal-lm": fails(error, target_modules=ATTN["causal-lm"], **extra),
        "classification": works(target_modules=ATTN["classification"], **extra),
        "seq2seq": works(target_modules=ATTN["seq2seq"], **extra),
    }


# Keyed by PeftType value. Configs are small (the built-ins are 96 wide) and name targets
# explicitly: several types have no per-architecture default for GPT-2, BERT or T5.
CASES: dict[str, dict[str, Case]] = {
    # Prompt learning: virtual tokens prepended to the input (or per-layer key/value prefixes).
    "PROMPT_TUNING": _all(works(num_virtual_tokens=4)),
    "PREFIX_TUNING": _all(works(num_virtual_tokens=4)),
    "P_TUNING": _all(works(num_virtual_tokens=4, encoder_hidden_size=32)),
    "MULTITASK_PROMPT_TUNING": _all(na(NOT_APPLICABLE["MULTITASK_PROMPT_TUNING"])),
    "CPT": {
        "causal-lm": na(
            "Context-aware Prompt Tuning trains on in-context examples marked by `cpt_tokens_type_mask` batches, "
            "which lorabench's tasks do not build"
        ),
        "classification": na("peft: CPTConfig only supports task_type = CAUSAL_LM"),
        "seq2seq": na("peft: CPTConfig only supports task_type = CAUSAL_LM"),
    },
    "ADAPTION_PROMPT": {
        "causal-lm": works(adapter_len=4, adapter_layers=1),
        "classification": na("peft's adaption prompt supports decoder attention only (llama, mistral, gpt2, ...)"),
        "seq2seq": na("peft's adaption prompt supports decoder attention only (llama, mistral, gpt2, ...)"),
    },
    # LoRA and its relatives.
    "LORA": _targets(r=4),
    "ADALORA": _all(Case("curated", reason="adalora")),
    "LOHA": _conv1d("LOHA", r=4),
    "LOKR": _conv1d("LOKR", r=4),
    "VERA": _targets(r=16),
    "PVERA": _targets(r=16),
    "RANDLORA": _targets(r=8),
    "VBLORA": _targets(r=4, num_vectors=64, vector_length=32),
    "UNILORA": _targets(r=4),
    "TINYLORA": _targets(r=4),
    "HIRA": _targets(r=4),
    "GRALORA": _targets(r=8),
    "DEFT": _targets(r=4),
    "DELORA": _conv1d("DELORA", r=4),
    "GLORA": _conv1d("GLORA", r=4),
    "LILY": _conv1d("LILY", r=4),
    "PEANUT": _conv1d("PEANUT", r=4),
    "ADAMSS": _conv1d("ADAMSS", r=4),
    "FROD": _targets(),
    "XLORA": _all(na(NOT_APPLICABLE["XLORA"])),
    # Orthogonal and multiplicative.
    "OFT": _conv1d("OFT", r=8, oft_block_size=0),
    "BOFT": _conv1d("BOFT", boft_block_size=4),
    "HRA": _conv1d("HRA", r=8),
    "PSOFT": _conv1d("PSOFT", r=4),
    "ROAD": _conv1d("ROAD", group_size=32),
    "MISS": _conv1d("MISS", r=8),
    "IA3": {f: works(target_modules=ATTN[f] + FFN[f], feedforward_modules=FFN[f]) for f in FAMILIES},
    # Spectral and sparse.
    "FOURIERFT": _targets(n_frequency=100),
    "WAVEFT": _targets(),
    "C3A": _conv1d("C3A", block_size=32),
    "SHIRA": _conv1d("SHIRA", r=4),
    "SUPERTUNING": _conv1d("SUPERTUNING"),
    "BEFT": _conv1d("BEFT"),
    "OSF": {
        "causal-lm": fails(
            "Conv1D",
            note="peft wraps no GPT-2 Conv1D and says nothing (no parameter would train); lorabench refuses it",
            target_modules=ATTN["causal-lm"],
        ),
        "classification": works(target_modules=ATTN["classification"]),
        "seq2seq": works(target_modules=ATTN["seq2seq"]),
    },
    # Whole-module and token-level.
    "LN_TUNING": {f: works(target_modules=NORMS[f]) for f in FAMILIES},
    "TRAINABLE_TOKENS": {
        "causal-lm": works(token_indices=[5, 6, 7]),
        "classification": works(
            token_indices=[5, 6, 7], note="the new classification head stays frozen (peft saves no head for it)"
        ),
        "seq2seq": works(token_indices=[5, 6, 7]),
    },
    "SHADOW": {
        "causal-lm": works(r=4),
        "classification": na("ShadowPEFT rides a decoder loop; BERT is an encoder"),
        "seq2seq": na("ShadowPEFT wraps decoder-only models"),
    },
    "POLY": _all(na(NOT_APPLICABLE["POLY"])),
    "CARTRIDGE": _all(na(NOT_APPLICABLE["CARTRIDGE"])),
}


def summary(cases: dict[str, dict[str, Case]] | None = None) -> dict[str, int]:
    """How many types train on at least one family (curated ones included), and how many there are."""
    cases = cases or CASES
    trains = [t for t, row in cases.items() if any(c.outcome in ("works", "curated") for c in row.values())]
    return {"types": len(cases), "train_somewhere": len(trains)}


def _cell(case: Case) -> str:
    if case.outcome == "works":
        config = ", ".join(f"{k}={v}" for k, v in case.config.items() if k != "target_modules")
        text = "works" + (f" ({config})" if config else "")
        return text + (f"; {case.note}" if case.note else "")
    if case.outcome == "curated":
        return f"works as lorabench's `{case.reason}`"
    if case.outcome == "fails":
        if "Conv1D" in case.reason:
            return "refused by validate: Linear layers only (GPT-2 is Conv1D)"
        return f"fails: `{case.reason}`" + (f" ({case.note})" if case.note else "")
    return f"n/a: {case.reason}"


def markdown(quantized: dict[str, bool] | None = None) -> str:
    """The README's table: one row per peft type, one column per family (and k-bit support)."""
    head = "| peft type | causal LM (tiny-gpt2) | classification (tiny-bert) | seq2seq (tiny-t5) |"
    rule = "|---|---|---|---|"
    if quantized is not None:
        head += " int8/nf4 base |"
        rule += "---|"
    lines = [head, rule]
    for ptype in sorted(CASES):
        row = CASES[ptype]
        cells = [_cell(row[f]).replace("|", "\\|") for f in FAMILIES]
        line = f"| `{ptype}` | " + " | ".join(cells) + " |"
        if quantized is not None:
            line += " yes |" if quantized.get(ptype) else " refused |"
        lines.append(line)
    n = summary()
    lines.append("")
    lines.append(f"{n['train_somewhere']} of {n['types']} peft types train on at least one family.")
    return "\n".join(lines) + "\n"
