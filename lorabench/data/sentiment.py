"""Built-in sentiment reviews for classification: negation and distractors.

A review states one opinion about an aspect of a film. A negator flips it ("the plot was
not boring" is positive), so counting positive and negative words is not enough; neutral
clauses ("the cast was quite young") and sentences about names and animals are mixed in
as distractors. The label is the opinion's polarity after negation.
"""

from __future__ import annotations

import random

from lorabench.data.grammar import prose_sentence
from lorabench.data.lexicon import NEGATIVE, NEGATORS, POSITIVE

ASPECTS = ("film", "movie", "story", "acting", "music", "plot", "ending", "cast", "scene")
NEUTRAL = ("slow", "fast", "old", "quiet", "loud", "young", "big", "small")  # no sentiment
NEGATION_RATE = 0.3


def clause(rng: random.Random, polarity: int) -> str:
    """An opinion clause of ``polarity`` (+1/-1), negated ``NEGATION_RATE`` of the time."""
    negated = rng.random() < NEGATION_RATE
    # A negated clause uses a word of the opposite polarity: "not good" is negative.
    positive_word = (polarity > 0) != negated
    adj = rng.choice(POSITIVE if positive_word else NEGATIVE)
    neg = f"{rng.choice(NEGATORS)} " if negated else ""
    aspect = rng.choice(ASPECTS)
    form = rng.randrange(3)
    if form == 0:
        return f"the {aspect} was {neg}{adj}"
    if form == 1:
        return f"i found the {aspect} {neg}{adj}"
    return f"the {aspect} is really {neg}{adj}"


def distractor(rng: random.Random) -> str:
    """A sentence without sentiment: a neutral adjective about an aspect, or plain prose."""
    if rng.random() < 0.5:
        return f"the {rng.choice(ASPECTS)} was quite {rng.choice(NEUTRAL)} ."
    return prose_sentence(rng)


def review(rng: random.Random, label: int) -> str:
    """A short review whose one opinion has polarity ``label`` (1 positive, 0 negative).

    Half the time a neutral clause about another aspect is joined to the opinion ("the cast
    was quite young and the plot was not good"), and a third of the time a sentence of
    prose about names and animals comes before or after it.
    """
    text = clause(rng, 1 if label == 1 else -1)
    if rng.random() < 0.5:
        neutral = f"the {rng.choice(ASPECTS)} was quite {rng.choice(NEUTRAL)}"
        text = f"{neutral} and {text}" if rng.random() < 0.5 else f"{text} and {neutral}"
    sentences = [f"{text} ."]
    if rng.random() < 1 / 3:
        sentences.insert(rng.randrange(2), prose_sentence(rng))
    return " ".join(sentences)


def opinion_text(n: int, seed: int) -> list[str]:
    """Unlabelled opinionated text for pretraining, with no label attached.

    Reviewers list words of one opinion together ("the music was fun , charming and
    superb") and keep to it across sentences, so predicting a masked word from the rest
    of the review teaches which words go together: the polarity fine-tuning reads out.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = POSITIVE if rng.random() < 0.5 else NEGATIVE
        sentences = []
        for _ in range(rng.randint(1, 3)):
            a, b, c = rng.sample(words, 3)
            sentences.append(f"the {rng.choice(ASPECTS)} was {a} , {b} and {c} .")
        if rng.random() < 0.5:
            sentences.insert(rng.randrange(len(sentences) + 1), distractor(rng))
        out.append(" ".join(sentences))
    return out


def reviews(n: int, seed: int) -> list[dict[str, object]]:
    """``n`` labelled reviews, balanced in expectation, deterministic in ``seed``."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for _ in range(n):
        label = rng.randrange(2)
        out.append({"text": review(rng, label), "label": label})
    return out
