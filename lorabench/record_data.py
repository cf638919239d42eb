"""What a ``record.json`` holds, as typed data: :class:`Record`, its :class:`Profile` and
each phase's :class:`PhaseMemory`.

The driver builds a :class:`Record` (``record.make_record``) and writes ``to_dict()``;
every reader parses a file with ``Record.from_dict`` (via ``record.read_record``) and
reads attributes, never string keys. ``to_dict()`` gives exactly the JSON lorabench has
always written (same keys, values and order), and ``from_dict`` accepts every record an
older version wrote, so committed results and baselines read unchanged.

**Absent is not null.** A field declared with :func:`optional` may be absent from a
record (an older version did not write it, a failed run has no figures): it is then
left out of ``to_dict()`` and reads as its empty value (None, ``{}`` or ``[]``). A field
given explicitly, even as None, is written (``"mfu": null`` says "not computed"). So a
record read and written again is byte-for-byte the same JSON.

**Adding a field** (say ``profile.predicted_peak_bytes``) is one line in the class, with
its type and a comment saying what it means, placed where it should sit in the JSON
(declaration order is key order; the end is the usual place)::

    predicted_peak_bytes: int | None = optional()  # the estimator's peak, before the run

Its writer passes it (``Profile(..., predicted_peak_bytes=n)``); records that lack it,
old ones included, read it as None and are written without it, so no run_id, committed
record or baseline changes. Give nested figures their own small frozen dataclass
(``from_dict``/``to_dict`` like :class:`PhaseMemory`) and name it in the field's
``optional(parse=...)``. A key a reader does not know (a record from a newer version)
is kept in ``extra`` and written back after the known ones.

No torch, no lorabench imports above ``vocab``: the metric registry, the report and the
run process all use these types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from lorabench.vocab import STATUSES


class RecordError(ValueError):
    """A record (or part of one) that does not have the shape of a record; one line, no traceback."""


class _Absent:
    """The default of an :func:`optional` field: replaced by the field's empty value at init."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def optional(empty: Callable[[], Any] | None = None, parse: Callable[[Any], Any] | None = None) -> Any:
    """A field a record may lack: omitted from JSON unless given; reads as ``empty()`` (or None) when absent.

    ``parse`` turns the JSON value into the field's type (a nested dataclass) on read.
    """
    return dataclasses.field(default=_ABSENT, metadata={"empty": empty, "parse": parse})


def _plain(value: Any) -> Any:
    """JSON-ready data: nested record types become their dicts, containers are copied."""
    if isinstance(value, RecordPart):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T", bound="RecordPart")


