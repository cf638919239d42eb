"""The suite schema: typed, frozen and strict. Nothing here imports torch.

A suite names a matrix over model × method × rank × precision × task plus seeds and
training/eval settings. ``load_suite`` parses, validates everything it can before any
model is loaded, and raises one :class:`SuiteError` listing every problem.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorabench.errors import Issue, SuiteError, UsageError
from lorabench.metrics import METRICS, quality_metrics
from lorabench.suite.typed import MISSING, Collector, FieldErrors, build, check_ranges, convert, key_line
from lorabench.suite.yamlnodes import LDict, LList, decode, load_yaml
from lorabench.vocab import Device, Precision, gpu_budget

AttnImpl = Literal["eager", "sdpa", "flash_attention_2"]
LossKernel = Literal["default", "chunked", "liger"]


@dataclass(frozen=True)
class TrainSettings:
    """How each run trains. ``warmup_steps`` are run but excluded from throughput."""

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["constant", "linear", "cosine"] = "linear"
    lr_warmup_steps: int = 0
    max_seq_len: int = 128
    warmup_steps: int = 2
    grad_checkpointing: bool = False
    max_grad_norm: float | None = 1.0
    log_every: int = 10
    # The loss kernel: the model's own (`default`); `chunked`, a plain-torch cross-entropy
    # over chunks of tokens with the output head checkpointed per chunk; or Liger's fused
    # linear + cross-entropy (`liger`, CUDA + liger-kernel). Neither materialises the full logits.
    loss: LossKernel = "default"

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise ValueError("give `steps` or `epochs`")
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"give `steps` or `epochs`, not both (steps={self.steps}, epochs={self.epochs})")
        errors = check_ranges(self, _TRAIN_RANGES)
        bad = {name for name, _ in errors}
        if self.steps is not None and not bad & {"steps", "warmup_steps"} and self.warmup_steps >= self.steps:
            errors.append(
                (
                    "warmup_steps",
                    f"`warmup_steps` ({self.warmup_steps}) must be < `steps` ({self.steps}): nothing would be timed",
                )
            )
        if self.steps is not None and not bad & {"steps", "lr_warmup_steps"} and self.lr_warmup_steps > self.steps:
            errors.append(
                ("lr_warmup_steps", f"`lr_warmup_steps` ({self.lr_warmup_steps}) must be <= `steps` ({self.steps})")
            )
        if errors:
            raise FieldErrors(errors)


_TRAIN_RANGES = {
    "steps": ">= 1",
    "epochs": "> 0",
    "batch_size": ">= 1",
    "grad_accum": ">= 1",
    "lr": "> 0",
    "weight_decay": ">= 0",
    "lr_warmup_steps": ">= 0",
    "max_seq_len": ">= 1",
    "warmup_steps": ">= 0",
    "max_grad_norm": "> 0",
    "log_every": ">= 1",
}


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding for generative evaluation (summarisation). Recorded with each run."""

    max_new_tokens: int = 48
    num_beams: int = 1

    def __post_init__(self) -> None:
        errors = check_ranges(self, {"max_new_tokens": ">= 1", "num_beams": ">= 1"})
        if errors:
            raise FieldErrors(errors)


@dataclass(frozen=True)
class EvalSettings:
    """How each run is evaluated."""

    batch_size: int = 16
    max_batches: int | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    # Also evaluate every N optimizer steps (and after the last) into `curves.eval`, for
    # quality-vs-step curves; that time is excluded from the training timers.
    every: int | None = None

    def __post_init__(self) -> None:
        errors = check_ranges(self, {"batch_size": ">= 1", "max_batches": ">= 1", "every": ">= 1"})
        if errors:
            raise FieldErrors(errors)


