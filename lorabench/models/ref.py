"""A model path as a suite writes it, parsed once: ``ModelRef.parse(path)``.

Every form a suite, ``lorabench params`` or ``lorabench estimate`` accepts:
``builtin:NAME`` (pretrained by lorabench), ``config:NAME`` (a shipped config
directory), ``packaged:NAME`` (a checkpoint inside an installed package), a local
directory (absolute, ``./``, ``../``, ``~`` or any existing directory) and, for
anything else, a Hugging Face hub id. Loading, counting, estimating, planning and
preflight all ask this one parser, so a name one of them loads is never a hub id to
another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from lorabench.models.configs import PREFIX as CONFIG_PREFIX
from lorabench.models.configs import config_dir
from lorabench.models.packaged import PREFIX as PACKAGED_PREFIX
from lorabench.models.packaged import packaged_dir

BUILTIN_PREFIX = "builtin:"
LOCAL_PREFIXES = ("/", "./", "../", "~")


class ModelKind(StrEnum):
    """Where a model's files come from."""

    BUILTIN = "builtin"
    CONFIG = "config"
    PACKAGED = "packaged"
    LOCAL = "local"
    HUB = "hub"


_PREFIXES = {BUILTIN_PREFIX: ModelKind.BUILTIN, CONFIG_PREFIX: ModelKind.CONFIG, PACKAGED_PREFIX: ModelKind.PACKAGED}


@dataclass(frozen=True)
class ModelRef:
    """``path`` as written; ``kind``; ``name``: the part after a prefix, else the path itself."""

    path: str
    kind: ModelKind
    name: str

    @classmethod
    def parse(cls, path: str) -> ModelRef:
        for prefix, kind in _PREFIXES.items():
            if path.startswith(prefix):
                return cls(path, kind, path[len(prefix) :])
        if path.startswith(LOCAL_PREFIXES) or os.path.isdir(path):
            return cls(path, ModelKind.LOCAL, path)
        return cls(path, ModelKind.HUB, path)

    @property
    def shipped(self) -> bool:
        """Files that come with lorabench or a package: a config directory or a packaged checkpoint."""
        return self.kind in (ModelKind.CONFIG, ModelKind.PACKAGED)

    def shipped_dir(self) -> str | None:
        """The directory of a ``config:``/``packaged:`` model, None for any other kind.

        An unknown name raises UsageError with a did-you-mean.
        """
        if self.kind is ModelKind.CONFIG:
            return str(config_dir(self.name))
        if self.kind is ModelKind.PACKAGED:
            return str(packaged_dir(self.name))
        return None

    def known_dir(self) -> str | None:
        """The directory holding config.json where it is known without loading (not builtin, not hub)."""
        if self.kind is ModelKind.LOCAL:
            return os.path.expanduser(self.path)
        return self.shipped_dir()
