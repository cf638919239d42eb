"""Forgetting: how much of what the base model already knew a fine-tune gives up.

A task may name a *reference*: held-out text the base model was good at
(``forgetting: {data: {synthetic: prose}}``). Each run measures the reference once on
the base it loaded (cached: once per model, precision and reference) and once after
training, and reports the change as ``metrics.forgetting_<measure>``. The sign is the
same for every measure: positive means the fine-tune lost ability, so lower is better.

The measure follows the model family:

- causal LM: perplexity on the reference text (the eval split of its source), windowed as
  the task's own evaluation is. ``forgetting_perplexity = after - base``.
- classifier (encoder): *pair retrieval*. Each reference text is cut in two halves at its
  middle word; the mean-pooled last hidden state of the first half must find its own
  second half among all second halves by cosine similarity. The share found is the
  score; ``forgetting_pair_retrieval = base - after``. It needs no language-model head,
  so it works for encoders shipped without one (all-MiniLM-L6-v2 keeps only the encoder
  and a pooler): what such a model was trained for is exactly mean-pooled text
  similarity, and a classification fine-tune that bends the encoder towards its labels
  shows up as lost retrieval. (The masked-LM loss is no option there: the MLM head's
  transform and bias are not in the checkpoint, so they would be random.)

The base's score is computed in the run that first needs it and kept as a JSON file
under lorabench's cache (``$LORABENCH_CACHE/forgetting``), keyed by everything it
depends on; quantised runs are compared with their own quantised base, so quantisation
error is not counted as forgetting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorabench.data.batching import pad_batch
from lorabench.data.sources import DataError, describe, load_columns
from lorabench.paths import cache_root
from lorabench.tasks.base import ForgettingOptions, TaskData, options_wire
from lorabench.tasks.cache import write_entry
from lorabench.tasks.causal_lm import CausalLM, CausalLMOptions, windows

if TYPE_CHECKING:
    from lorabench.suite.schema import EvalSettings

CACHE_VERSION = 1
#: The reference measure each task family reports, and whether a higher score is better.
MEASURES: dict[str, tuple[str, bool]] = {
    "causal-lm": ("perplexity", False),
    "classification": ("pair_retrieval", True),
}


def reference_of(options: Any) -> ForgettingOptions | None:
    """A task's forgetting reference, or None: unset, or a task type without one (summarization)."""
    return getattr(options, "forgetting", None)


def measure_name(family: str) -> str:
    """The metric a family's reference is scored with (``perplexity``, ``pair_retrieval``)."""
    if family not in MEASURES:
        raise DataError(f"forgetting is measured for {', '.join(MEASURES)} tasks, not {family}")
    return MEASURES[family][0]


def change(family: str, base: float, after: float) -> float:
    """The forgetting figure: how much worse the reference score got (positive: forgot)."""
    higher_is_better = MEASURES[family][1]
    return base - after if higher_is_better else after - base


def retrieval_accuracy(first: Any, second: Any) -> float:
    """Share of rows of ``first`` whose most cosine-similar row of ``second`` is the row at the same index.

    Ties go to the lowest index (``argmax``), so a collapsed encoder (all rows equal)
    scores 1/n at most, never by luck.
    """
    import torch

    a = torch.nn.functional.normalize(first.float(), dim=-1)
    b = torch.nn.functional.normalize(second.float(), dim=-1)
    guess = (a @ b.T).argmax(dim=1)
    return float((guess == torch.arange(len(a))).float().mean())


def split_halves(texts: list[str]) -> list[tuple[str, str]]:
    """(first half, second half) of each text of at least 4 words, cut at its middle word."""
    out = []
    for text in texts:
        words = text.split()
        if len(words) >= 4:
            mid = len(words) // 2
            out.append((" ".join(words[:mid]), " ".join(words[mid:])))
    return out


def _texts(options: ForgettingOptions, task: str) -> list[str]:
    rows = load_columns(
        options.data,
        "eval",
        options.n_eval,
        options.data_seed,
        task,
        {"text": options.text_column},
        ("text",),
    )
    texts = [r["text"] for r in rows if r["text"].strip()]
    if not texts:
        raise DataError(f"task {task!r}: forgetting reference {describe(options.data, 'eval')} has no text")
    return texts


def _perplexity(
    model: Any, tokenizer: Any, options: ForgettingOptions, task: str, max_len: int, eval_cfg: EvalSettings, ctx: Any
) -> float:
    """The reference's perplexity, scored exactly as a causal-LM task scores its eval split."""
    lm = CausalLM(task, CausalLMOptions(type="causal-lm", data=options.data, text_column=options.text_column))
    wins = windows(lm.stream(_texts(options, task), tokenizer), max_len, None)
    return lm.evaluate(model, tokenizer, TaskData(train=[], eval=wins), eval_cfg, ctx).metrics["perplexity"]


