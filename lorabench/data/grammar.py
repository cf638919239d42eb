"""A small grammar for built-in causal-LM text: pretraining prose and a fine-tuning "facts" domain.

The pretraining corpus draws every slot uniformly, so a model learns syntax but no
associations. The ``facts`` domain ties each animal to one food, place and time, so a
fine-tune has something real to learn and perplexity separates methods.
"""

from __future__ import annotations

import random

from lorabench.data.lexicon import ADJECTIVES, ANIMALS, FOODS, ITEMS, NAMES, PLACES, TIMES, VERBS

FACTS_SEED = 1234  # fixed: the facts are part of the task, not of a run's seed


def _np(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        return rng.choice(NAMES)
    if r < 0.6:
        return f"the {rng.choice(ADJECTIVES)} {rng.choice(ANIMALS)}"
    return f"the {rng.choice(ANIMALS)}"


def _obj(rng: random.Random) -> str:
    return rng.choice(
        [f"the {rng.choice(ITEMS)}", rng.choice(FOODS), f"the {rng.choice(ADJECTIVES)} {rng.choice(ITEMS)}"]
    )


def prose_sentence(rng: random.Random) -> str:
    """A grammatical sentence with uniformly drawn content (pretraining)."""
    s = f"{_np(rng)} {rng.choice(VERBS)} {_obj(rng)}"
    r = rng.random()
    if r < 0.4:
        s += f" in the {rng.choice(PLACES)}"
    elif r < 0.7:
        s += f" at {rng.choice(TIMES)}"
    return s + " ."


def fact_table() -> dict[str, tuple[str, str, str]]:
    """animal → (food, place, time): the associations the ``facts`` domain teaches."""
    rng = random.Random(FACTS_SEED)
    return {a: (rng.choice(FOODS), rng.choice(PLACES), rng.choice(TIMES)) for a in ANIMALS}


def fact_sentence(rng: random.Random, table: dict[str, tuple[str, str, str]]) -> str:
    """A sentence that states one learnable fact, in one of a few surface forms."""
    animal = rng.choice(ANIMALS)
    food, place, time = table[animal]
    adj = rng.choice(ADJECTIVES)
    form = rng.randrange(3)
    if form == 0:
        return f"the {animal} eats {food} in the {place} ."
    if form == 1:
        return f"the {adj} {animal} finds {food} at {time} ."
    return f"at {time} the {animal} hides {food} in the {place} ."


def documents(kind: str, n: int, seed: int, sentences: tuple[int, int] = (3, 6)) -> list[str]:
    """``n`` short documents of ``kind`` ('prose' or 'facts'), deterministic in ``seed``."""
    rng = random.Random(seed)
    table = fact_table()
    out = []
    for _ in range(n):
        k = rng.randint(*sentences)
        if kind == "prose":
            out.append(" ".join(prose_sentence(rng) for _ in range(k)))
        elif kind == "facts":
            out.append(" ".join(fact_sentence(rng, table) for _ in range(k)))
        else:
            raise ValueError(f"unknown grammar kind {kind!r}")
    return out
