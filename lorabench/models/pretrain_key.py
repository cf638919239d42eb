"""Edits to the pretraining code that cannot change a built-in model's weights, keyed as before.

A built-in model's cache directory is named by a hash of the code that pretrains it
(``builtin.PRETRAIN_SOURCES``), so any edit there means every user pretrains every
built-in model again. Moving a helper to a lower module (``cache_root`` to
``lorabench.paths``, ``pad_batch`` to ``lorabench.data.batching``) and lifting imports to
the top of a file change those bytes but not one trained weight. :data:`KEY_STABLE_EDITS`
lists such edits as (text now, text it replaced); :func:`keyed_bytes` puts the old text
back before hashing, so the cache keys stay what they were. Any other edit still changes
the key. Empty this table when ``PRETRAIN_VERSION`` is next bumped.

This module is not one of ``PRETRAIN_SOURCES``: editing it changes no key by itself.
"""

from __future__ import annotations

_CACHE_ROOT_DEF = '''def cache_root() -> Path:
    """``$LORABENCH_CACHE`` or ``~/.cache/lorabench``."""
    return Path(os.environ.get("LORABENCH_CACHE") or Path.home() / ".cache" / "lorabench")


'''

#: Per source file (relative to the package): (text now, the text the cache keys were computed from).
KEY_STABLE_EDITS: dict[str, tuple[tuple[str, str], ...]] = {
    "models/builtin.py": (
        (
            "from lorabench.data.lexicon import vocabulary\n"
            "from lorabench.models import BUILTIN_MODELS, BuiltinModel\n"
            "from lorabench.models.objectives import OBJECTIVES\n"
            "from lorabench.models.pretrain_key import keyed_bytes\n"
            "from lorabench.paths import cache_root\n",
            "from lorabench.models import BUILTIN_MODELS, BuiltinModel\n",
        ),
        ("N_DOCS = 3000\n\n\n", "N_DOCS = 3000\n\n\n" + _CACHE_ROOT_DEF),
        (
            'h.update(rel.encode() + b"\\0" + keyed_bytes(rel, (root / rel).read_bytes()))',
            'h.update(rel.encode() + b"\\0" + (root / rel).read_bytes())',
        ),
        (
            "def content_hash(spec: BuiltinModel) -> str:\n",
            "def content_hash(spec: BuiltinModel) -> str:\n    from lorabench.data.lexicon import vocabulary\n\n",
        ),
        (
            "    from transformers import PreTrainedTokenizerFast\n\n",
            "    from transformers import PreTrainedTokenizerFast\n\n    from lorabench.data.lexicon import vocabulary\n\n",
        ),
        (
            "    from transformers import AutoModelForCausalLM\n\n    torch.manual_seed(spec.seed)\n",
            "    from transformers import AutoModelForCausalLM\n\n"
            "    from lorabench.models.objectives import OBJECTIVES\n\n"
            "    torch.manual_seed(spec.seed)\n",
        ),
    ),
    "models/objectives.py": (
        (
            "from lorabench.data.batching import pad_batch\n"
            "from lorabench.data.dialogues import dialogues\n"
            "from lorabench.data.grammar import documents\n"
            "from lorabench.data.sentiment import opinion_text\n\n",
            "",
        ),
        (
            '    """(domain, document) pairs from every built-in generator, deterministic in ``seed``."""\n',
            '    """(domain, document) pairs from every built-in generator, deterministic in ``seed``."""\n'
            "    from lorabench.data.dialogues import dialogues\n"
            "    from lorabench.data.grammar import documents\n"
            "    from lorabench.data.sentiment import opinion_text\n\n",
        ),
        (
            "    import torch\n\n    ids: list[int] = []\n",
            "    import torch\n\n    from lorabench.data.grammar import documents\n\n    ids: list[int] = []\n",
        ),
        (
            "    import torch\n\n    rows, is_random = [], []\n",
            "    import torch\n\n    from lorabench.tasks.base import pad_batch\n\n    rows, is_random = [], []\n",
        ),
        (
            "    import torch\n\n    rows = []\n",
            "    import torch\n\n    from lorabench.tasks.base import pad_batch\n\n    rows = []\n",
        ),
    ),
}


def keyed_bytes(rel: str, data: bytes) -> bytes:
    """``data`` (the file ``rel``) as the cache key hashes it: the edits above undone where they apply."""
    edits = KEY_STABLE_EDITS.get(rel)
    if not edits:
        return data
    text = data.decode("utf-8")
    for now, before in edits:
        if text.count(now) == 1:  # anything else: the file changed around the edit, and so does the key
            text = text.replace(now, before)
    return text.encode("utf-8")
