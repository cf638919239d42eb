"""Plan stage: a validated suite → a flat list of :class:`RunSpec` with stable run_ids.

The run_id is a hash of the normalised spec (every option resolved to its default),
so renaming a suite or re-ordering its YAML does not change it, and resume is free.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import os
import typing
from typing import Any

from lorabench.errors import Issue, SuiteError, UsageError
from lorabench.methods import METHODS, is_peft_entry
from lorabench.methods.base import Method
from lorabench.models import BUILTIN_MODELS
from lorabench.models.ref import ModelKind, ModelRef
from lorabench.spec import ModelSpec, RunSpec
from lorabench.suite.schema import ExecutionSettings, ModelDef, Suite, TrainSettings
from lorabench.suite.typed import MISSING, Collector, build, convert, key_line
from lorabench.suite.yamlnodes import LDict
from lorabench.vocab import QUANTIZED


def _resolve_model(name: str, suite: Suite, col: Collector, line: int | None) -> ModelSpec | None:
    mdef = suite.models.get(name) or ModelDef(path=name)
    ref = ModelRef.parse(mdef.path)
    if ref.kind is ModelKind.BUILTIN:
        if ref.name not in BUILTIN_MODELS:
            col.error(line, f"model {name!r}: {BUILTIN_MODELS.unknown_message(ref.name)}")
            return None
    elif ref.shipped:
        try:
            ref.shipped_dir()  # an unknown config:/packaged: name, or its package not installed
        except UsageError as exc:
            col.error(line, f"model {name!r}: {exc}")
            return None
    elif ref.kind is ModelKind.LOCAL:
        path = os.path.expanduser(mdef.path)
        if not os.path.isdir(path):
            col.error(line, f"model {name!r}: local directory {mdef.path!r} does not exist")
            return None
        if not os.path.isfile(os.path.join(path, "config.json")):
            col.error(line, f"model {name!r}: {mdef.path!r} has no config.json")
            return None
    display = name.split("/")[-1].split(":")[-1] if name not in suite.models else name
    return ModelSpec(**{f.name: getattr(mdef, f.name) for f in dataclasses.fields(mdef)}, name=display)


def _model_type(model: ModelSpec | None) -> str | None:
    """``config.model_type`` where it is known without loading (built-ins, local directories)."""
    if model is None:
        return None
    ref = model.ref
    if ref.kind is ModelKind.BUILTIN:
        return BUILTIN_MODELS.get(ref.name).model_type
    config = os.path.join(ref.known_dir() or ref.path, "config.json")
    if os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as fh:
                value = json.load(fh).get("model_type")
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None
    return None  # a hub id: known only once its config is fetched, at run time


def _resolve_task(name: str, suite: Suite, col: Collector, line: int | None) -> Any:
    from lorabench.tasks import TASK_PRESETS, TASK_TYPES

    raw = suite.tasks.get(name)
    where = f"tasks.{name}"
    if raw is None:
        if name not in TASK_PRESETS:
            col.error(
                line,
                f"task {name!r} is not defined under `tasks:` and is no built-in task; "
                f"{TASK_PRESETS.unknown_message(name)}",
            )
            return None
        raw, where, line = TASK_PRESETS.get(name), f"built-in task {name}", line
    else:
        line = key_line(suite.tasks, name) or line
    ttype = raw.get("type")
    if ttype not in TASK_TYPES:
        col.error(line, f"{where}.type: {TASK_TYPES.unknown_message(str(ttype))}")
        return None
    task_cls = TASK_TYPES.get(ttype)
    opts = build(task_cls.Options, raw, col, where, line)
    return None if opts is MISSING else opts


def _method_options(method: str, suite: Suite, col: Collector, cache: dict[str, Any]) -> Any:

    if method not in cache:
        raw = suite.methods.get(method)
        line = key_line(suite.methods, method) if raw is not None else None
        if method not in METHODS and is_peft_entry(raw):
            from lorabench.methods.peft_type import check_config

            cache[method] = check_config(method, raw, col, line, getattr(raw, "key_lines", {}))
        else:
            cls = METHODS.get(method)
            cache[method] = build(cls.Options, _without_train(raw), col, f"methods.{method}", line)
    return cache[method]


def _method_class(method: str, opts: Any) -> Any:
    """The method's class; a peft-type entry's comes from its checked options."""

    if method in METHODS:
        return METHODS.get(method)
    from lorabench.methods.peft_type import method_for

    return method_for(method, opts)


def _stored_options(method: str, opts: Any) -> Any:
    """Options as the run spec holds them (a peft entry's ``r`` moves to the rank axis)."""
    if method in METHODS:
        return opts
    from lorabench.methods.peft_type import without_rank

    return without_rank(opts)


# Per-method training overrides (`methods.<name>.train`): what shapes optimisation may
# differ per method (full fine-tuning and LoRA want learning rates ~10x apart); what
# shapes the data (`max_seq_len`) may not, or the methods would not see the same task.
TRAIN_OVERRIDE_KEYS = tuple(
    f.name for f in dataclasses.fields(TrainSettings) if f.name not in ("max_seq_len", "log_every")
)


def _without_train(raw: Any) -> Any:
    """A method's options mapping without its ``train`` overrides (keeps line information)."""
    if not isinstance(raw, LDict) or "train" not in raw:
        return raw
    out = LDict({k: v for k, v in raw.items() if k != "train"})
    out.line = raw.line
    out.key_lines = {k: v for k, v in raw.key_lines.items() if k != "train"}
    return out


def method_train(method: str, suite: Suite, col: Collector, cache: dict[str, Any]) -> Any:
    """The training settings that apply to ``method``: the suite's, with its overrides.

    ``steps`` and ``epochs`` replace each other, so a method may train for a number of
    steps in a suite that trains others by epochs. Errors point at the override's line.
    """
    if method in cache:
        return cache[method]
    raw_method = suite.methods.get(method)
    raw = raw_method.get("train") if isinstance(raw_method, dict) else None
    where = f"methods.{method}.train"
    result: Any = suite.train
    if raw is not None:
        line = key_line(raw_method, "train")
        if not isinstance(raw, dict):
            col.error(line, f"{where}: expected a mapping of training settings, got {raw!r}")
            result = MISSING
        else:
            hints = typing.get_type_hints(TrainSettings)
            key_lines = getattr(raw, "key_lines", {})
            changes: dict[str, Any] = {}
            for key, value in raw.items():
                kl = key_lines.get(key, line)
                if key == "lr" and isinstance(value, list):
                    continue  # a sweep axis: method_lrs reads it
                if key not in TRAIN_OVERRIDE_KEYS:
                    close = difflib.get_close_matches(key, TRAIN_OVERRIDE_KEYS, n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    col.error(kl, f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(TRAIN_OVERRIDE_KEYS)}")
                    result = MISSING
                    continue
                val = convert(hints[key], value, col, f"{where}.{key}", kl)
                if val is MISSING:
                    result = MISSING
                else:
                    changes[key] = val
            if result is not MISSING:
                if "steps" in changes and "epochs" not in changes:
                    changes["epochs"] = None
                elif "epochs" in changes and "steps" not in changes:
                    changes["steps"] = None
                try:
                    result = dataclasses.replace(suite.train, **changes)
                except ValueError as exc:
                    col.error(line, f"{where}: {exc} (after applying the overrides to the suite's `train`)")
                    result = MISSING
    cache[method] = result
    return result


def method_lrs(method: str, suite: Suite, col: Collector) -> tuple[float, ...] | None:
    """The learning-rate sweep of ``methods.<method>.train.lr`` when it is a list, else None."""
    raw_method = suite.methods.get(method)
    raw = raw_method.get("train") if isinstance(raw_method, dict) else None
    value = raw.get("lr") if isinstance(raw, dict) else None
    if not isinstance(value, list):
        return None
    line = getattr(raw, "key_lines", {}).get("lr", key_line(raw_method, "train"))
    where = f"methods.{method}.train.lr"
    rates = convert(tuple[float, ...], value, col, where, line)
    if rates is MISSING:
        return None
    if not rates or any(not r > 0 for r in rates) or len(set(rates)) != len(rates):
        col.error(line, f"{where}: a sweep is a list of distinct rates > 0, got {list(value)}")
        return None
    return rates


def _check_select(suite: Suite, specs: dict[str, RunSpec], col: Collector) -> None:
    """``select`` needs a sweep to choose from, and a validation split holding its metric in every task."""
    from lorabench.data.sources import has_val
    from lorabench.tasks import TASK_TYPES

    sel, line = suite.select, suite.lines.get("select")
    if sel is None:
        return
    if not any(s.sweep for s in specs.values()) and sel.target is None:  # a target alone times runs to it
        col.error(line, "select: nothing to select from: no method sweeps `lr` (give a list of rates)")
    seen: set[str] = set()
    for spec in specs.values():
        if spec.task in seen:
            continue
        seen.add(spec.task)
        if not has_val(spec.task_options.data):
            col.error(
                line,
                f"select: task {spec.task!r} has no validation split; selection never reads test. Add "
                "`val_fraction` or `val_file` to its data",
            )
        metrics = TASK_TYPES.get(spec.task_options.type).metrics
        if sel.metric not in metrics:
            col.error(line, f"select.metric: task {spec.task!r} reports {', '.join(metrics)}, not {sel.metric!r}")


def expand(suite: Suite) -> list[RunSpec]:
    """Expand the suite's matrix into run specs, validating every combination.

    Rank is a per-method axis: methods without a rank get ``rank=None`` once, and an
    explicit rank on such a method (a block whose methods all ignore rank) is an error.
    """

    col = Collector(suite.file)
    opt_cache: dict[str, Any] = {}
    train_cache: dict[str, Any] = {}
    peft_entries = {n for n, raw in suite.methods.items() if is_peft_entry(raw) and n not in METHODS}
    for name, raw in suite.methods.items():
        if name in METHODS and is_peft_entry(raw):
            col.error(
                key_line(suite.methods, name),
                f"methods.{name}: {name!r} is a curated method with its own options; give the peft_type entry "
                "another name (e.g. my-" + name + ")",
            )
        elif name not in METHODS and not is_peft_entry(raw):
            col.error(
                key_line(suite.methods, name),
                f"methods.{name}: {METHODS.unknown_message(name)}; or define it by peft type: "
                f"{{peft_type: OFT, config: {{...}}}}",
            )
    for name in sorted(peft_entries):
        _method_options(name, suite, col, opt_cache)  # every entry is checked, used or not
    known = set(METHODS.names()) | peft_entries
    sel = suite.select
    target = {"metric": sel.metric, "value": sel.target} if sel is not None and sel.target is not None else None
    usable = {n for n in known if n in METHODS or opt_cache.get(n, MISSING) is not MISSING}
    specs: dict[str, RunSpec] = {}
    matched_rules: set[int] = set()
    bad_combos: set[tuple[Any, ...]] = set()
    for block, line in suite.blocks:
        for m in block.method:
            if m not in known:
                col.error(line, f"matrix: {METHODS.unknown_message(m)}")
        methods = [m for m in block.method if m in usable]
        classes = {m: _method_class(m, _method_options(m, suite, col, opt_cache)) for m in methods}
        if block.rank is not None and methods and not any(classes[m].uses_rank for m in methods):
            col.error(line, f"matrix: `rank` is given but no method here uses one ({', '.join(methods)})")
        models = {m: _resolve_model(m, suite, col, line) for m in block.model}
        tasks = {t: _resolve_task(t, suite, col, line) for t in block.task}
        for r in block.rank or ():
            if r < 1:
                col.error(line, f"matrix.rank: expected ranks >= 1, got {r}")
        for model, method, precision, task in itertools.product(block.model, methods, block.precision, block.task):
            cls = classes[method]
            opts = _method_options(method, suite, col, opt_cache)
            train_cfg = method_train(method, suite, col, train_cache)
            ranks: tuple[int | None, ...] = (block.rank or (cls.resolve_rank(None),)) if cls.uses_rank else (None,)
            reason, rule_hint = cls.invalid_reason(precision), f"{{method: {method}, precision: {precision}}}"
            where = f"{method} at {precision}"
            mtype = _model_type(models[model])
            if not reason and mtype is not None:
                reason = cls.invalid_reason(precision, mtype)
                where = f"{method} at {precision} on {model} (a {mtype} model)"
                rule_hint = f"{{method: {method}, model: {model}, precision: {precision}}}"
            for rank, seed in itertools.product(ranks, suite.seeds):
                point = {
                    "model": model,
                    "method": method,
                    "rank": rank,
                    "precision": precision,
                    "task": task,
                    "seed": seed,
                }
                hit = [i for i, (rule, _) in enumerate(suite.exclude) if _matches(rule, point)]
                matched_rules.update(hit)
                if hit:
                    continue
                if reason:
                    if (where, line) not in bad_combos:
                        bad_combos.add((where, line))
                        col.error(
                            line,
                            f"{where} is invalid: {reason}. Remove it from the matrix or add an exclude rule "
                            f"{rule_hint}",
                        )
                    continue
                if models[model] is None or tasks[task] is None or opts is MISSING or train_cfg is MISSING:
                    continue
                if method in peft_entries and rank != cls.default_rank:
                    from lorabench.methods.peft_type import refusal

                    refused = refusal(opts, rank)
                    if refused and (method, rank, line) not in bad_combos:
                        bad_combos.add((method, rank, line))
                        col.error(line, f"matrix: {method} at rank {rank}: peft refuses it: {refused}")
                    if refused:
                        continue
                refused = _distributed_refusal(suite.execution, precision, train_cfg, method, cls)
                if refused:
                    if (refused, line) not in bad_combos:
                        bad_combos.add((refused, line))
                        col.error(line, refused)
                    continue
                swept = method_lrs(method, suite, col)
                if swept is not None and block.lr is not None:
                    if (method, "lr", line) not in bad_combos:
                        bad_combos.add((method, "lr", line))
                        col.error(line, f"matrix: `lr` is swept here and in methods.{method}.train.lr; give one")
                    continue
                rates = block.lr or swept
                variants = [
                    (
                        m_s,
                        dataclasses.replace(t_s, lr=lr) if rates else t_s,
                        e_s,
                        ("lr",) if rates and len(rates) > 1 else (),
                    )
                    for m_s, t_s, e_s in _optimised_variants(block, models[model], suite, train_cfg)
                    for lr in (rates or (None,))
                ]
                for model_s, train_s, exec_s, sweep in variants:
                    spec = RunSpec(
                        suite=suite.name,
                        model=model_s,
                        method=method,
                        rank=rank,
                        method_options=_stored_options(method, opts),
                        precision=precision,
                        quantization=suite.quantization,
                        task=task,
                        task_options=tasks[task],
                        seed=seed,
                        train=train_s,
                        eval=suite.eval,
                        execution=exec_s,
                        sweep=sweep,
                        target=target,
                    )
                    specs.setdefault(spec.run_id, spec)
    for i, (_rule, line) in enumerate(suite.exclude):
        if i not in matched_rules:
            col.error(line, f"exclude[{i}] matches no point of the matrix (a typo?)")
    _check_select(suite, specs, col)
    if col.issues:
        raise SuiteError(_dedupe(col.issues))
    if not specs:
        raise SuiteError([Issue(suite.file, suite.lines.get("matrix"), "the matrix expands to no runs")])
    return list(specs.values())


def _optimised_variants(
    block: Any, model: ModelSpec, suite: Suite, train_cfg: TrainSettings
) -> list[tuple[ModelSpec, TrainSettings, ExecutionSettings]]:
    """(model, train, execution) settings for each optimised-path combination of a block.

    A block's ``compile``/``attn_implementation``/``loss`` axes override the suite-wide
    settings. When a block lists an axis, the model's display name gets a tag per
    non-default value (``tiny-gpt2+compile+sdpa``), so labels and leaderboard rows
    stay distinct; the spec itself carries the setting, so run_ids differ as well.
    """
    compiles = block.compile or (suite.execution.compile,)
    attns = block.attn_implementation or (model.attn_implementation,)
    losses = block.loss or (train_cfg.loss,)
    out = []
    for comp, attn, loss in itertools.product(compiles, attns, losses):
        tags = []
        if block.compile and comp:
            tags.append("compile")
        if block.attn_implementation:
            tags.append(str(attn))
        if block.loss and loss != "default":
            tags.append(f"{loss}-ce")
        name = "+".join([model.name, *tags]) if tags else model.name
        out.append(
            (
                dataclasses.replace(model, attn_implementation=attn, name=name),
                dataclasses.replace(train_cfg, loss=loss),
                dataclasses.replace(suite.execution, compile=comp),
            )
        )
    return out


def _distributed_refusal(
    execution: ExecutionSettings, precision: str, train: TrainSettings, method: str, cls: Any
) -> str | None:
    """Why this point cannot run as ``execution.processes`` ranks, or None.

    FSDP shards every parameter as a flat tensor of one dtype; bitsandbytes' k-bit
    weights are packed bytes (nf4/fp4 in uint8 unless ``bnb_4bit_quant_storage`` equals
    the compute dtype, int8 with per-row scales beside them), which lorabench does not
    load that way: refused here rather than failing inside the run.
    """
    n = execution.processes
    if n == 1:
        return None
    if train.batch_size % n:
        return (
            f"train.batch_size ({train.batch_size}) is the global batch and must split evenly over "
            f"execution.processes ({n})"
        )
    if train.loss == "chunked":
        return (
            "train.loss: chunked calls the model's backbone and head directly, past DDP's and FSDP's forward; "
            f"use train.loss: default or liger with execution.processes ({n})"
        )
    if cls.task_forward is not Method.task_forward:
        return (
            f"{method} computes its loss past the model's own forward (and so past DDP's and FSDP's); "
            f"it runs with execution.processes: 1 only"
        )
    if execution.strategy == "fsdp" and precision in QUANTIZED:
        return (
            f"{precision} under execution.strategy: fsdp is refused: FSDP shards parameters of one dtype, and "
            "lorabench loads bitsandbytes' k-bit weights packed as bytes (quant_storage is not the compute "
            "dtype); use strategy: ddp, or processes: 1"
        )
    return None


def _matches(rule: Any, point: dict[str, Any]) -> bool:
    for axis in ("model", "method", "task", "precision", "rank", "seed"):
        allowed = getattr(rule, axis)
        if allowed is not None and point[axis] not in allowed:
            return False
    return True


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen, out = set(), []
    for i in issues:
        if (i.line, i.message) not in seen:
            seen.add((i.line, i.message))
            out.append(i)
    return out
