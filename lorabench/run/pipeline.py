"""One run, start to finish: load model → apply method → train → evaluate, profiled.

Runs inside the isolated child process. It returns plain data; the driver alone
writes ``record.json`` and ``predictions.jsonl``.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lorabench.accounting.counting import count_parameters
from lorabench.data.cache import prepare_cached
from lorabench.errors import UsageError
from lorabench.methods import method_class
from lorabench.methods.base import MethodContext
from lorabench.models.loading import DTYPES, ModelLoadError, compute_dtype, load_model
from lorabench.plan import RunSpec
from lorabench.preflight import positions_error
from lorabench.provenance import run_environment
from lorabench.run.perf import apply_liger, chunked_ce_forward, compile_model, estimate_for_spec, flops_profile
from lorabench.run.profile import HostCPU, MemoryMonitor, Stopwatch, dir_bytes
from lorabench.run.train import check_finite, total_steps, train
from lorabench.sanity import compute_flags
from lorabench.tasks import TASK_TYPES
from lorabench.vocab import QUANTIZED, resolve_device


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


def run_point(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """Execute one run; returns metrics, profile, curves and predictions as plain data."""
    ex = spec.execution
    if ex.get("threads"):
        torch.set_num_threads(ex["threads"])
    device = resolve_device(ex["device"])
    seed_everything(spec.seed)
    monitor = MemoryMonitor(device, ex.get("memory_sample_s", 0.02))
    task = TASK_TYPES.get(spec.task_options["type"])(spec.task, spec.task_options)
    method = method_class(spec.method, spec.method_options)()
    ctx = RunContext(device=device, amp_dtype=amp_dtype(spec, device), seed=spec.seed)
    try:
        monitor.start_phase()
        t_load = time.perf_counter()
        family = task.resolve_family(spec.model)  # e.g. summarisation: seq2seq or decoder-only
        model, tokenizer, info = load_model(
            spec.model, family, spec.precision, spec.quantization, device, task.model_kwargs()
        )
        task.check_model(model)
        too_long = positions_error(spec, model.config.to_dict())  # hub models not cached at validate time
        if too_long:
            raise ModelLoadError(too_long)
        if spec.train.get("loss", "default") == "liger":
            info["loss_kernel"] = apply_liger(model, device)  # before the method wraps the model
        elif spec.train.get("loss", "default") == "chunked":
            if task.family != "causal-lm":
                raise UsageError(f"train.loss: chunked is for causal-LM tasks; {spec.task!r} is {task.family}")
            info["loss_kernel"] = "chunked cross-entropy (plain torch, output head checkpointed per chunk)"
        data = prepare_cached(task, tokenizer, spec.train)  # tokenised once per data set, then from disk
        mctx = _method_context(spec, task, info, total_steps(spec.train, len(data.train)))
        model = prepare_base(model, spec)
        model = method.apply(model, mctx)
        upcast_trainable(model)
        if spec.train["grad_checkpointing"]:
            enable_grad_checkpointing(model)
        trainable, total = count_parameters(model)
        load_s = time.perf_counter() - t_load
        mem_load = monitor.end_phase()

        def periodic_eval() -> dict[str, float]:
            return task.evaluate(model, tokenizer, data, spec.eval, ctx).metrics

        train_model = compile_model(model) if ex.get("compile") else model
        monitor.start_phase()
        host = HostCPU()
        stats = train(
            train_model,
            task,
            data.train,
            tokenizer,
            spec.train,
            ctx,
            after_step=lambda step: method.after_step(model, step),
            evaluate=periodic_eval,
            eval_every=spec.eval.get("every"),
            forward=chunked_ce_forward(model) if spec.train.get("loss") == "chunked" else None,
        )
        mem_train = monitor.end_phase()
        host_train = host.finish()

        monitor.start_phase()
        model.eval()
        with Stopwatch(ctx.sync) as sw:
            result = task.evaluate(model, tokenizer, data, spec.eval, ctx)
        mem_eval = monitor.end_phase()
        check_finite(result.metrics)

        adapter_dir = run_dir / "adapter"
        shutil.rmtree(adapter_dir, ignore_errors=True)
        method.save(model, adapter_dir)
        adapter_bytes = dir_bytes(str(adapter_dir))
        if not ex.get("keep_adapter", True):
            shutil.rmtree(adapter_dir, ignore_errors=True)
    finally:
        monitor.close()
    env = run_environment(device)
    perf, perf_notes = _performance(model, spec, mctx, task, info, stats, device, ctx, env)
    flags, sanity = compute_flags(spec.task_options["type"], stats.curve, result.predictions)
    profile = {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100.0 * trainable / total if total else None,
        "param_convention": "peft get_nb_trainable_parameters (tied once; Params4bit x2 x itemsize)",
        "tokens_per_s": stats.tokens_per_s,
        "samples_per_s": stats.samples_per_s,
        "train_s": stats.train_s,
        "timed_s": stats.timed_s,
        "timed_steps": stats.timed_steps,
        "step_s": [round(t, 6) for t in stats.step_s],
        "timed_tokens": stats.tokens,
        "train_steps": stats.steps,
        "eval_s": sw.seconds,
        "periodic_eval_s": stats.eval_s,
        "eval_tokens": result.tokens,
        "load_s": load_s,
        "adapter_bytes": adapter_bytes,
        "memory_mb": {"load": mem_load, "train": mem_train, "eval": mem_eval},
        "host_cpu_train": host_train,
        **perf,
        "notes": monitor.notes + perf_notes,
    }
    return {
        "metrics": result.metrics,
        "profile": profile,
        "resolved": {
            **info,
            "device": device,
            "amp_dtype": str(ctx.amp_dtype).removeprefix("torch.") if ctx.amp_dtype else None,
            "seed_applied": spec.seed,
            "method": method.resolved(model, mctx),
            "data": data.info,
            "eval": result.info,
            "compile": bool(ex.get("compile")),
            "attn_implementation": _attn_used(model, info),
            "loss_kernel": info.get("loss_kernel", "model default"),
            "sanity": sanity,
        },
        "flags": flags,
        "curves": {"train_loss": stats.curve, **({"eval": stats.eval_curve} if stats.eval_curve else {})},
        "predictions": result.predictions,
        "env": env,
    }


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
        out, notes = flops_profile(
            model,
            config_d,
            spec.train["max_seq_len"],
            bool(spec.train["grad_checkpointing"]),
            stats.tokens_per_s,
            device,
            env.get("device_name"),
            ctx.amp_dtype in (torch.bfloat16, torch.float16),
            spec.execution.get("peak_tflops"),
        )
    except Exception as exc:  # a model shape the FLOPs model does not know: say so, keep the run
        out, notes = {"model_flops_per_token": None, "mfu": None}, [f"FLOPs not computed: {exc!r}"]
    try:
        out["estimate_bytes"] = estimate_for_spec(spec, mctx.options, task.family, device, info.get("compute_dtype"))
    except Exception as exc:  # the estimator covers transformers configs only
        out["estimate_bytes"] = None
        notes.append(f"memory estimate unavailable: {type(exc).__name__}: {exc}")
    return out, notes


def _attn_used(model: Any, info: dict[str, Any]) -> str | None:
    """The attention kernel transformers resolved for the model (its default when the suite gave none)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) or info.get("attn_implementation")


def _method_context(spec: RunSpec, task: Any, info: dict[str, Any], train_steps: int | None = None) -> MethodContext:
    from lorabench.suite.typed import Collector, build

    cls = method_class(spec.method, spec.method_options)
    col = Collector("<spec>")
    options = build(cls.Options, spec.method_options, col, "method_options")
    if col.issues:  # the plan validated these options; failing here is a lorabench bug, said plainly
        raise ValueError("; ".join(i.message for i in col.issues))
    tm = spec.model.get("target_modules")
    return MethodContext(
        rank=spec.rank,
        options=options,
        task_family=task.family,
        precision=spec.precision,
        model_type=info["model_type"],
        target_modules=tuple(tm) if tm else None,
        train_steps=train_steps,
    )


def prepare_base(model: Any, spec: RunSpec) -> Any:
    """peft's k-bit preparation for quantised bases, when the suite asks for it."""
    if spec.precision in QUANTIZED and spec.quantization.get("prepare_kbit", True):
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(spec.train["grad_checkpointing"]))
    return model


def upcast_trainable(model: Any) -> None:
    """Keep trainable parameters in fp32 (master weights) whatever the base dtype."""
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()


def enable_grad_checkpointing(model: Any) -> None:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