@dataclass(frozen=True)
class QuantSettings:
    """bitsandbytes options for int8/nf4/fp4 bases."""

    compute_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    double_quant: bool = True
    # peft's prepare_model_for_kbit_training upcasts non-quantised weights to fp32;
    # it costs memory, so it is a recorded option, not an unconditional step.
    prepare_kbit: bool = True


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how runs execute; ``timeout_s``, ``startup_timeout_s`` and ``keep_adapter`` do not change a run_id."""

    device: Device = Device.AUTO.value
    threads: int | None = None
    timeout_s: float = 3600.0
    # Bound on starting the forkserver (its preload imports) and on each run process's own
    # start (clean-fork check, CUDA context, peft/bitsandbytes imports): a hang there (a BLAS
    # library spinning under a memory limit) has a name and an end, whatever timeout_s is.
    startup_timeout_s: float = 300.0
    keep_adapter: bool = True
    memory_sample_s: float = 0.02
    compile: bool = False  # torch.compile the model before training
    # Peak dense TFLOP/s for MFU, overriding the built-in datasheet table (needed on CPU).
    peak_tflops: float | None = None
    # One run as N ranks (torch.distributed): `ddp` replicates the model on each rank,
    # `fsdp` (FSDP2's fully_shard) shards it. train.batch_size stays the global batch,
    # split evenly across the ranks, so a point trains on the same data at any N.
    processes: int = 1
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # The GPU's memory ("80GiB", "40960MiB" or a card name such as "A100-40GB"): before any
    # run starts, each point's traced peak is checked against it (lorabench.accounting.predict).
    gpu_memory: str | None = None
    # Record points predicted not to fit as `predicted_oom` rows instead of running them.
    skip_predicted_oom: bool = False

    def __post_init__(self) -> None:
        rules = {
            "processes": ">= 1",
            "threads": ">= 1",
            "timeout_s": "> 0",
            "startup_timeout_s": "> 0",
            "memory_sample_s": "> 0",
            "peak_tflops": "> 0",
        }
        errors = check_ranges(self, rules)
        if self.gpu_memory is not None:
            try:
                gpu_budget(self.gpu_memory)
            except ValueError as exc:
                errors.append(("gpu_memory", f"`gpu_memory`: {exc}"))
            if self.device == Device.CPU.value:
                errors.append(("gpu_memory", "`gpu_memory` is a CUDA budget; `device` is cpu"))
        elif self.skip_predicted_oom:
            errors.append(
                ("skip_predicted_oom", "`skip_predicted_oom` needs `gpu_memory` (the budget to check against)")
            )
        if errors:
            raise FieldErrors(errors)


@dataclass(frozen=True)
class ModelDef:
    """A model: a hub id, a local directory or ``builtin:NAME``."""

    path: str
    revision: str | None = None
    weights: Literal["pretrained", "random"] = "pretrained"
    target_modules: tuple[str, ...] | None = None
    # transformers' attention kernel; null keeps transformers' default for the model.
    attn_implementation: AttnImpl | None = None


@dataclass(frozen=True)
class MatrixBlock:
    """One cartesian product of axes; a suite's grid is the union of its blocks."""

    model: tuple[str, ...]
    method: tuple[str, ...]
    task: tuple[str, ...]
    precision: tuple[Precision, ...] = (Precision.FP32.value,)
    rank: tuple[int, ...] | None = None
    # Optimised-path axes; each overrides execution.compile / the model's
    # attn_implementation / train.loss for the points of this block.
    compile: tuple[bool, ...] | None = None
    attn_implementation: tuple[AttnImpl, ...] | None = None
    loss: tuple[LossKernel, ...] | None = None
    # A learning-rate sweep axis for this block's methods (overrides `train.lr`; see `select`).
    lr: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.lr is not None:
            bad = [x for x in self.lr if not x > 0]
            if bad or not self.lr or len(set(self.lr)) != len(self.lr):
                raise ValueError(f"`lr` should be distinct rates > 0, got {list(self.lr)}")


@dataclass(frozen=True)
class SelectSettings:
    """Model selection over a sweep: per point and task, the rate with the best mean validation ``metric``.

    The metric's direction comes from the metric registry; it is read from each run's
    ``val_metrics`` (so every task needs a validation split), never from test.
    """

    metric: str
    over: tuple[Literal["lr"], ...] = ("lr",)
    # The quality every run's eval curve is timed to (time-to-target, lorabench.report.target), on
    # `metric`; null: within 5% of the best run's final value, per task.
    target: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in quality_metrics():
            known = ", ".join(quality_metrics())
            hint = METRICS.unknown_message(self.metric) if self.metric not in METRICS else "a cost figure"
            raise ValueError(f"`metric`: {self.metric!r} is not a validation metric ({hint}); one of: {known}")
        if not self.over:
            raise ValueError("`over` should name the swept axes, e.g. [lr]")


@dataclass(frozen=True)
class PointRule:
    """An ``exclude`` rule: a point matches when every given axis contains its value."""

    model: tuple[str, ...] | None = None
    method: tuple[str, ...] | None = None
    task: tuple[str, ...] | None = None
    precision: tuple[Precision, ...] | None = None
    rank: tuple[int, ...] | None = None
    seed: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Suite:
    """A validated suite. ``blocks`` carry their YAML lines for later error messages."""

    name: str
    file: str
    blocks: tuple[tuple[MatrixBlock, int | None], ...]
    exclude: tuple[tuple[PointRule, int | None], ...]
    seeds: tuple[int, ...]
    models: dict[str, ModelDef]
    tasks: dict[str, dict[str, Any]]
    methods: dict[str, dict[str, Any]]
    train: TrainSettings
    eval: EvalSettings
    quantization: QuantSettings
    execution: ExecutionSettings
    description: str = ""
    select: SelectSettings | None = None
    # Line of each top-level key, so later validation (plan) can point into the file.
    lines: dict[str, int] = field(default_factory=dict)


