"""Where a task's examples come from: a built-in generator, a hub dataset or local files.

Every loader returns plain ``list[dict]`` rows so tasks never care about the source.
Subsampling is deterministic in ``data_seed`` (not the run seed), so every seed of a
grid point trains and evaluates on the same examples.
"""

from __future__ import annotations

import html
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lorabench.data.dialogues import dialogues
from lorabench.data.files import load_file
from lorabench.data.grammar import documents
from lorabench.data.rows import DataError, Rows
from lorabench.data.sentiment import reviews
from lorabench.registry import Registry
from lorabench.suite.typed import check_fields

SYNTHETIC: Registry[Callable[[str, int, int], Rows]] = Registry("synthetic generator")


def _strip_html(text: str) -> str:
    """Tags (IMDb's ``<br />``) become spaces; entities such as ``&amp;`` are decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


# Declared text cleanup steps (a suite lists them under `data.clean`, in order). They
# apply to text columns only, never to labels, and they are part of the run spec.
CLEANERS: dict[str, Callable[[str], str]] = {
    "html": _strip_html,
    "whitespace": lambda t: " ".join(t.split()),
    "lowercase": str.lower,
}


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
    # One file holding both splits: a seeded (data_seed) share of its rows is held out
    # for evaluation, disjoint from the training rows.
    file: str | None = None
    eval_fraction: float = 0.2
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "text"] = "auto"
    # Plain text files: one row per blank-line-separated paragraph, or per line.
    text_rows: Literal["paragraphs", "lines"] = "paragraphs"
    clean: tuple[str, ...] = ()  # names from CLEANERS, applied in order to text columns
    # A validation split for periodic evaluation and model selection, distinct from the
    # test split the final score comes from: a seeded share of the training rows
    # (``val_fraction``; for a synthetic generator, rows from a seed of their own), or a
    # file of its own (``val_file``). Absent (both null): no validation split, as before.
    val_fraction: float | None = None
    val_file: str | None = None

    def __post_init__(self) -> None:
        # The rules relate fields to each other, so each is stated with the field it is reported at.
        errors = [
            ("clean", f"`clean`: unknown step {s!r}; known: {', '.join(CLEANERS)}")
            for s in self.clean
            if s not in CLEANERS
        ]
        given = [k for k in ("synthetic", "hub", "file") if getattr(self, k)] + (
            ["train_file/eval_file"] if self.train_file or self.eval_file else []
        )
        if len(given) != 1:
            where = given[-1].split("/")[0] if given else "data"
            errors.append(
                (
                    where,
                    "data: give exactly one of `synthetic`, `hub`, `file` or `train_file`/`eval_file`, "
                    f"got {given or 'none'}",
                )
            )
        if not 0.0 < self.eval_fraction < 1.0:
            errors.append(("eval_fraction", f"`eval_fraction` should be in (0, 1), got {self.eval_fraction}"))
        if self.val_fraction is not None and self.val_file is not None:
            errors.append(("val_file", "data: give `val_fraction` or `val_file`, not both"))
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 1.0:
            errors.append(("val_fraction", f"`val_fraction` should be in (0, 1), got {self.val_fraction}"))
        if self.val_file is not None and self.val_file in (self.file, self.train_file, self.eval_file):
            errors.append(
                ("val_file", f"`val_file` {self.val_file!r} is also a train or test file: validation would leak")
            )
        if self.synthetic and self.synthetic not in SYNTHETIC:
            errors.append(("synthetic", SYNTHETIC.unknown_message(self.synthetic)))
        check_fields(self, {}, errors)


#: Data keys added after run ids were in use: at their default they stay out of a run's
#: spec (see :func:`wire_source`), so suites without them keep their run ids.
NEW_KEYS_AT_DEFAULT = {"val_fraction": None, "val_file": None}

Split = Literal["train", "val", "eval"]


def wire_source(source: dict[str, Any]) -> dict[str, Any]:
    """A data source as a run spec holds it: keys of :data:`NEW_KEYS_AT_DEFAULT` left out at their default."""
    return {k: v for k, v in source.items() if not (k in NEW_KEYS_AT_DEFAULT and v == NEW_KEYS_AT_DEFAULT[k])}


def has_val(source: DataSource) -> bool:
    """Whether the source declares a validation split."""
    return source.val_fraction is not None or source.val_file is not None


def subsample(rows: Rows, n: int | None, seed: int) -> Rows:
    """A seeded random choice of ``n`` rows (all rows when ``n`` is None), in file order.

    Keeping file order matters for language modelling, where neighbouring rows are
    consecutive text (WikiText lines); training batches are shuffled anyway.
    """
    if n is None or n >= len(rows):
        return list(rows)
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    return [rows[i] for i in sorted(idx[:n])]


def describe(source: DataSource, split: str) -> str:
    """Where ``split`` of ``source`` comes from, for error messages: a file, a hub id, a generator."""
    if split == "val":
        if source.val_file:
            return f"validation file {source.val_file}"
        return f"validation share ({source.val_fraction}) of {describe(source, 'train')}"
    if source.synthetic:
        return f"synthetic generator {source.synthetic!r}"
    if source.hub:
        name = source.train_split if split == "train" else source.eval_split
        config = f", config {source.config!r}" if source.config else ""
        return f"hub dataset {source.hub!r}{config}, split {name!r}"
    if source.file:
        return f"file {source.file} ({split} part of a seeded {source.eval_fraction:g} eval holdout)"
    return f"file {source.train_file if split == 'train' else source.eval_file}"


def holdout(rows: Rows, fraction: float, seed: int, split: str, salt: str = "holdout") -> Rows:
    """The ``split`` part of a seeded train/eval partition of ``rows`` (disjoint, in file order).

    ``salt`` names the partition, so the validation share (``salt="val"``) is drawn
    independently of the train/test one.
    """
    idx = list(range(len(rows)))
    random.Random(f"{salt}:{seed}").shuffle(idx)
    k = max(1, round(len(rows) * fraction)) if rows else 0
    part = idx[:k] if split == "eval" else idx[k:]
    return [rows[i] for i in sorted(part)]


def expand_path(path: str, task: str) -> str:
    """Expand ``~`` and ``$VARS``; an unset variable is an error, not an empty string."""
    expanded = os.path.expanduser(os.path.expandvars(path))
    if "$" in expanded:
        raise DataError(f"task {task!r}: path {path!r} uses an environment variable that is not set")
    return expanded


def load_rows(
    source: DataSource, split: Split, n: int | None, seed: int, task: str, n_train: int | None = None
) -> Rows:
    """Load ``n`` rows of ``split`` for ``task`` from whichever source is configured.

    ``val`` is the validation split (only where the source declares one). With
    ``val_fraction`` it is a seeded share of the training pool, disjoint from the rows
    ``train`` returns (which come from the rest); the train/test partition is the one a
    source without validation has, so adding validation never moves a test row. For a
    synthetic generator it is ``val_fraction`` x the training count, generated from a seed
    of its own (as test is). ``n`` caps it like the test split (the task passes ``n_eval``).
    """
    if split == "val" and source.val_file:
        fmt, unit = source.format, source.text_rows
        rows = load_file(expand_path(source.val_file, task), fmt, task, unit)
        if not rows:
            raise DataError(f"task {task!r}: the val split is empty ({describe(source, split)})")
        return subsample(rows, n, seed)
    if split == "val" and source.val_fraction is None:
        raise DataError(f"task {task!r}: no validation split declared (`val_fraction` or `val_file`)")
    if source.synthetic:
        generate = SYNTHETIC.get(source.synthetic)
        if split == "val":
            # Its own seed, as for test: no generated example is drawn for train and validation alike.
            pool = max(1, round(source.val_fraction * (n_train if n_train is not None else 2000)))
            return generate(split, pool if n is None else min(n, pool), seed + 2_000_029)
        # Disjoint seeds per split: train and eval never share generated examples.
        count = n if n is not None else (2000 if split == "train" else 200)
        return generate(split, count, seed + (0 if split == "train" else 1_000_003))
    part = "eval" if split == "eval" else "train"  # validation is carved from the training pool
    if source.hub:
        rows = _load_hub(source, part, task)
    else:
        fmt, unit = source.format, source.text_rows
        if source.file:
            rows = load_file(expand_path(source.file, task), fmt, task, unit)
            rows = holdout(rows, source.eval_fraction, seed, part)
        else:
            path = source.train_file if part == "train" else source.eval_file
            if not path:
                raise DataError(f"task {task!r}: no {part}_file given")
            rows = load_file(expand_path(path, task), fmt, task, unit)
    if part == "train" and source.val_fraction is not None:
        rows = holdout(rows, source.val_fraction, seed, "eval" if split == "val" else "train", salt="val")
    if not rows:
        raise DataError(f"task {task!r}: the {split} split is empty ({describe(source, split)})")
    return subsample(rows, n, seed)


def load_columns(
    source: DataSource,
    split: Split,
    n: int | None,
    seed: int,
    task: str,
    columns: dict[str, str],
    text: tuple[str, ...],
    n_train: int | None = None,
) -> Rows:
    """Rows keyed by role (e.g. ``input``, ``target``, ``label``), each taken from its mapped column.

    ``columns`` maps a role to the source's column name; roles listed in ``text`` are
    strings and get the source's declared ``clean`` steps. A missing column or a null
    text is an error naming the task, the file (or hub id) and the columns that exist.
    """
    rows = load_rows(source, split, n, seed, task, n_train)
    where = describe(source, split)
    steps = [CLEANERS[c] for c in source.clean]
    out: Rows = []
    for row in rows:
        lacking = [c for c in columns.values() if c not in row]
        if lacking:
            raise DataError(
                f"task {task!r}: column {lacking[0]!r} not found in {where} (columns: {', '.join(sorted(row))})"
            )
        picked = {role: row[col] for role, col in columns.items()}
        for role in text:
            value = picked[role]
            if value is None or isinstance(value, (dict, list)):
                raise DataError(f"task {task!r}: column {columns[role]!r} of {where} holds {value!r}, not text")
            value = str(value)
            for step in steps:
                value = step(value)
            picked[role] = value
        out.append(picked)
    return out


def _load_hub(source: DataSource, split: str, task: str) -> Rows:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError("the `datasets` package is needed for hub data sets") from None
    name = source.train_split if split == "train" else source.eval_split
    try:
        ds = datasets.load_dataset(source.hub, source.config, split=name, revision=source.revision)
    except Exception as exc:  # datasets raises many types for "not reachable / not cached"
        raise DataError(
            f"task {task!r}: cannot load hub dataset {source.hub!r} (config {source.config!r}, split "
            f"{name!r}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. Without Hub access, use a cached "
            "copy (HF_DATASETS_OFFLINE=1) or local files (`train_file`/`eval_file`)."
        ) from None
    return [dict(r) for r in ds]


def _grammar(kind: str) -> Callable[[str, int, int], Rows]:
    def generate(split: str, n: int, seed: int) -> Rows:

        return [{"text": t} for t in documents(kind, n, seed)]

    return generate


def _sentiment(split: str, n: int, seed: int) -> Rows:

    return reviews(n, seed)


def _dialogues(split: str, n: int, seed: int) -> Rows:

    return dialogues(n, seed)  # type: ignore[return-value]


SYNTHETIC.register("facts", _grammar("facts"))
SYNTHETIC.register("prose", _grammar("prose"))
SYNTHETIC.register("sentiment", _sentiment)  # rows: text, label (0 negative, 1 positive)
SYNTHETIC.register("dialogues", _dialogues)  # rows: dialogue, summary
