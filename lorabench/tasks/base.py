"""What a task is to lorabench: options (no torch), data preparation, metrics, evaluation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lorabench.data.batching import pad_batch
from lorabench.data.sources import DataSource, wire_source
from lorabench.suite.typed import check_fields

if TYPE_CHECKING:
    from lorabench.suite.schema import EvalSettings


@dataclass
class TaskData:
    """Prepared examples. ``train`` rows are dicts of token lists; ``eval`` (the test split) is task-shaped.

    ``val`` is the validation split, shaped as ``eval``, where the task's data declares
    one (``val_fraction``/``val_file``): periodic evaluation and model selection read it,
    the final score reads ``eval``. None: no validation split.
    """

    train: list[dict[str, list[int]]]
    eval: Any
    info: dict[str, Any] = field(default_factory=dict)
    val: Any = None

    def split(self, name: str) -> TaskData:
        """This data with ``name``'s rows (``"val"`` or ``"test"``) where :meth:`Task.evaluate` reads them."""
        if name == "test":
            return self
        if self.val is None:
            raise ValueError("no validation split was prepared")
        return TaskData(train=self.train, eval=self.val, info=self.info)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[dict[str, Any]]
    tokens: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # how it was evaluated (e.g. generation settings)


class Task:
    """Base class for a task family. Subclasses set the class attributes."""

    name: ClassVar[str]
    # "causal-lm" | "classification" | "seq2seq": picks the Auto class and peft task type.
    # Fixed per task type, except where :meth:`resolve_family` reads it from the model.
    family: str
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, task_name: str, options: Any) -> None:
        self.task_name = task_name
        self.options = options  # the task type's ``Options`` dataclass, as the run spec holds it

    def resolve_family(self, encoder_decoder: Callable[[], bool]) -> str:
        """The model family this task runs with; ``encoder_decoder()`` asks the model's config, if needed."""
        return self.family

    def model_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments (e.g. ``num_labels``)."""
        return {}

    def check_model(self, model: Any) -> None:
        """Raise a clear error when the loaded model cannot serve this task (e.g. head size)."""

    def prepare(self, tokenizer: Any, max_seq_len: int) -> TaskData:
        """Load, subsample (by ``data_seed``) and tokenise the data.

        It may depend only on the task options, the tokenizer and ``max_seq_len``:
        :func:`lorabench.tasks.cache.prepare_cached` keys its on-disk cache on exactly those.
        """
        raise NotImplementedError

    def collate(self, rows: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
        """Pad a list of train rows into a batch (labels padded with -100)."""
        return pad_batch(rows, tokenizer.pad_token_id)

    def count_tokens(self, batch: dict[str, Any]) -> int:
        """Non-padding tokens the model processed (inputs, plus decoder labels for seq2seq)."""
        return int(batch["attention_mask"].sum())

    def evaluate(self, model: Any, tokenizer: Any, data: TaskData, eval_cfg: EvalSettings, ctx: Any) -> EvalResult:
        raise NotImplementedError


@dataclass(frozen=True)
class ForgettingOptions:
    """A task's reference evaluation (``lorabench.tasks.forgetting``): text the base model already handles well.

    Here, beside the task base, because two task types' options hold it."""

    data: DataSource
    text_column: str = "text"
    n_eval: int | None = None  # null: every row of the eval split (200 for a synthetic source)
    data_seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {"n_eval": ">= 1"}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)


#: Task options added after run ids were in use: left out of a run's spec while unset, so a
#: suite that does not use them keeps its run ids and its records stay as they were.
TASK_KEYS_OMITTED_UNSET = ("forgetting",)


def options_wire(options: Any) -> dict[str, Any]:
    """A task's ``Options`` as a run spec's wire format holds them (``RunSpec.to_dict``, records, run_ids).

    Keys added after run ids were in use are left out while unset or at their default
    (:data:`TASK_KEYS_OMITTED_UNSET`, ``data.wire_source``), so older suites keep their run ids.
    """
    out = dataclasses.asdict(options)
    out["data"] = wire_source(out["data"])  # suites without validation keep their run ids
    out = {k: v for k, v in out.items() if not (k in TASK_KEYS_OMITTED_UNSET and v is None)}
    if out.get("forgetting"):
        out["forgetting"] = {**out["forgetting"], "data": wire_source(out["forgetting"]["data"])}
    return out
