"""Built-in chat dialogues for summarisation, SAMSum-shaped: turns ``name : text`` per line.

Two friends plan a meeting. The place may be renegotiated ("no , what about the lake ?"),
either friend may offer to bring something, and a distractor turn mentions a place or a
name that is not part of the plan. The summary states the agreed place and time and who
brings what, so it can only be written by reading the dialogue, not from a template.
"""

from __future__ import annotations

import random

from lorabench.data.lexicon import FOODS, ITEMS, NAMES, PLACES, TIMES

DAYS = ("monday", "tuesday", "friday", "sunday")


def when(time: str) -> str:
    """``on friday`` / ``at noon`` / ``in the morning``."""
    if time in DAYS:
        return f"on {time}"
    if time in ("morning", "evening"):
        return f"in the {time}"
    return f"at {time}"


def dialogue(rng: random.Random) -> tuple[str, str]:
    """One (dialogue, summary) pair."""
    a, b = rng.sample(NAMES, 2)
    first, second, other = rng.sample(PLACES, 3)
    time = rng.choice(TIMES)
    thing = rng.choice(FOODS + tuple(f"the {i}" for i in ITEMS))
    turns = [(a, f"hi {b} ! lets meet at the {first} {when(time)} ?")]
    renegotiate = rng.random() < 0.5
    if renegotiate:
        turns.append((b, f"no , i am busy there . what about the {second} instead ?"))
        turns.append((a, f"ok , the {second} then ."))
    else:
        turns.append((b, rng.choice(("sure , sounds good .", "ok , see you there .", "yes , fine ."))))
    place = second if renegotiate else first
    if rng.random() < 0.5:
        # Distractor: a place or a person that is not part of the plan.
        third = rng.choice([n for n in NAMES if n not in (a, b)])
        turns.insert(
            rng.randrange(1, len(turns) + 1),
            rng.choice(
                (
                    (b, f"the {other} was quite loud today ."),
                    (a, f"{third} said the {other} is nice ."),
                    (b, f"maybe {third} will come too ?"),
                )
            ),
        )
    bringer = rng.choice((a, b))
    turns.append((bringer, f"i will bring {thing} ."))
    turns.append((b if bringer == a else a, rng.choice(("great , thanks ! bye", "thanks ! see you", "ok , bye"))))
    text = "\n".join(f"{who} : {what}" for who, what in turns)
    summary = f"{a} and {b} will meet at the {place} {when(time)} . {bringer} will bring {thing} ."
    return text, summary


def dialogues(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows with ``dialogue`` and ``summary``, deterministic in ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, summary = dialogue(rng)
        out.append({"dialogue": text, "summary": summary})
    return out
