"""Where a task's examples come from: a built-in generator, a hub dataset or local files.

Every loader returns plain ``list[dict]`` rows so tasks never care about the source.
Subsampling is deterministic in ``data_seed`` (not the run seed), so every seed of a
grid point trains and evaluates on the same examples.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lorabench.errors import UsageError
from lorabench.registry import Registry

Rows = list[dict[str, Any]]
SYNTHETIC: Registry[Callable[[str, int, int], Rows]] = Registry("synthetic generator")


class DataError(UsageError):
    """Task data is missing or malformed; the message names the task and file."""


@dataclass(frozen=True)
class DataSource:
    """Exactly one of ``synthetic``, ``hub`` or local files (``train_file``/``eval_file``)."""

    synthetic: str | None = None
    hub: str | None = None
    config: str | None = None
    revision: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    train_file: str | None = None
    eval_file: str | None = None
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "text"] = "auto"

    def __post_init__(self) -> None:
        given = [k for k in ("synthetic", "hub") if getattr(self, k)] + (
            ["files"] if self.train_file or self.eval_file else []
        )
        if len(given) != 1:
            raise ValueError(
                f"data: give exactly one of `synthetic`, `hub` or `train_file`/`eval_file`, got {given or 'none'}"
            )
        if self.synthetic and self.synthetic not in SYNTHETIC:
            raise ValueError(SYNTHETIC.unknown_message(self.synthetic))


def subsample(rows: Rows, n: int | None, seed: int) -> Rows:
    """The first ``n`` rows of a seeded shuffle (all rows, shuffled, when ``n`` is None)."""
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    return [rows[i] for i in idx[: n if n is not None else len(rows)]]


def expand_path(path: str, task: str) -> str:
    """Expand ``~`` and ``$VARS``; an unset variable is an error, not an empty string."""
    expanded = os.path.expanduser(os.path.expandvars(path))
    if "$" in expanded:
        raise DataError(f"task {task!r}: path {path!r} uses an environment variable that is not set")
    return expanded


def load_rows(source: dict[str, Any], split: Literal["train", "eval"], n: int | None, seed: int, task: str) -> Rows:
    """Load ``n`` rows of ``split`` for ``task`` from whichever source is configured."""
    if source.get("synthetic"):
        generate = SYNTHETIC.get(source["synthetic"])
        # Disjoint seeds per split: train and eval never share generated examples.
        count = n if n is not None else (2000 if split == "train" else 200)
        return generate(split, count, seed + (0 if split == "train" else 1_000_003))
    if source.get("hub"):
        rows = _load_hub(source, split, task)
    else:
        from lorabench.data.files import load_file

        path = source.get("train_file") if split == "train" else source.get("eval_file")
        if not path:
            raise DataError(f"task {task!r}: no {split}_file given")
        rows = load_file(expand_path(path, task), source.get("format", "auto"), task)
    if not rows:
        raise DataError(f"task {task!r}: the {split} split is empty")
    return subsample(rows, n, seed)


def _load_hub(source: dict[str, Any], split: str, task: str) -> Rows:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError("the `datasets` package is needed for hub data sets") from None
    name = source["train_split"] if split == "train" else source["eval_split"]
    try:
        ds = datasets.load_dataset(source["hub"], source.get("config"), split=name, revision=source.get("revision"))
    except Exception as exc:  # datasets raises many types for "not reachable / not cached"
        raise DataError(
            f"task {task!r}: cannot load hub dataset {source['hub']!r} (config {source.get('config')!r}, split "
            f"{name!r}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. Without Hub access, use a cached "
            "copy (HF_DATASETS_OFFLINE=1) or local files (`train_file`/`eval_file`)."
        ) from None
    return [dict(r) for r in ds]


def _grammar(kind: str) -> Callable[[str, int, int], Rows]:
    def generate(split: str, n: int, seed: int) -> Rows:
        from lorabench.data.grammar import documents

        return [{"text": t} for t in documents(kind, n, seed)]

    return generate


SYNTHETIC.register("facts", _grammar("facts"))
SYNTHETIC.register("prose", _grammar("prose"))