@dataclass(frozen=True)
class RecordPart:
    """Base of the record types: absent-field bookkeeping, ``to_dict`` and ``from_dict``."""

    #: Keys this type does not declare, kept as read (a record from a newer version).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, kw_only=True, repr=False)
    _absent: frozenset[str] = dataclasses.field(default=frozenset(), init=False, repr=False, compare=False)
    #: Where this part sits in a record, for error messages ("profile", "profile.memory_mb.train").
    WHERE: ClassVar[str] = "record"

    def __post_init__(self) -> None:
        absent = []
        for f in self._fields():
            if getattr(self, f.name) is _ABSENT:
                absent.append(f.name)
                empty = f.metadata.get("empty")
                object.__setattr__(self, f.name, empty() if empty else None)
        object.__setattr__(self, "_absent", frozenset(absent))

    @classmethod
    def _fields(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if f.init and f.name != "extra"]

    def has(self, name: str) -> bool:
        """Whether field ``name`` was given (written to JSON), as opposed to absent."""
        return name not in self._absent

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: declared fields in order (absent ones left out), then ``extra``."""
        out = {f.name: _plain(getattr(self, f.name)) for f in self._fields() if f.name not in self._absent}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls: type[T], d: Any) -> T:
        """Parse a JSON object; a value of the wrong shape is a :class:`RecordError` naming it."""
        if not isinstance(d, dict):
            raise RecordError(f"{cls.WHERE} must be an object, got {type(d).__name__}")
        kwargs: dict[str, Any] = {}
        names = set()
        for f in cls._fields():
            names.add(f.name)
            if f.name not in d:
                if f.default is not _ABSENT:
                    raise RecordError(f"{cls.WHERE} has no {f.name!r}")
                continue
            value = d[f.name]
            parse = f.metadata.get("parse")
            kwargs[f.name] = parse(value) if parse is not None and value is not None else value
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**kwargs, extra=extra)


def _number_or_none(where: str, value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise RecordError(f"{where} is not a number: {str(value)[:60]!r}")
    return value


@dataclass(frozen=True)
class PhaseMemory(RecordPart):
    """Peak memory of one phase in MiB, per source; None where a source does not apply (CPU)."""

    rss: float | None = optional()
    allocated: float | None = optional()
    reserved: float | None = optional()
    nvml: float | None = optional()
    WHERE: ClassVar[str] = "profile.memory_mb.<phase>"

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in self._fields():
            _number_or_none(f"{self.WHERE}.{f.name}", getattr(self, f.name))

    def source(self, name: str) -> float | None:
        """The peak from source ``name`` (one of ``record.MEM_SOURCES``)."""
        value: float | None = getattr(self, name)
        return value


def _memory(value: Any) -> dict[str, PhaseMemory]:
    if not isinstance(value, dict):
        raise RecordError(f"profile.memory_mb must be an object, got {type(value).__name__}")
    return {phase: PhaseMemory.from_dict(mem) for phase, mem in value.items()}


@dataclass(frozen=True)
class RankMemory(RecordPart):
    """One rank's peak memory per phase, in a run over several processes."""

    rank: int
    pid: int | None = optional()
    memory_mb: dict[str, PhaseMemory] = optional(dict, parse=_memory)  # phase -> this rank's peaks
    WHERE: ClassVar[str] = "profile.distributed.per_rank[]"


def _rank_list(value: Any) -> list[RankMemory]:
    if not isinstance(value, list):
        raise RecordError(f"profile.distributed.per_rank must be a list, got {type(value).__name__}")
    return [RankMemory.from_dict(r) for r in value]


@dataclass(frozen=True)
class Distributed(RecordPart):
    """A run over several processes (``execution.processes``): its ranks and how the model was spread.

    ``profile.memory_mb`` of such a run holds, per phase and source, the largest rank's
    peak (memory per GPU/rank); ``per_rank`` holds each rank's own.
    """

    world_size: int
    strategy: str  # "ddp" (replicated) or "fsdp" (sharded)
    backend: str | None = optional()  # torch.distributed's: gloo (CPU) or nccl
    batch_per_rank: int | None = optional()  # train.batch_size is the global batch
    per_rank: list[RankMemory] = optional(list, parse=_rank_list)
    WHERE: ClassVar[str] = "profile.distributed"


