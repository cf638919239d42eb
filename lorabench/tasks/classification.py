"""Sequence classification: accuracy and macro-F1.

The model is anything whose ``forward(input_ids=..., attention_mask=..., labels=...)``
returns an object with ``.loss`` and ``.logits`` of shape (batch, num_labels): a
transformers ``AutoModelForSequenceClassification`` (a head on BERT/DistilBERT-style
encoders) or a hand-written PyTorch classifier registered as a built-in model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lorabench.data.batching import pad_batch
from lorabench.data.sources import DataError, DataSource, describe, has_val, load_columns
from lorabench.suite.typed import check_fields
from lorabench.tasks.base import EvalResult, ForgettingOptions, Task, TaskData

if TYPE_CHECKING:
    from lorabench.suite.schema import EvalSettings

INPUT_CHARS = 300  # how much of each input predictions.jsonl keeps, for inspecting failures


@dataclass(frozen=True)
class ClassificationOptions:
    type: str
    data: DataSource
    text_column: str = "text"
    label_column: str = "label"
    # Raw label value (as text) -> class id, e.g. {negative: 0, positive: 1}. Without
    # it, labels must already be integer ids in [0, num_labels).
    labels: dict[str, int] | None = None
    num_labels: int = 2
    n_train: int | None = None
    n_eval: int | None = None
    data_seed: int = 0
    forgetting: ForgettingOptions | None = None  # a reference the base knew (lorabench.tasks.forgetting)

    RANGES: ClassVar[dict[str, str]] = {"n_train": ">= 1", "n_eval": ">= 1", "num_labels": ">= 2"}

    def __post_init__(self) -> None:
        bad = {k: v for k, v in (self.labels or {}).items() if not 0 <= v < self.num_labels}
        outside = f"`labels` maps to ids outside 0..{self.num_labels - 1} (num_labels): {bad}"
        check_fields(self, self.RANGES, [("labels", outside)] if bad else [])


class Classification(Task):
    name = "classification"
    family = "classification"
    metrics = ("accuracy", "macro_f1")
    primary_metric = "accuracy"
    Options = ClassificationOptions

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_labels": self.options.num_labels}

    def check_model(self, model: Any) -> None:
        config = getattr(model, "config", None)
        head = getattr(config, "num_labels", None)
        if head is not None and head != self.options.num_labels:
            raise DataError(
                f"task {self.task_name!r}: the model's classification head has {head} outputs but the task has "
                f"num_labels={self.options.num_labels}"
            )

    def _examples(self, split: Any, n: int | None) -> list[dict[str, Any]]:
        o = self.options
        cols = {"text": o.text_column, "label": o.label_column}
        rows = load_columns(o.data, split, n, o.data_seed, self.task_name, cols, ("text",), o.n_train)
        where = describe(o.data, split)
        for r in rows:
            r["label"] = self._label_id(r["label"], where)
        return rows

    def _label_id(self, raw: Any, where: str) -> int:
        """Map a raw label to a class id, or say exactly why it does not fit the head."""
        o, task = self.options, self.task_name
        if o.labels is not None:
            names = {str(k): v for k, v in o.labels.items()}  # YAML may give int keys
            if str(raw) not in names:
                raise DataError(
                    f"task {task!r}: label {raw!r} in {where} is not in `labels` ({', '.join(sorted(names))})"
                )
            return int(names[str(raw)])
        try:
            y = int(str(raw).strip()) if not isinstance(raw, bool) else None
        except ValueError:
            y = None
        if y is None:
            raise DataError(
                f"task {task!r}: label {raw!r} in {where} is not a class id; map label names to ids with "
                "`labels: {name: id, ...}`"
            )
        if not 0 <= y < o.num_labels:
            raise DataError(
                f"task {task!r}: label {y} in {where} does not fit a head of num_labels={o.num_labels} "
                f"(ids 0..{o.num_labels - 1})"
            )
        return y

    def prepare(self, tokenizer: Any, max_seq_len: int) -> TaskData:
        o = self.options
        max_len = max_seq_len
        tr = self._examples("train", o.n_train)
        classes = sorted({r["label"] for r in tr})
        if len(classes) < 2:
            raise DataError(
                f"task {self.task_name!r}: the train data ({describe(o.data, 'train')}) has only class {classes} "
                "after label mapping; a classifier needs at least two"
            )
        enc_tr = tokenizer([r["text"] for r in tr], truncation=True, max_length=max_len)["input_ids"]
        rows = [{"input_ids": ids, "labels": r["label"]} for ids, r in zip(enc_tr, tr)]
        evals = self._eval_rows("eval", tokenizer, max_len)
        counts = {str(c): sum(r["label"] == c for r in tr) for c in classes}
        info = {"n_train": len(rows), "n_eval": len(evals), "train_label_counts": counts}
        val = None
        if has_val(o.data):
            val = self._eval_rows("val", tokenizer, max_len)
            info["n_val"] = len(val)
        return TaskData(train=rows, eval=evals, info=info, val=val)

    def _eval_rows(self, split: str, tokenizer: Any, max_len: int) -> list[dict[str, Any]]:
        """Test or validation examples, tokenised, with their label and text."""
        ev = self._examples(split, self.options.n_eval)
        enc = tokenizer([r["text"] for r in ev], truncation=True, max_length=max_len)["input_ids"]
        return [{"input_ids": ids, "label": r["label"], "text": r["text"]} for ids, r in zip(enc, ev)]

    def evaluate(self, model: Any, tokenizer: Any, data: TaskData, eval_cfg: EvalSettings, ctx: Any) -> EvalResult:
        import torch

        from lorabench.tasks.scoring import accuracy, macro_f1

        bs = eval_cfg.batch_size
        rows = data.eval
        if eval_cfg.max_batches:
            rows = rows[: eval_cfg.max_batches * bs]
        refs, preds, predictions, tokens = [], [], [], 0
        for start in range(0, len(rows), bs):
            chunk = rows[start : start + bs]
            batch = pad_batch([{"input_ids": r["input_ids"]} for r in chunk], tokenizer.pad_token_id)
            batch = {k: v.to(ctx.device) for k, v in batch.items()}
            with torch.no_grad(), ctx.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            if logits.dim() != 2 or logits.size(-1) != self.options.num_labels:
                raise DataError(
                    f"task {self.task_name!r}: the model returns logits of shape {tuple(logits.shape)}, expected "
                    f"(batch, num_labels={self.options.num_labels})"
                )
            tokens += int(batch["attention_mask"].sum())
            guess = logits.float().argmax(-1).tolist()
            for i, (r, g) in enumerate(zip(chunk, guess)):
                refs.append(r["label"])
                preds.append(g)
                predictions.append(
                    {"id": start + i, "prediction": g, "reference": r["label"], "input": r["text"][:INPUT_CHARS]}
                )
        metrics = {"accuracy": accuracy(refs, preds), "macro_f1": macro_f1(refs, preds)}
        return EvalResult(metrics=metrics, predictions=predictions, tokens=tokens)
