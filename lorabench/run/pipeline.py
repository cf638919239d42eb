"""One run, start to finish, as named steps, profiled phase by phase.

:func:`run_point` reads as the run: :func:`load_model` → :func:`build_data` →
:func:`apply_method` (the *load* phase) → :func:`train` (the *train* phase) →
:func:`evaluate` (the *eval* phase) → :func:`save`. Each phase is one
``with monitor.track()`` block, so its peaks are its own.

Runs inside the isolated child process. It returns plain data (the profile as
``record_data.Profile.to_dict()``); the driver alone writes ``record.json`` and ``predictions.jsonl``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lorabench.accounting.counting import count_parameters
from lorabench.accounting.predict import predict_spec
from lorabench.accounting.predict import profile_fields as prediction_fields
from lorabench.data.sources import describe
from lorabench.data.sources import has_val as data_has_val
from lorabench.errors import UsageError
from lorabench.methods.base import Method, MethodContext
from lorabench.methods.prepare import enable_grad_checkpointing, prepare_kbit, upcast_trainable
from lorabench.models import loading
from lorabench.models.loading import DTYPES, ModelLoadError, compute_dtype, is_encoder_decoder
from lorabench.preflight import positions_error
from lorabench.provenance import run_environment
from lorabench.quality import Target, time_to_target
from lorabench.record_data import Distributed, PhaseMemory, Profile, RankMemory
from lorabench.run.distributed import World, merge_memory, whole_state
from lorabench.run.energy import EnergyMeter
from lorabench.run.perf import apply_liger, chunked_ce_forward, compile_model, estimate_for_spec, flops_profile
from lorabench.run.profile import HostCPU, MemoryMonitor, Stopwatch, dir_bytes
from lorabench.run.train import TrainStats, check_finite, total_steps
from lorabench.run.train import train as train_loop
from lorabench.sanity import compute_flags
from lorabench.spec import RunSpec
from lorabench.tasks import TASK_TYPES, forgetting
from lorabench.tasks.base import EvalResult, Task, TaskData
from lorabench.tasks.cache import prepare_cached, tokenizer_fingerprint
from lorabench.vocab import QUANTIZED, TaskFamily, resolve_device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) with the spec's seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.cuda.manual_seed_all(seed)


@dataclass
class RunContext:
    """Device, precision and seed as the training loop and tasks see them."""

    device: str
    amp_dtype: torch.dtype | None
    seed: int

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.amp_dtype)

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def amp_dtype(spec: RunSpec, device: str) -> torch.dtype | None:
    """Autocast dtype: the precision itself for bf16/fp16, the compute dtype for k-bit bases."""
    name = spec.precision if spec.precision in ("bf16", "fp16") else None
    if spec.precision in QUANTIZED:
        cd = compute_dtype(spec.quantization, device)
        name = cd if cd != "fp32" else None
    return getattr(torch, DTYPES[name]) if name else None


def run_point(spec: RunSpec, run_dir: Path, world: World | None = None) -> dict[str, Any]:
    """Execute one run; returns metrics, profile, curves and predictions as plain data.

    With ``world`` this process is one rank of ``execution.processes`` (``run/distributed.py``):
    every rank runs these same steps, the model wrapped by DDP or sharded by FSDP2, and
    what it returns is rank 0's, holding every rank's peak memory.
    """
    if spec.execution.threads:
        torch.set_num_threads(spec.execution.threads)
    device = resolve_device(spec.execution.device)
    seed_everything(spec.seed)
    monitor = MemoryMonitor(device, spec.execution.memory_sample_s)
    task = TASK_TYPES.get(spec.task_options.type)(spec.task, spec.task_options)
    method = spec.method_cls()
    has_val = data_has_val(spec.task_options.data)
    ctx = RunContext(device=device, amp_dtype=amp_dtype(spec, device), seed=spec.seed)
    try:
        with monitor.track() as load:
            model, tokenizer, info = load_model(spec, task, device)
            data = build_data(spec, task, tokenizer)
            reference = forgetting_base(spec, task, model, tokenizer, info, ctx)
            mctx = spec.method_context(task.family, info["model_type"], total_steps(spec.train, len(data.train)))
            model = apply_method(spec, method, model, mctx)
            trainable, total = count_parameters(model)  # before FSDP turns parameters into shards
            trained = world.wrap(model) if world is not None else model
        # Between the phases, so neither's time or peaks include it; fake tensors allocate nothing.
        prediction = predict_spec(spec, mctx.task_family, device, info.get("compute_dtype"), trace=device == "cuda")
        with monitor.track() as training:
            host = HostCPU()
            meter = EnergyMeter(device)
            stats = train(spec, task, method, model, tokenizer, data, ctx, meter, trained, world)
        host_train = host.finish()
        with monitor.track() as evaluation:
            result, eval_s = evaluate(spec, task, model, tokenizer, data, ctx)
            if reference is not None:
                reference = forgetting_after(spec, task, model, tokenizer, ctx, reference)
                result.metrics[f"forgetting_{reference['measure']}"] = reference["change"]
        check_finite(result.metrics)
        val_result, val_eval_s = None, None
        if has_val:  # the validation score model selection reads (the final score above is on test)
            val_result, val_eval_s = evaluate(spec, task, model, tokenizer, data.split("val"), ctx)
            check_finite(val_result.metrics)
        adapter_bytes = save(method, model, run_dir, spec.execution.keep_adapter, world)
    finally:
        monitor.close()
    env = run_environment(device)
    memory_mb = {name: p.memory for name, p in (("load", load), ("train", training), ("eval", evaluation))}
    ranks: Distributed | None = None
    if world is not None:
        ranks = _ranks_profile(world, memory_mb, spec)
        merged = merge_memory([{k: m.to_dict() for k, m in r.memory_mb.items()} for r in ranks.per_rank])
        memory_mb = {phase: PhaseMemory.from_dict(m) for phase, m in merged.items()}
    perf, perf_notes = _performance(model, spec, mctx, task, info, stats, device, ctx, env)
    flags, sanity = compute_flags(spec.task_options.type, stats.curve, result.predictions)
    predicted, predict_notes = prediction_fields(prediction, memory_mb, device)
    profile = Profile(
        trainable_params=trainable,
        total_params=total,
        trainable_pct=100.0 * trainable / total if total else None,
        param_convention="peft get_nb_trainable_parameters (tied once; Params4bit x2 x itemsize)",
        tokens_per_s=stats.tokens_per_s,
        samples_per_s=stats.samples_per_s,
        train_s=stats.train_s,
        timed_s=stats.timed_s,
        timed_steps=stats.timed_steps,
        step_s=[round(t, 6) for t in stats.step_s],
        timed_tokens=stats.tokens,
        train_steps=stats.steps,
        eval_s=eval_s,
        **({"val_eval_s": val_eval_s} if has_val else {}),
        periodic_eval_s=stats.eval_s,
        eval_tokens=result.tokens,
        load_s=load.seconds,
        adapter_bytes=adapter_bytes,
        memory_mb=memory_mb,
        **({"distributed": ranks} if ranks is not None else {}),
        host_cpu_train=host_train,
        energy=meter.describe(stats.energy_j),
        **perf,
        notes=monitor.notes + perf_notes + predict_notes,
        **({"forgetting_s": reference["seconds"]} if reference is not None else {}),
        **({"time_to_target": timed} if (timed := _time_to_target(spec, stats.eval_curve)) else {}),
        **predicted,
    )
    return {
        "metrics": result.metrics,
        **({"val_metrics": val_result.metrics} if val_result is not None else {}),
        "profile": profile.to_dict(),  # plain data across the process boundary
        "resolved": {
            **info,
            "device": device,
            "amp_dtype": str(ctx.amp_dtype).removeprefix("torch.") if ctx.amp_dtype else None,
            "seed_applied": spec.seed,
            "method": method.resolved(model, mctx),
            "data": data.info,
            "eval": result.info,
            "compile": spec.execution.compile,
            "attn_implementation": _attn_used(model, info),
            "loss_kernel": info.get("loss_kernel", "model default"),
            "sanity": sanity,
            "splits": splits(has_val, bool(stats.eval_curve)),
            **({"forgetting": {k: v for k, v in reference.items() if k != "seconds"}} if reference else {}),
        },
        "flags": flags,
        "curves": {
            "train_loss": stats.curve,  # the task loss, for every method
            **({"eval": stats.eval_curve} if stats.eval_curve else {}),
            **({"regularisers": stats.regularisers} if stats.regularisers else {}),
        },
        "predictions": result.predictions,
        "env": env,
    }


# --- the steps ------------------------------------------------------------------------


def load_model(spec: RunSpec, task: Task, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, info): the base model, checked against the task and the sequence lengths.

    The loss kernel is patched in here, before the method wraps the model.
    """
    family = task.resolve_family(lambda: is_encoder_decoder(spec.model))  # summarisation: seq2seq or decoder-only
    model, tokenizer, info = loading.load_model(
        spec.model, family, spec.precision, spec.quantization, device, task.model_kwargs()
    )
    task.check_model(model)
    too_long = positions_error(spec, model.config.to_dict())  # hub models not cached at validate time
    if too_long:
        raise ModelLoadError(too_long)
    if spec.train.loss == "liger":
        info["loss_kernel"] = apply_liger(model, device)
    elif spec.train.loss == "chunked":
        if task.family != TaskFamily.CAUSAL_LM:
            raise UsageError(f"train.loss: chunked is for causal-LM tasks; {spec.task!r} is {task.family}")
        info["loss_kernel"] = "chunked cross-entropy (plain torch, output head checkpointed per chunk)"
    return model, tokenizer, info