TOP_KEYS = {
    "name": "the suite's name (default: file stem)",
    "description": "free text",
    "matrix": "a mapping of axes, or a list of them",
    "include": "extra matrix blocks",
    "exclude": "a list of point rules",
    "seeds": "a list of ints",
    "models": "named model definitions",
    "tasks": "named task definitions",
    "methods": "per-method options",
    "train": "training settings",
    "eval": "evaluation settings",
    "quantization": "bitsandbytes settings",
    "execution": "device, threads, timeout",
    "select": "model selection over a learning-rate sweep: {metric: <validation metric>, over: [lr]}",
}


def _blocks(raw: Any, col: Collector, where: str) -> list[tuple[MatrixBlock, int | None]]:
    items = raw if isinstance(raw, LList) else [raw]
    lines = raw.item_lines if isinstance(raw, LList) else [getattr(raw, "line", None)]
    out = []
    for i, (item, line) in enumerate(zip(items, lines)):
        sub = f"{where}[{i}]" if isinstance(raw, LList) else where
        block = build(MatrixBlock, item, col, sub, line)
        if block is not MISSING:
            out.append((block, line))
    return out


#: numpy and torch seed with a 32-bit unsigned integer; a larger seed would validate and fail every run.
MAX_SEED = 2**32 - 1
#: Longest model, method or task name: names become table cells, labels and file names.
MAX_NAME = 200


def name_problem(name: str, slash_ok: bool = False) -> str | None:
    """Why ``name`` cannot name a model, method or task, or None when it can.

    Names end up in file names, Markdown and HTML tables, CSV cells and headings: no
    control characters (a newline breaks a heading), a sane length, and no ``/`` or
    ``\\`` where the name becomes a file name (a task's plots, a named model). Model
    paths in the matrix (hub ids, directories) may contain ``/``.
    """
    if not name or not name.strip():
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    bad = sorted({c for c in name if not c.isprintable()})
    if bad:
        return f"contains control character(s) {', '.join(repr(c) for c in bad)}"
    if not slash_ok and ("/" in name or "\\" in name):
        return "contains '/' or '\\' (it becomes part of file names)"
    if name in (".", ".."):
        return "is '.' or '..'"
    return None


def _check_names(raw: LDict, blocks: list[tuple[MatrixBlock, int | None]], col: Collector) -> None:
    """Every model, method and task name must be able to name a file, a table cell and a heading."""
    for section in ("models", "tasks", "methods"):
        defs = raw.get(section)
        if isinstance(defs, LDict):
            for key in defs:
                why = name_problem(str(key))
                if why:
                    col.error(key_line(defs, key), f"{section}: name {str(key)!r} {why}")
    # A name defined under models/tasks/methods was reported at its definition.
    seen = {
        (axis, str(k))
        for axis, sec in (("model", "models"), ("task", "tasks"), ("method", "methods"))
        if isinstance(raw.get(sec), LDict)
        for k in raw[sec]
    }
    for block, line in blocks:
        for axis, names in (("model", block.model), ("method", block.method), ("task", block.task)):
            for name in names:
                why = name_problem(name, slash_ok=axis == "model")
                if why and (axis, name) not in seen:
                    seen.add((axis, name))
                    col.error(line, f"{axis}: name {name!r} {why}")


