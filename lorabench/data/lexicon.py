"""The closed vocabulary shared by every built-in generator and the built-in tokenizer.

Changing a word list changes the built-in tokenizer and therefore the content hash of
every built-in model, which are then pretrained afresh on first use.
"""

from __future__ import annotations

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar")
ANIMALS = ("cat", "dog", "fox", "owl", "bear", "wolf", "horse", "mouse", "goat", "duck", "frog", "hawk")
FOODS = ("fish", "bread", "apples", "cheese", "honey", "rice", "soup", "cake", "berries", "nuts", "corn", "eggs")
PLACES = ("park", "river", "forest", "market", "garden", "school", "beach", "city", "farm", "lake", "hill", "cave")
ADJECTIVES = ("red", "blue", "green", "small", "big", "old", "young", "quiet", "loud", "fast", "slow", "brown")
VERBS = ("eats", "likes", "sees", "finds", "carries", "wants", "hides", "shares")
TIMES = ("morning", "noon", "evening", "night", "monday", "tuesday", "friday", "sunday")
ITEMS = ("book", "ball", "lamp", "map", "key", "hat", "bag", "box", "ticket", "camera")
# Sentiment words (classification generator).
POSITIVE = ("good", "great", "wonderful", "excellent", "lovely", "brilliant", "fun", "charming", "superb", "moving")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "poor", "weak", "horrible", "silly", "painful")
NEGATORS = ("not", "never", "hardly")
FILLER = (
    "the",
    "a",
    "an",
    "in",
    "at",
    "on",
    "to",
    "of",
    "and",
    "but",
    "was",
    "is",
    "were",
    "it",
    "this",
    "that",
    "film",
    "movie",
    "story",
    "acting",
    "music",
    "plot",
    "ending",
    "cast",
    "scene",
    "really",
    "very",
    "quite",
    "i",
    "you",
    "we",
    "they",
    "he",
    "she",
    "will",
    "can",
    "bring",
    "meet",
    "go",
    "come",
    "see",
    "with",
    "tomorrow",
    "today",
    "later",
    "ok",
    "sure",
    "thanks",
    "yes",
    "no",
    "maybe",
    "lets",
    "there",
    "bye",
    "think",
    "felt",
    "found",
    "overall",
    "also",
    "some",
    "parts",
    "were",
    "though",
    "what",
    "about",
    "who",
    "where",
    "when",
    "by",
    "for",
    "be",
    "are",
    "has",
    "have",
    "my",
    "your",
    "our",
    "their",
)
# Dialogue words (summarisation generator).
DIALOGUE = ("hi", "then", "too", "said", "instead", "busy", "sounds", "fine", "am", "nice")
PUNCT = (".", ",", "?", "!", ":")
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<mask>")


def vocabulary() -> list[str]:
    """Every token, specials first, each once, in a fixed order."""
    words: list[str] = list(SPECIALS)
    for group in (
        NAMES,
        ANIMALS,
        FOODS,
        PLACES,
        ADJECTIVES,
        VERBS,
        TIMES,
        ITEMS,
        POSITIVE,
        NEGATIVE,
        NEGATORS,
        FILLER,
        DIALOGUE,
        PUNCT,
    ):
        words.extend(w for w in group if w not in words)
    return words