def build_data(spec: RunSpec, task: Task, tokenizer: Any) -> TaskData:
    """The task's tokenised examples: built once per data set and tokenizer, then read from disk."""
    return prepare_cached(task, tokenizer, spec.train.max_seq_len)


def apply_method(spec: RunSpec, method: Method, model: Any, mctx: MethodContext) -> Any:
    """The model with exactly the method's parameters trainable, in fp32, checkpointed if asked."""
    model = prepare_base(model, spec)
    model = method.apply(model, mctx)
    upcast_trainable(model)
    if spec.train.grad_checkpointing:
        enable_grad_checkpointing(model)
    return model


def train(
    spec: RunSpec,
    task: Task,
    method: Method,
    model: Any,
    tokenizer: Any,
    data: TaskData,
    ctx: RunContext,
    energy: EnergyMeter | None = None,
    trained: Any = None,
    world: World | None = None,
) -> TrainStats:
    """The training loop (``run/train.py``), with periodic evaluation and the method's per-step hook.

    ``trained`` is the module the loop calls (DDP's wrapper; otherwise ``model``):
    evaluation, the method's hook and saving use ``model`` itself.
    """
    trained = model if trained is None else trained

    # Periodic evaluation reads validation where the task has it, so choosing by the curve never sees test.
    curve_data = data.split("val") if data.val is not None else data

    def periodic_eval() -> dict[str, float]:
        return task.evaluate(model, tokenizer, curve_data, spec.eval, ctx).metrics

    return train_loop(
        compile_model(trained) if spec.execution.compile else trained,  # the original stays for saving
        task,
        data.train,
        tokenizer,
        spec.train,
        ctx,
        after_step=lambda step: method.after_step(model, step),
        evaluate=periodic_eval,
        eval_every=spec.eval.every,
        # The task loss; a method's regularisers (AdaLoRA's) are added, and logged, by the loop.
        forward=chunked_ce_forward(model) if spec.train.loss == "chunked" else method.task_forward(model),
        regularisers=(lambda: method.regularisers(model)) if method.regularisers(model) else None,
        energy=energy,
        world=world,
    )


