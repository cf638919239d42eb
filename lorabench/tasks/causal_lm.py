"""Causal language modelling: perplexity, token accuracy and eval loss.

Perplexity is exp of the token-weighted mean NLL over every predicted (non-padding)
target token. Long text is evaluated in windows of ``max_seq_len``; with ``stride`` the
windows overlap and only the new tokens of each window are scored, as in the Hugging
Face perplexity guide.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lorabench.data.sources import DataError, DataSource, describe, has_val, load_columns
from lorabench.suite.typed import check_fields
from lorabench.tasks.base import EvalResult, ForgettingOptions, Task, TaskData

if TYPE_CHECKING:
    from lorabench.suite.schema import EvalSettings


@dataclass(frozen=True)
class CausalLMOptions:
    type: str
    data: DataSource
    text_column: str = "text"
    n_train: int | None = None
    n_eval: int | None = None
    data_seed: int = 0
    stride: int | None = None
    forgetting: ForgettingOptions | None = None  # a reference the base knew (lorabench.tasks.forgetting)

    RANGES: ClassVar[dict[str, str]] = {"n_train": ">= 1", "n_eval": ">= 1", "stride": ">= 1"}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)


def windows(ids: list[int], max_len: int, stride: int | None) -> list[tuple[list[int], list[int]]]:
    """Split a token stream into (input_ids, labels) windows; labels are -100 where not scored.

    Without ``stride`` windows do not overlap. With it, each window starts ``stride``
    tokens after the previous one and scores only tokens not scored before.
    """
    step = stride or max_len
    if step > max_len:
        raise ValueError(f"stride ({step}) must be <= max_seq_len ({max_len})")
    out = []
    prev_end = 0
    begin = 0
    while prev_end < len(ids):
        end = min(begin + max_len, len(ids))
        chunk = ids[begin:end]
        new = end - prev_end
        labels = [-100] * (len(chunk) - new) + chunk[len(chunk) - new :]
        out.append((chunk, labels))
        prev_end = end
        if end == len(ids):
            break
        begin += step
    return out


_MAX_EXP = math.log(sys.float_info.max)


class CausalLM(Task):
    name = "causal-lm"
    family = "causal-lm"
    metrics = ("perplexity", "token_accuracy", "eval_loss")
    primary_metric = "perplexity"
    Options = CausalLMOptions

    def _texts(self, split: Any, n: int | None) -> list[str]:
        o = self.options
        cols = {"text": o.text_column}
        rows = load_columns(o.data, split, n, o.data_seed, self.task_name, cols, ("text",), o.n_train)
        texts = [r["text"] for r in rows if r["text"].strip()]
        if not texts:
            raise DataError(f"task {self.task_name!r}: every text of {describe(o.data, split)} is empty")
        return texts

    def stream(self, texts: list[str], tokenizer: Any) -> list[int]:
        ids: list[int] = []
        eos = tokenizer.eos_token_id
        for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            ids.extend(enc + ([eos] if eos is not None else []))
        return ids

    def prepare(self, tokenizer: Any, max_seq_len: int) -> TaskData:
        o = self.options
        max_len = max_seq_len
        train_ids = self.stream(self._texts("train", o.n_train), tokenizer)
        # Training packs the stream into full blocks: no padding, every token is a target.
        blocks = [train_ids[i : i + max_len] for i in range(0, len(train_ids) - max_len + 1, max_len)]
        if not blocks:
            raise DataError(
                f"task {self.task_name!r}: the train text of {describe(o.data, 'train')} is shorter than one "
                f"block of max_seq_len={max_len} tokens"
            )
        rows = [{"input_ids": b, "labels": list(b)} for b in blocks]
        eval_ids = self.stream(self._texts("eval", o.n_eval), tokenizer)
        wins = windows(eval_ids, max_len, o.stride)
        info = {"train_tokens": len(train_ids), "eval_tokens": len(eval_ids)}
        val = None
        if has_val(o.data):
            val_ids = self.stream(self._texts("val", o.n_eval), tokenizer)
            val = windows(val_ids, max_len, o.stride)
            info["val_tokens"] = len(val_ids)
        return TaskData(train=rows, eval=wins, info=info, val=val)

    def evaluate(self, model: Any, tokenizer: Any, data: TaskData, eval_cfg: EvalSettings, ctx: Any) -> EvalResult:
        import torch

        nll_sum, count, correct = 0.0, 0, 0
        preds = []
        bs = eval_cfg.batch_size
        wins = data.eval
        if eval_cfg.max_batches:
            wins = wins[: eval_cfg.max_batches * bs]
        for start in range(0, len(wins), bs):
            chunk = wins[start : start + bs]
            batch = self.collate([{"input_ids": x, "labels": y} for x, y in chunk], tokenizer)
            batch = {k: v.to(ctx.device) for k, v in batch.items()}
            with torch.no_grad(), ctx.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits = logits[:, :-1].float()
            target = batch["labels"][:, 1:]
            mask = target != -100
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), target.clamp(min=0).reshape(-1), reduction="none"
            ).view_as(target)
            guess = logits.argmax(-1)
            nll_sum += float((nll * mask).sum())
            count += int(mask.sum())
            correct += int(((guess == target) & mask).sum())
            for i in range(len(chunk)):
                m = mask[i]
                preds.append(
                    {
                        "id": start + i,
                        "prediction": tokenizer.decode(guess[i][m].tolist()),
                        "reference": tokenizer.decode(target[i][m].tolist()),
                        "nll": round(float((nll[i] * m).sum()), 6),
                        "n_tokens": int(m.sum()),
                    }
                )
        if count == 0:
            raise ValueError(f"task {self.task_name!r}: no eval tokens to score")
        loss = nll_sum / count
        # exp() of a diverged model's loss overflows: infinite perplexity, which the run records as diverged.
        perplexity = math.exp(loss) if loss < _MAX_EXP else math.inf
        metrics = {"perplexity": perplexity, "token_accuracy": correct / count, "eval_loss": loss}
        return EvalResult(metrics=metrics, predictions=preds, tokens=count)
