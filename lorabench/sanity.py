"""Sanity flags: markers a run earns when its numbers should not be read as a result.

A record carries ``flags`` (a list of names below). The leaderboard and report show each
as a short marker with its meaning, so a degenerate run (loss never fell, one class
predicted, empty generations) is never read as a method's quality.
"""

from __future__ import annotations

FLAG_MEANINGS: dict[str, str] = {
    "did_not_learn": "training loss did not fall below its start by the required margin",
    "single_class": "the classifier predicted one class for every evaluation example",
    "empty_generations": "most generated summaries were empty",
}