def parse_schema(text: str, file: str, default_name: str = "suite") -> tuple[Suite, list[Issue]]:
    """Parse suite ``text`` against the schema: (the suite, every issue found).

    Sections that failed are replaced by defaults so that the planner can still check
    the rest (names, combinations) and report every problem in one go; with issues,
    the suite must not be run. YAML that cannot be read at all raises :class:`SuiteError`.
    Cross-checks that need the registries live in :func:`lorabench.validate.parse_suite`.
    """
    raw = load_yaml(text, file)
    col = Collector(file)
    if not isinstance(raw, LDict):
        raise SuiteError([Issue(file, getattr(raw, "line", 1), "a suite must be a mapping of keys")])
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(key, TOP_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            col.error(key_line(raw, key), f"unknown top-level key {key!r}{hint}; allowed: {', '.join(TOP_KEYS)}")

    def section(cls: Any, key: str) -> Any:
        value = build(cls, raw.get(key), col, key, key_line(raw, key))
        return value

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        col.error(key_line(raw, "name"), f"name: expected letters, digits, '-' or '_', got {name!r}")
        name = default_name
    description = raw.get("description", "")
    if not isinstance(description, str):
        col.error(key_line(raw, "description"), "description: expected a string")
        description = ""

    blocks: list[tuple[MatrixBlock, int | None]] = []
    if "matrix" not in raw:
        col.error(1, "missing required key 'matrix' (axes: model, method, task, precision, rank)")
    else:
        blocks += _blocks(raw["matrix"], col, "matrix")
    if "include" in raw:
        if not isinstance(raw["include"], LList):
            col.error(key_line(raw, "include"), "include: expected a list of matrix blocks")
        else:
            blocks += _blocks(raw["include"], col, "include")

    exclude: list[tuple[PointRule, int | None]] = []
    if "exclude" in raw:
        ex = raw["exclude"]
        if not isinstance(ex, LList):
            col.error(key_line(raw, "exclude"), "exclude: expected a list of point rules")
        else:
            for i, (item, line) in enumerate(zip(ex, ex.item_lines)):
                rule = build(PointRule, item, col, f"exclude[{i}]", line)
                if rule is not MISSING:
                    exclude.append((rule, line))

    seeds = (0,)
    if "seeds" in raw:
        s = convert(tuple[int, ...], raw["seeds"], col, "seeds", key_line(raw, "seeds"))
        if s is not MISSING:
            if len(set(s)) != len(s):
                col.error(key_line(raw, "seeds"), f"seeds: duplicates in {list(s)}")
            negative = [x for x in s if x < 0]
            if negative:
                col.error(key_line(raw, "seeds"), f"seeds: should be >= 0, got {negative}")
            huge = [x for x in s if x > MAX_SEED]
            if huge:
                col.error(key_line(raw, "seeds"), f"seeds: should be < 2**32 (numpy's limit), got {huge}")
            seeds = s

    models = convert(dict[str, ModelDef], raw.get("models", LDict()), col, "models", key_line(raw, "models"))
    tasks = convert(dict[str, dict[str, Any]], raw.get("tasks", LDict()), col, "tasks", key_line(raw, "tasks"))
    _check_names(raw, blocks, col)
    methods = convert(dict[str, dict[str, Any]], raw.get("methods", LDict()), col, "methods", key_line(raw, "methods"))
    train = section(TrainSettings, "train") if "train" in raw else MISSING
    if "train" not in raw:
        col.error(1, "missing required key 'train' (at least `steps` or `epochs`)")
    suite_kwargs = dict(
        name=name,
        file=file,
        blocks=tuple(blocks),
        exclude=tuple(exclude),
        seeds=tuple(seeds),
        models=models if models is not MISSING else {},
        # The located mappings themselves, so later checks can point at `tasks.NAME` lines.
        tasks=(raw.get("tasks") or LDict()) if tasks is not MISSING else {},
        methods=(raw.get("methods") or LDict()) if methods is not MISSING else {},
        train=train,
        eval=section(EvalSettings, "eval"),
        quantization=section(QuantSettings, "quantization"),
        execution=section(ExecutionSettings, "execution"),
        select=section(SelectSettings, "select") if "select" in raw else None,
        description=description,
        lines={k: key_line(raw, k) or 1 for k in raw},
    )
    # Cross-checks that need the registries (still no torch) run even when a section
    # failed, with placeholders, so every problem is reported in one go.
    placeholders = {
        "train": TrainSettings(steps=10),
        "eval": EvalSettings(),
        "quantization": QuantSettings(),
        "execution": ExecutionSettings(),
        "select": None,
    }
    broken = {k for k, v in suite_kwargs.items() if v is MISSING}
    for k in broken:
        suite_kwargs[k] = placeholders[k]
    suite = Suite(**suite_kwargs)  # type: ignore[arg-type]
    if broken and not col.issues:  # pragma: no cover - a broken section always records why
        col.error(1, f"invalid sections: {', '.join(sorted(broken))}")
    return suite, col.issues


MAX_SUITE_BYTES = 1 << 20  # suites are a few KB; a bigger file is a mistake, not a suite


def read_suite(path: str | Path) -> tuple[str, str, str]:
    """(text, file name for messages, default suite name) of a suite file, or a bare name under ``suites/``."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and (Path("suites") / f"{p}.yaml").exists():
        p = Path("suites") / f"{p}.yaml"
    if not p.exists():
        raise UsageError(f"suite file not found: {path}")
    if p.is_dir():
        raise UsageError(f"suite path is a directory, expected a YAML file: {path}")
    if not p.is_file():  # a device or a pipe (/dev/zero) would be read forever
        raise UsageError(f"suite path is not a regular file: {path}")
    if p.stat().st_size > MAX_SUITE_BYTES:
        raise UsageError(f"suite file is {p.stat().st_size:,} bytes; a suite is at most {MAX_SUITE_BYTES:,}: {path}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read suite {path}: {exc}") from None
    return decode(data, str(p)), str(p), p.stem