@dataclass(frozen=True)
class Profile(RecordPart):
    """What a run measured about itself: parameters, throughput, timings, memory, FLOPs, the estimate.

    Every field may be absent: a failed run's profile is ``{}``, and older records lack
    the later figures (``step_s``, the FLOPs block, ``host_cpu_train``). The order below
    is the order lorabench has written them in.
    """

    trainable_params: int | None = optional()
    total_params: int | None = optional()
    trainable_pct: float | None = optional()
    param_convention: str | None = optional()
    tokens_per_s: float | None = optional()  # summed step time; readers use metrics.median_tokens_per_s
    samples_per_s: float | None = optional()
    train_s: float | None = optional()
    timed_s: float | None = optional()
    timed_steps: int | None = optional()
    step_s: list[float] = optional(list)  # seconds per timed step, warm-up excluded
    timed_tokens: int | None = optional()
    train_steps: int | None = optional()
    eval_s: float | None = optional()
    val_eval_s: float | None = optional()  # the final evaluation on the validation split, where the task has one
    periodic_eval_s: float | None = optional()
    eval_tokens: int | None = optional()
    load_s: float | None = optional()
    adapter_bytes: int | None = optional()
    memory_mb: dict[str, PhaseMemory] = optional(dict, parse=_memory)  # phase (load/train/eval) -> peaks
    host_cpu_train: dict[str, float | int | None] | None = optional()  # run.profile.HostCPU.finish
    model_flops_per_token: float | None = optional()
    hardware_flops_per_token: float | None = optional()
    flops_matmul_params: dict[str, int] | None = optional()
    peak_tflops: float | None = optional()
    peak_tflops_source: str | None = optional()
    mfu: float | None = optional()
    hfu: float | None = optional()
    estimate_bytes: dict[str, Any] | None = optional()  # accounting.estimate's answer for this run
    notes: list[str] = optional(list)  # why a figure is null, said in words
    forgetting_s: float | None = optional()  # scoring the forgetting reference, where the task names one
    # Joules over training (eval excluded) and their source, or the reason there are none (run.energy).
    energy: dict[str, Any] | None = optional()
    # The cost until the eval curve first reached a quality target, with the target (lorabench.quality).
    # The run sets it when the suite names `select.target`; the report (re)derives it for every run,
    # since the default target depends on every run of the task.
    time_to_target: dict[str, Any] | None = optional()
    distributed: Distributed | None = optional(parse=Distributed.from_dict)  # only runs over several processes
    # The run's own memory prediction (accounting.predict): torch allocated bytes, the CUDA
    # context left out; "trace" or "analytic"; the measured allocated peak (train, eval) over
    # it, null where no CUDA allocator measured; and the seconds predicting took.
    predicted_peak_bytes: int | None = optional()
    predicted_method: str | None = optional()
    measured_over_predicted: float | None = optional()
    predict_s: float | None = optional()
    WHERE: ClassVar[str] = "profile"

    def figure(self, name: str) -> Any:
        """A figure by its key (the metric registry names cost figures by profile key); None when absent."""
        if name in {f.name for f in self._fields()}:
            return getattr(self, name)
        return self.extra.get(name)

    def phase(self, name: str) -> PhaseMemory | None:
        """Peak memory of phase ``name``, or None when the run did not reach it."""
        return self.memory_mb.get(name)


@dataclass(frozen=True)
class Record(RecordPart):
    """One run's record: identity, status, the spec it ran, what it measured, its provenance.

    ``spec`` stays the wire form (``RunSpec.to_dict()``): records written by older
    versions hold spec sections the current schema may not rebuild, and readers use only
    its identity fields. ``metrics`` maps registered metric names to values.
    """

    run_id: str
    label: str
    suite: str
    status: str  # a vocab.Status value
    spec: dict[str, Any]
    schema_version: int | None = optional()
    error: str | None = optional()
    recipe: str | None = optional()  # record.recipe_hash; absent in records before it existed
    metrics: dict[str, float | None] = optional(dict)
    val_metrics: dict[str, float | None] = optional(dict)  # on the validation split, where the task has one
    profile: Profile = optional(Profile, parse=Profile.from_dict)
    resolved: dict[str, Any] = optional(dict)
    curves: dict[str, Any] = optional(dict)
    flags: list[str] = optional(list)  # sanity flags, named in lorabench.sanity.FLAG_MEANINGS
    env: dict[str, Any] = optional(dict)
    wall_s: float | None = optional()
    isolation_s: float | None = optional()
    import_s: float | None = optional()
    cuda_init_s: float | None = optional()
    executor: dict[str, Any] | None = optional()
    created_at: str | None = optional()
    traceback: str | None = optional()  # only for runs that raised
    log_tail: str | None = optional()  # only for runs whose process died without reporting

    #: Top-level keys in the order they are written (schema_version first, as always).
    ORDER: ClassVar[tuple[str, ...]] = (
        "schema_version",
        "run_id",
        "label",
        "suite",
        "status",
        "error",
        "spec",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.status not in STATUSES:
            raise RecordError(f"status must be one of {', '.join(STATUSES)}, got {str(self.status)[:60]!r}")

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON object, keys in the order lorabench has always written them."""
        body = super().to_dict()
        head = {k: body.pop(k) for k in self.ORDER if k in body}
        return {**head, **body}

    @property
    def ok(self) -> bool:
        """The run succeeded (its figures are measurements)."""
        return self.status == "success"
