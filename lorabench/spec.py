"""The run specification: typed and frozen, built once by the planner, rebuilt once in the run.

A :class:`RunSpec` holds the schema's own settings objects (``TrainSettings``,
``QuantSettings``, ``EvalSettings``, ``ExecutionSettings``), the model definition with
its parsed :class:`~lorabench.models.ref.ModelRef`, and the method's and the task's
options objects.
So every default is the schema's: nothing downstream re-states one with
``.get(key, default)``.

The wire format (what crosses into the run's process and what a record's ``spec``
holds) is :meth:`RunSpec.to_dict`: plain JSON, key for key what it was when the spec
was a bag of dicts, so run_ids and records do not change. :meth:`RunSpec.from_dict`
rebuilds the typed spec from it (a record written before a setting existed gets the
schema's default for it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from lorabench.methods import method_class
from lorabench.methods.base import Method, MethodContext, method_context
from lorabench.models.ref import ModelRef
from lorabench.suite.schema import EvalSettings, ExecutionSettings, ModelDef, QuantSettings, TrainSettings
from lorabench.suite.typed import Collector, build
from lorabench.tasks import TASK_TYPES
from lorabench.tasks.base import options_wire
from lorabench.vocab import QUANTIZED

# Settings that change how a run is managed but not what it measures.
_NOT_HASHED = ("timeout_s", "startup_timeout_s", "keep_adapter", "peak_tflops", "gpu_memory", "skip_predicted_oom")
# Settings added after run ids were in use: at their default they stay out of the hash,
# so existing results keep their run ids (and resume) when the schema grows.
_HASHED_UNLESS_DEFAULT = (
    ("execution", "compile", False),
    ("execution", "processes", 1),
    ("execution", "strategy", "ddp"),
    ("train", "loss", "default"),
    ("model", "attn_implementation", None),
    ("method_options", "alpha_ratio", None),
)


def without_late_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """A spec's wire form without the settings added after run ids were in use, where they hold their default.

    A record written before ``alpha_ratio`` existed and one written since, at its default,
    describe the same run: the run_id and the recipe hash both read them through this.
    """
    out = dict(d)
    for section, key, default in _HASHED_UNLESS_DEFAULT:
        part = out.get(section)
        if isinstance(part, dict) and key in part and part[key] == default:  # method options differ per method
            out[section] = {k: v for k, v in part.items() if k != key}
    return out


def _no_empty_lists(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without keys holding an empty list or tuple (``data.clean``: ``()`` from the planner,
    ``[]`` once through JSON), which a suite may not write but which is its field's default."""
    return {
        k: _no_empty_lists(v) if isinstance(v, dict) else v
        for k, v in d.items()
        if not (isinstance(v, (list, tuple)) and len(v) == 0)
    }


@dataclass(frozen=True)
class ModelSpec(ModelDef):
    """A model definition as a run uses it: the suite's :class:`ModelDef` plus its display name."""

    name: str = ""

    @property
    def ref(self) -> ModelRef:
        return ModelRef.parse(self.path)


@dataclass(frozen=True)
class RunSpec:
    """Everything one isolated run needs, typed; :meth:`to_dict` is its JSON wire format."""

    suite: str
    model: ModelSpec
    method: str
    rank: int | None
    method_options: Any  # the method's Options dataclass, validated by the planner
    precision: str
    quantization: QuantSettings
    task: str
    task_options: Any  # the task type's Options dataclass, validated by the planner
    seed: int
    train: TrainSettings
    eval: EvalSettings
    execution: ExecutionSettings
    # Axes this run's point is swept over (``("lr",)``): its learning rate is one of
    # several for the same point, so reports keep the rates apart and ``select`` picks
    # one. Not part of the run_id (the run is the same run either way) and left out of
    # the wire format when empty, so records without sweeps keep their shape.
    sweep: tuple[str, ...] = ()
    # The suite's ``select.target`` as ``{"metric", "value"}``: the run times its eval curve to
    # it (``profile.time_to_target``). Not part of the run_id (the run measures the same
    # either way; the report re-times every record to the suite's current target) and left
    # out of the wire format when unset.
    target: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["task_options"] = options_wire(self.task_options)  # late-added keys stay out while unset
        if not d["sweep"]:
            d.pop("sweep")
        if d["target"] is None:
            d.pop("target")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        """Rebuild the typed spec from its wire format (a record's ``spec`` or what the executor sent).

        The planner validated these values; one that fails here is a lorabench bug or a
        hand-edited record, said plainly.
        """
        col = Collector("<spec>")
        sections = {
            "model": build(ModelSpec, d["model"], col, "model"),
            "method_options": build(
                method_class(d["method"], d["method_options"]).Options, d["method_options"], col, "method_options"
            ),
            "task_options": build(
                TASK_TYPES.get(d["task_options"]["type"]).Options,
                _no_empty_lists(d["task_options"]),
                col,
                "task_options",
            ),
            "quantization": build(QuantSettings, d["quantization"], col, "quantization"),
            "train": build(TrainSettings, d["train"], col, "train"),
            "eval": build(EvalSettings, d["eval"], col, "eval"),
            "execution": build(ExecutionSettings, d["execution"], col, "execution"),
        }
        if col.issues:
            raise ValueError("invalid run spec: " + "; ".join(i.message for i in col.issues))
        plain = {
            f.name: d[f.name]
            for f in dataclasses.fields(cls)
            if f.name not in sections and f.name not in ("sweep", "target")
        }
        return cls(**plain, **sections, sweep=tuple(d.get("sweep") or ()), target=d.get("target"))

    @property
    def method_cls(self) -> type[Method]:
        """The method's class: a registered one, or a peft-type entry's, built from its options."""
        return method_class(self.method, dataclasses.asdict(self.method_options))

    def method_context(self, task_family: str, model_type: str, train_steps: int | None = None) -> MethodContext:
        """What the method needs to know about this run (the one builder: :func:`method_context`)."""
        return method_context(
            self.method_cls,
            rank=self.rank,
            options=self.method_options,
            task_family=task_family,
            precision=self.precision,
            model_type=model_type,
            target_modules=self.model.target_modules,
            train_steps=train_steps,
        )

    @property
    def run_id(self) -> str:
        d = self.to_dict()
        d.pop("suite")
        d.pop("sweep", None)
        d.pop("target", None)
        d["execution"] = {k: v for k, v in d["execution"].items() if k not in _NOT_HASHED}
        d = without_late_defaults(d)
        if self.precision not in QUANTIZED:
            d.pop("quantization")  # bnb settings cannot affect an unquantised run
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """A human-readable point name, e.g. ``tiny-gpt2/lora-r8/nf4/synthetic-lm/s0``."""
        method = self.method if self.rank is None else f"{self.method}-r{self.rank}"
        if "lr" in self.sweep:
            method += f"@lr{self.train.lr:g}"
        return f"{self.model.name}/{method}/{self.precision}/{self.task}/s{self.seed}"

    @property
    def point(self) -> tuple[str, str, int | None, str, str]:
        """The grid point, without the seed: what the leaderboard aggregates over."""
        return (self.model.name, self.method, self.rank, self.precision, self.task)
