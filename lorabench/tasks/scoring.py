"""Metric computations shared by tasks: classification scores and ROUGE. No torch.

ROUGE comes from Google's ``rouge-score`` package, with Porter stemming, the way the
Hugging Face ``evaluate`` metric calls it; ``evaluate.load("rouge")`` itself needs the
Hub, so it is not used. Scores are F-measures averaged over examples, times 100.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def accuracy(references: Sequence[Any], predictions: Sequence[Any]) -> float:
    """Share of exact matches."""
    if not references:
        raise ValueError("accuracy of an empty set")
    return sum(r == p for r, p in zip(references, predictions, strict=True)) / len(references)


def macro_f1(references: Sequence[Any], predictions: Sequence[Any]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in references or predictions.

    A class that is predicted but never true (or the reverse) counts with F1 = 0, as in
    scikit-learn's ``f1_score(average="macro")`` default.
    """
    classes = sorted(set(references) | set(predictions))
    if not classes:
        raise ValueError("F1 of an empty set")
    total = 0.0
    for c in classes:
        tp = sum(r == c and p == c for r, p in zip(references, predictions, strict=True))
        fp = sum(r != c and p == c for r, p in zip(references, predictions))
        fn = sum(r == c and p != c for r, p in zip(references, predictions))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(classes)


def split_sentences(text: str) -> str:
    """One sentence per line, which is what ``rougeLsum`` expects (it splits on newlines).

    A light rule (a break after ``.``, ``!`` or ``?`` followed by whitespace) instead of
    nltk's punkt, whose model would have to be downloaded.
    """
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure (x100) with stemming; Lsum on sentence-split text."""
    from rouge_score import rouge_scorer

    if not references:
        raise ValueError("ROUGE of an empty set")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    sums = dict.fromkeys(ROUGE_TYPES, 0.0)
    for ref, pred in zip(references, predictions, strict=True):
        scores = scorer.score(split_sentences(ref), split_sentences(pred))
        for k in ROUGE_TYPES:
            sums[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(references) for k, v in sums.items()}
