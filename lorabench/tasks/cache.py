"""On-disk cache of tokenised task data, so a suite of many runs on one data set tokenises once.

Every run is its own process, so the cache lives on disk: ``$LORABENCH_DATA_CACHE``, or
``$LORABENCH_CACHE/data`` next to the built-in models. The key is a content hash of
everything :meth:`Task.prepare` may depend on: the task type, family and options, the
tokenizer (its full serialised form, not its name), ``max_seq_len``, the size and
modification time of local data files, and the source code of the task and data
modules (so editing a generator invalidates its cached data).

An entry is JSON, never a pickle: the key is published in every record and the cache may
be shared between users or cluster workers, so whoever can write there must not be able to
run code in the next run. An entry that does not parse as the expected shape is rebuilt.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import lorabench.data
import lorabench.tasks
from lorabench.data.sources import DataSource, expand_path
from lorabench.paths import cache_root
from lorabench.tasks.base import TaskData, options_wire

CACHE_VERSION = 2  # 2: JSON entries (1 was pickle; those files are ignored, never read)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what the tokenizer does: vocabulary, merges, normaliser, special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # Calling a tokenizer with truncation/padding arguments changes these two; they
        # are per-call settings, not what the tokenizer is.
        state.pop("truncation", None)
        state.pop("padding", None)
        body = json.dumps(state, sort_keys=True)
    else:
        body = f"{tokenizer.name_or_path}:{len(tokenizer)}"
    extra = json.dumps(
        {
            "class": type(tokenizer).__name__,
            "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
            "pad": tokenizer.pad_token_id,
        },
        sort_keys=True,
    )
    return hashlib.sha256((body + extra).encode()).hexdigest()


def _files(source: DataSource, task: str) -> list[Any]:
    out = []
    for written in (source.file, source.train_file, source.eval_file, source.val_file):
        if written:
            path = expand_path(written, task)
            st = os.stat(path) if os.path.isfile(path) else None
            out.append([path, st.st_size if st else None, st.st_mtime_ns if st else None])
    return out


def _code() -> str:
    """Source of the data and task modules: a changed generator or tokenisation rule is a new key."""
    h = hashlib.sha256()
    for pkg in (lorabench.data, lorabench.tasks):
        for path in sorted(Path(inspect.getfile(pkg)).parent.glob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(task: Any, tokenizer: Any, max_seq_len: int) -> str:
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "task": f"{type(task).__module__}.{type(task).__qualname__}",
            "family": task.family,
            # The forgetting reference is evaluated apart; it does not shape the task's own data.
            "options": {k: v for k, v in options_wire(task.options).items() if k != "forgetting"},
            "max_seq_len": max_seq_len,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "files": _files(task.options.data, task.task_name),
            "code": _code(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """``$LORABENCH_DATA_CACHE``, else ``data/`` under the built-in models' cache root."""
    return Path(os.environ.get("LORABENCH_DATA_CACHE") or cache_root() / "data")


def _encode(data: Any) -> str:
    blob = {"version": CACHE_VERSION, "train": data.train, "eval": data.eval, "info": data.info}
    if data.val is not None:
        blob["val"] = data.val
    return json.dumps(blob)


def _decode(text: str) -> Any:
    """The :class:`TaskData` of a cache entry; ``ValueError`` where it is not one lorabench wrote."""
    blob = json.loads(text)
    if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION:
        raise ValueError("not a lorabench data-cache entry of this version")
    train, evals, info = blob.get("train"), blob.get("eval"), blob.get("info")
    if not isinstance(train, list) or not all(isinstance(r, dict) for r in train):
        raise ValueError("`train` is not a list of rows")
    if not isinstance(evals, list) or not isinstance(info, dict):
        raise ValueError("`eval` is not a list or `info` not a mapping")
    val = blob.get("val")
    if val is not None and not isinstance(val, list):
        raise ValueError("`val` is not a list")
    return TaskData(train=train, eval=evals, info=info, val=val)


def prepare_cached(task: Any, tokenizer: Any, max_seq_len: int) -> Any:
    """``task.prepare(tokenizer, max_seq_len)``, from the on-disk cache when an identical call ran before.

    ``info['cache']`` says ``hit`` or ``miss`` and ``info['cache_key']`` names the entry.
    An unreadable entry is rebuilt, never trusted. A miss returns the data as read back
    from its JSON form, so a run behaves the same whether its data came from the cache or not
    (tuples become lists either way).
    """
    key = cache_key(task, tokenizer, max_seq_len)
    path = cache_dir() / f"{key}.json"
    if path.is_file() and not path.is_symlink():
        try:
            data = _decode(path.read_text(encoding="utf-8"))
            data.info.update(cache="hit", cache_key=key)
            return data
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            pass  # rebuilt below and overwritten
    text = _encode(task.prepare(tokenizer, max_seq_len))
    data = _decode(text)
    data.info.update(cache="miss", cache_key=key)
    error = write_entry(path, text)
    if error:
        data.info["cache_error"] = error
    return data


def write_entry(path: Path, text: str) -> str | None:
    """Write a cache file atomically; the reason it could not be written, or None.

    A cache that cannot be written (full disk, read-only share) costs time, not the run.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL|O_NOFOLLOW: never write through a file or link someone placed at the temp name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        created = True
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)  # concurrent runs write the same content; the last one wins
    except OSError as exc:
        if created:
            tmp.unlink(missing_ok=True)
        return f"{type(exc).__name__}: {exc}"
    return None