def evaluate(
    spec: RunSpec, task: Task, model: Any, tokenizer: Any, data: TaskData, ctx: RunContext
) -> tuple[EvalResult, float]:
    """(the final evaluation, its wall seconds, device-synchronised)."""
    model.eval()
    with Stopwatch(ctx.sync) as sw:
        result = task.evaluate(model, tokenizer, data, spec.eval, ctx)
    return result, sw.seconds


def forgetting_base(
    spec: RunSpec, task: Task, model: Any, tokenizer: Any, info: dict[str, Any], ctx: RunContext
) -> dict[str, Any] | None:
    """The base model's score on the task's forgetting reference (cached per model and reference), or None.

    Measured before the method touches the model, so it is the base as loaded (at the
    run's precision: a quantised run is compared with its quantised base).
    """
    options = forgetting.reference_of(spec.task_options)
    if options is None:
        return None
    name = forgetting.measure_name(task.family)
    where = describe(options.data, "eval")
    key = forgetting.base_key(spec, task.family, info.get("resolved_path"), tokenizer_fingerprint(tokenizer))

    def compute() -> float:
        return forgetting.measure(
            model, tokenizer, task.family, options, spec.task, spec.train.max_seq_len, spec.eval, ctx
        )

    with Stopwatch(ctx.sync) as sw:
        base, cache = forgetting.base_score(key, name, compute, where)
    return {"measure": name, "reference": where, "base": base, "base_cache": cache, "key": key, "seconds": sw.seconds}