def _embed(model: Any, tokenizer: Any, texts: list[str], max_len: int, batch_size: int, ctx: Any) -> Any:
    """Mean-pooled last hidden state of each text (padding excluded)."""
    import torch

    ids = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
    out = []
    for start in range(0, len(ids), batch_size):
        batch = pad_batch([{"input_ids": x} for x in ids[start : start + batch_size]], tokenizer.pad_token_id)
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        with torch.no_grad(), ctx.autocast():
            res = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        states = getattr(res, "hidden_states", None)
        if not states:
            raise DataError(
                "forgetting: the model returns no hidden states (output_hidden_states), which pair retrieval needs"
            )
        mask = batch["attention_mask"]
        # Prompt tuning prepends virtual tokens to the hidden states: the text is the last positions.
        h = states[-1][:, -mask.shape[1] :].float()
        m = mask.unsqueeze(-1).float()
        out.append((h * m).sum(1) / m.sum(1).clamp(min=1.0))
    return torch.cat(out)


def _pair_retrieval(
    model: Any, tokenizer: Any, options: ForgettingOptions, task: str, max_len: int, eval_cfg: EvalSettings, ctx: Any
) -> float:
    pairs = split_halves(_texts(options, task))
    if len(pairs) < 2:
        raise DataError(
            f"task {task!r}: forgetting reference {describe(options.data, 'eval')} has fewer than 2 texts of "
            "4 or more words; pair retrieval needs at least 2"
        )
    first = _embed(model, tokenizer, [a for a, _ in pairs], max_len, eval_cfg.batch_size, ctx)
    second = _embed(model, tokenizer, [b for _, b in pairs], max_len, eval_cfg.batch_size, ctx)
    return retrieval_accuracy(first, second)


def measure(
    model: Any,
    tokenizer: Any,
    family: str,
    options: ForgettingOptions,
    task: str,
    max_len: int,
    eval_cfg: EvalSettings,
    ctx: Any,
) -> float:
    """The reference score of ``model`` as it is now (in eval mode; the caller restores train mode)."""
    name = measure_name(family)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        fn = _perplexity if name == "perplexity" else _pair_retrieval
        value = fn(model, tokenizer, options, task, max_len, eval_cfg, ctx)
    finally:
        if was_training:
            model.train()
    if not math.isfinite(value):
        raise ValueError(f"forgetting: the reference {name} is {value}")
    return value


# --- the base's score, once per (model, precision, reference) ---------------------------


def _code() -> str:
    h = hashlib.sha256()
    for mod in (inspect.getmodule(CausalLM), inspect.getmodule(measure)):
        h.update(Path(inspect.getfile(mod)).read_bytes())  # type: ignore[arg-type]
    return h.hexdigest()


def _model_identity(path: str) -> list[Any]:
    """Size and mtime of a local checkpoint's files: a retrained built-in is a new base."""
    p = Path(path)
    if not p.is_dir():
        return [path]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(p.iterdir()) if f.is_file()]


def base_key(spec: Any, family: str, resolved_path: str | None, tokenizer_fp: str) -> str:
    """A hash of everything the base's reference score depends on (and nothing a method changes)."""
    model = {"path": spec.model.path, "revision": spec.model.revision, "weights": spec.model.weights}
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "model": model,
            "files": _model_identity(resolved_path) if resolved_path else None,
            # A random-weights base depends on the seed that drew it.
            "seed": spec.seed if spec.model.weights == "random" else None,
            "precision": spec.precision,
            "quantization": spec.quantization if spec.precision not in ("fp32", "fp16", "bf16") else None,
            "family": family,
            "reference": options_wire(spec.task_options)["forgetting"],
            "max_seq_len": spec.train.max_seq_len,
            "eval": [spec.eval.batch_size],
            "tokenizer": tokenizer_fp,
            "code": _code(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return cache_root() / "forgetting"


def _read(path: Path, name: str) -> float | None:
    """The cached base score, or None where the file is absent or not one lorabench wrote."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION or blob.get("measure") != name:
        return None
    value = blob.get("base")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def base_score(key: str, name: str, compute: Any, describe_ref: str) -> tuple[float, str]:
    """(the base's reference score, ``"hit"`` or ``"miss"``): from the cache, else ``compute()`` and stored.

    A lock file makes concurrent runs of one suite compute it once. A cache that cannot
    be written (read-only, full) costs time, never the run.
    """
    path = cache_dir() / f"{key}.json"
    cached = _read(path, name)
    if cached is not None:
        return cached, "hit"
    lock_ctx: Any = contextlib.nullcontext()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_ctx = open(path.parent / f".{key}.lock", "w")
    with lock_ctx as lock:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cached = _read(path, name)
            if cached is not None:
                return cached, "hit"
        value = float(compute())
        text = json.dumps({"version": CACHE_VERSION, "measure": name, "base": value, "reference": describe_ref})
        write_entry(path, text)
    return value, "miss"
