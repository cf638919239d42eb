"""Summarisation: ROUGE-1/2/L/Lsum of generated summaries, seq2seq or decoder-only.

The model's config decides the family (``architecture: auto``): an encoder-decoder
(T5/FLAN-T5) reads the prompt and generates the summary from its decoder; a
decoder-only model (GPT-2, Falcon) is trained on ``prompt + summary`` with the loss on
the summary tokens only, and generates after the prompt. Decoding (greedy or beam,
``max_new_tokens``) comes from the suite's ``eval.generation`` and is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lorabench.data.batching import pad_batch
from lorabench.data.sources import DataError, DataSource, describe, has_val, load_columns
from lorabench.suite.typed import check_fields
from lorabench.tasks.base import EvalResult, Task, TaskData

if TYPE_CHECKING:
    from lorabench.suite.schema import EvalSettings

DEFAULT_PROMPTS = {"seq2seq": "summarize: {input}", "causal-lm": "{input}\nSummary:"}
INPUT_CHARS = 300  # how much of each input predictions.jsonl keeps


@dataclass(frozen=True)
class SummarizationOptions:
    type: str
    data: DataSource
    input_column: str = "dialogue"
    target_column: str = "summary"
    # The prompt around the input, with one `{input}`; None: "summarize: {input}" for
    # seq2seq models, "{input}\nSummary:" for decoder-only ones.
    prompt: str | None = None
    architecture: Literal["auto", "seq2seq", "causal-lm"] = "auto"
    max_target_len: int = 64  # summary tokens kept for training (the eval reference is the full text)
    n_train: int | None = None
    n_eval: int | None = None
    data_seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {"n_train": ">= 1", "n_eval": ">= 1", "max_target_len": ">= 1"}

    def __post_init__(self) -> None:
        extra = []
        if self.prompt is not None and self.prompt.count("{input}") != 1:
            extra.append(("prompt", f"`prompt` must contain `{{input}}` exactly once, got {self.prompt!r}"))
        check_fields(self, self.RANGES, extra)


def encode_prompt(tokenizer: Any, template: str, text: str, max_len: int) -> list[int]:
    """Token ids of ``template`` around ``text``, cutting the end of ``text`` (never the template) to fit."""
    ids = tokenizer(template.replace("{input}", text))["input_ids"]
    if len(ids) <= max_len:
        return ids
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    keep = len(offsets) - (len(ids) - max_len)
    while keep > 0:
        ids = tokenizer(template.replace("{input}", text[: offsets[keep - 1][1]]))["input_ids"]
        if len(ids) <= max_len:
            return ids
        keep -= len(ids) - max_len  # tokens can merge across the cut: shrink again
    raise ValueError(f"the prompt template {template!r} does not fit in {max_len} tokens")


class Summarization(Task):
    name = "summarization"
    family = "seq2seq"
    metrics = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    primary_metric = "rougeL"
    Options = SummarizationOptions

    def resolve_family(self, encoder_decoder: Callable[[], bool]) -> str:
        arch = self.options.architecture
        if arch == "auto":
            arch = "seq2seq" if encoder_decoder() else "causal-lm"
        self.family = arch
        return arch

    @property
    def template(self) -> str:
        return self.options.prompt or DEFAULT_PROMPTS[self.family]

    def _examples(self, split: Any, n: int | None) -> list[dict[str, Any]]:
        o = self.options
        cols = {"input": o.input_column, "target": o.target_column}
        rows = load_columns(o.data, split, n, o.data_seed, self.task_name, cols, ("input", "target"), o.n_train)
        rows = [r for r in rows if r["input"].strip() and r["target"].strip()]
        if not rows:
            raise DataError(f"task {self.task_name!r}: no non-empty examples in {describe(o.data, split)}")
        return rows

    def _target_ids(self, tokenizer: Any, texts: list[str]) -> list[list[int]]:
        """Summary ids ending in EOS (so the model learns to stop), at most ``max_target_len``."""
        keep = self.options.max_target_len - 1
        lead = " " if self.family == "causal-lm" else ""  # BPE: a summary follows the prompt after a space
        enc = tokenizer([lead + t for t in texts], add_special_tokens=False)["input_ids"]
        return [[*ids[:keep], tokenizer.eos_token_id] for ids in enc]

    def prepare(self, tokenizer: Any, max_seq_len: int) -> TaskData:
        o = self.options
        max_len = max_seq_len
        if tokenizer.eos_token_id is None:
            raise DataError(f"task {self.task_name!r}: the tokenizer has no EOS token to end summaries with")
        tr = self._examples("train", o.n_train)
        rows = []
        for r, target in zip(tr, self._target_ids(tokenizer, [r["target"] for r in tr])):
            if self.family == "seq2seq":
                rows.append({"input_ids": self._prompt(tokenizer, r["input"], max_len), "labels": target})
            else:
                # Prompt and summary share max_seq_len; the summary keeps up to max_target_len.
                prompt = self._prompt(tokenizer, r["input"], max_len - len(target))
                rows.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
        evals = self._eval_rows("eval", tokenizer, max_len)
        info = {"n_train": len(rows), "n_eval": len(evals), "family": self.family, "prompt": self.template}
        val = None
        if has_val(o.data):
            val = self._eval_rows("val", tokenizer, max_len)
            info["n_val"] = len(val)
        return TaskData(train=rows, eval=evals, info=info, val=val)

    def _eval_rows(self, split: str, tokenizer: Any, max_len: int) -> list[dict[str, Any]]:
        """Test or validation examples: the prompt's ids beside the input and reference texts."""
        ev = self._examples(split, self.options.n_eval)
        return [{"input_ids": self._prompt(tokenizer, r["input"], max_len), **r} for r in ev]

    def _prompt(self, tokenizer: Any, text: str, max_len: int) -> list[int]:
        try:
            return encode_prompt(tokenizer, self.template, text, max_len)
        except ValueError as exc:
            hint = "" if self.family == "seq2seq" else " or lower max_target_len (prompt and summary share it)"
            raise DataError(f"task {self.task_name!r}: {exc}; raise train.max_seq_len{hint}") from None

    def count_tokens(self, batch: dict[str, Any]) -> int:
        n = int(batch["attention_mask"].sum())
        if self.family == "seq2seq":
            n += int((batch["labels"] != -100).sum())  # the decoder processes the summary too
        return n

    def evaluate(self, model: Any, tokenizer: Any, data: TaskData, eval_cfg: EvalSettings, ctx: Any) -> EvalResult:
        import torch

        from lorabench.tasks.scoring import rouge

        gen = eval_cfg.generation
        bs = eval_cfg.batch_size
        rows = data.eval
        if eval_cfg.max_batches:
            rows = rows[: eval_cfg.max_batches * bs]
        left = self.family == "causal-lm"
        predictions, generated = [], 0
        for start in range(0, len(rows), bs):
            chunk = rows[start : start + bs]
            batch = pad_batch([{"input_ids": r["input_ids"]} for r in chunk], tokenizer.pad_token_id, left=left)
            batch = {k: v.to(ctx.device) for k, v in batch.items()}
            with torch.no_grad(), ctx.autocast():
                out = model.generate(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    max_new_tokens=gen.max_new_tokens,
                    num_beams=gen.num_beams,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            # A decoder-only model returns prompt + continuation; keep the continuation.
            new = out[:, batch["input_ids"].shape[1] :] if left else out
            for i, (r, ids) in enumerate(zip(chunk, new.tolist())):
                real = [t for t in ids if t != tokenizer.pad_token_id]
                generated += len(real)
                text = tokenizer.decode(real, skip_special_tokens=True).strip()
                predictions.append(
                    {"id": start + i, "prediction": text, "reference": r["target"], "input": r["input"][:INPUT_CHARS]}
                )
        metrics = rouge([p["reference"] for p in predictions], [p["prediction"] for p in predictions])
        info = {
            "family": self.family,
            "prompt": self.template,
            "generation": {
                "decoding": "greedy" if gen.num_beams == 1 else "beam",
                "num_beams": gen.num_beams,
                "max_new_tokens": gen.max_new_tokens,
                "do_sample": False,
            },
            "mean_generated_tokens": generated / max(1, len(predictions)),
        }
        return EvalResult(metrics=metrics, predictions=predictions, tokens=generated, info=info)