def forgetting_after(
    spec: RunSpec, task: Task, model: Any, tokenizer: Any, ctx: RunContext, reference: dict[str, Any]
) -> dict[str, Any]:
    """``reference`` completed with the fine-tuned model's score and the change (positive: forgot)."""
    options = forgetting.reference_of(spec.task_options)
    assert options is not None  # forgetting_base found one
    with Stopwatch(ctx.sync) as sw:
        after = forgetting.measure(
            model, tokenizer, task.family, options, spec.task, spec.train.max_seq_len, spec.eval, ctx
        )
    change = forgetting.change(task.family, reference["base"], after)
    return {**reference, "after": after, "change": change, "seconds": reference["seconds"] + sw.seconds}


def save(method: Method, model: Any, run_dir: Path, keep: bool, world: World | None = None) -> int | None:
    """Save what reproduces the fine-tune to ``run_dir/adapter``; its size in bytes (removed unless ``keep``).

    Of several ranks, rank 0 alone saves (None elsewhere); FSDP's shards are gathered
    into whole tensors for it first, by every rank.
    """
    if world is not None:
        with whole_state(model, world):
            return save(method, model, run_dir, keep) if world.is_main else None
    adapter_dir = run_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    method.save(model, adapter_dir)
    adapter_bytes = dir_bytes(str(adapter_dir))
    if not keep:
        shutil.rmtree(adapter_dir, ignore_errors=True)
    return adapter_bytes


# --- helpers ---------------------------------------------------------------------------


def _time_to_target(spec: RunSpec, curve: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's cost until its eval curve reached the suite's ``select.target``; None without one or a curve."""
    if spec.target is None or not curve:
        return None
    return time_to_target(curve, Target(spec.target["metric"], float(spec.target["value"])))


def splits(has_val: bool, has_curve: bool) -> dict[str, str]:
    """Which data split each of the record's quality figures was measured on.

    ``metrics`` is always the test split. With a validation split, ``val_metrics`` and
    the periodic ``curves.eval`` are on it (model selection reads only those); without
    one, ``curves.eval`` is on test, as before validation splits existed.
    """
    out = {"metrics": "test"}
    if has_val:
        out["val_metrics"] = "validation"
    if has_curve:
        out["curves.eval"] = "validation" if has_val else "test"
    return out


def _performance(
    model: Any,
    spec: RunSpec,
    mctx: MethodContext,
    task: Any,
    info: dict[str, Any],
    stats: Any,
    device: str,
    ctx: RunContext,
    env: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """FLOPs per token, MFU and the memory estimate; a failure here is a note, never a failed run."""
    config = getattr(model, "config", None)
    config_d = config.to_dict() if hasattr(config, "to_dict") else None
    try:
        # MFU is per device: each rank's share of the run's tokens/s against one device's peak.
        per_device = stats.tokens_per_s / spec.execution.processes if stats.tokens_per_s else None
        out, notes = flops_profile(
            model,
            config_d,
            spec.train.max_seq_len,
            spec.train.grad_checkpointing,
            per_device,
            device,
            env.get("device_name"),
            ctx.amp_dtype in (torch.bfloat16, torch.float16),
            spec.execution.peak_tflops,
        )
    except Exception as exc:  # a model shape the FLOPs model does not know: say so, keep the run
        out, notes = {"model_flops_per_token": None, "mfu": None}, [f"FLOPs not computed: {exc!r}"]
    try:
        out["estimate_bytes"] = estimate_for_spec(spec, mctx.options, task.family, device, info.get("compute_dtype"))
    except Exception as exc:  # the estimator covers transformers configs only
        out["estimate_bytes"] = None
        notes.append(f"memory estimate unavailable: {type(exc).__name__}: {exc}")
    return out, notes


def _ranks_profile(world: World, memory_mb: dict[str, PhaseMemory], spec: RunSpec) -> Distributed:
    """``profile.distributed``: world size, strategy, backend and every rank's peak memory (MiB)."""
    mine = {"rank": world.rank, "pid": os.getpid(), "memory_mb": {k: m.to_dict() for k, m in memory_mb.items()}}
    return Distributed(
        world_size=world.size,
        strategy=world.strategy,
        backend=world.backend,
        batch_per_rank=spec.train.batch_size // world.size,
        per_rank=[RankMemory.from_dict(r) for r in world.gather(mine)],
    )


def _attn_used(model: Any, info: dict[str, Any]) -> str | None:
    """The attention kernel transformers resolved for the model (its default when the suite gave none)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) or info.get("attn_implementation")


def prepare_base(model: Any, spec: RunSpec) -> Any:
    """peft's k-bit preparation for quantised bases, when the suite asks for it."""
    if spec.precision in QUANTIZED and spec.quantization.prepare_kbit:
        return prepare_kbit(model, spec.train.grad_checkpointing)
    return model
