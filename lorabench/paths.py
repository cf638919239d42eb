"""Where lorabench keeps what it caches (built-in models, tokenised data, reference scores).

At the bottom of the import graph, so ``models/``, ``tasks/`` and ``data/`` share one
rule without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$LORABENCH_CACHE`` or ``~/.cache/lorabench``."""
    return Path(os.environ.get("LORABENCH_CACHE") or Path.home() / ".cache" / "lorabench")
