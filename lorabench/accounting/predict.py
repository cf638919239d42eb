"""A run's memory prediction: the traced training step for its spec, the analytic model if that fails.

The run stores it beside what it measured (``profile.predicted_peak_bytes``), and
preflight's GPU memory check (``lorabench validate --gpu-memory``, ``execution.gpu_memory``)
uses it to say which points will not fit before any run starts. The figure is torch's allocator view,
what ``torch.cuda.max_memory_allocated`` reports: the CUDA context is left out.

A prediction never fails a run: where the step cannot be traced (a loss kernel that
replaces the model's, a hand-written built-in model, an op fake tensors cannot follow)
the analytic estimate stands in and the note says why; where neither applies the
prediction is null, with the reason.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lorabench.accounting.estimate import estimate_model
from lorabench.accounting.trace import Untraceable, trace_model
from lorabench.vocab import HeadType, MiB

# A run traces its step only where the measurement can confirm it: on a CPU the measured
# figure is host RSS, and the trace (2-6 s per tiny built-in run under load, nearly all
# fake-tensor dispatch) would be a large share of a seconds-long smoke run; the analytic
# model takes ~0.1 s.
TRACE_SKIPPED = (
    "not traced on {device}: the measured figure there is host RSS, which no allocator prediction can confirm"
)


@dataclass
class Prediction:
    """What a run's spec is predicted to allocate at its peak (None: no model applies, see ``notes``)."""

    peak_bytes: int | None
    method: str | None  # "trace" | "analytic"
    seconds: float
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """The prediction must not move the run's random streams (seeded before it)."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def spec_estimate_args(
    spec: Any, family: str, device: str, compute_dtype: str | None, method_opts: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments ``estimate_model``/``trace_model`` share for a run's spec.

    One place, so the run's recorded estimate and its prediction describe the same configuration.
    """
    tm = spec.model.target_modules
    args = (spec.model.path, spec.method, spec.precision, spec.train.batch_size, spec.train.max_seq_len)
    kw: dict[str, Any] = dict(
        rank=spec.rank,
        target_modules=list(tm) if tm else None,
        grad_checkpointing=spec.train.grad_checkpointing,
        optimizer=spec.train.optimizer,
        attn=spec.model.attn_implementation,
        device=device,
        compute_dtype=compute_dtype,
        prepare_kbit=spec.quantization.prepare_kbit,
        double_quant=spec.quantization.double_quant,
        task_type=HeadType.of(family).value,
        method_opts=method_opts,
        loss=spec.train.loss,
    )
    return args, kw


def predict_spec(
    spec: Any, family: str, device: str, compute_dtype: str | None = None, trace: bool = True
) -> Prediction:
    """Trace ``spec``'s training step on fake tensors (analytic fallback, or analytic only); never raises."""
    t0 = time.perf_counter()
    args, kw = spec_estimate_args(spec, family, device, compute_dtype, spec.method_options)
    notes: list[str] = []
    processes = spec.execution.processes
    with _rng_kept():
        try:
            if not trace:
                raise Untraceable(TRACE_SKIPPED.format(device=device))
            if processes > 1:
                raise Untraceable(f"not traced: the trace follows one process, this run is {processes} ranks")
            est = trace_model(*args, **kw, eval_batch_size=spec.eval.batch_size, max_grad_norm=spec.train.max_grad_norm)
        except Untraceable as exc:
            notes.append(f"memory prediction is analytic: {exc}")
        except Exception as exc:  # a prediction is a figure beside the run, never its failure
            notes.append(f"memory prediction is analytic: the trace failed ({type(exc).__name__}: {exc})")
        else:
            return Prediction(est.allocated_bytes, "trace", round(time.perf_counter() - t0, 3), notes)
        try:
            est = estimate_model(*args, **kw, processes=processes, strategy=spec.execution.strategy)
        except Exception as exc:  # the analytic model covers transformers configs only
            notes.append(f"no memory prediction: {type(exc).__name__}: {exc}")
            return Prediction(None, None, round(time.perf_counter() - t0, 3), notes)
    return Prediction(est.allocated_bytes, "analytic", round(time.perf_counter() - t0, 3), notes)


def measured_peak_bytes(memory_mb: dict[str, Any]) -> int | None:
    """The measured figure the prediction is for: torch's allocated peak over training and evaluation.

    ``memory_mb`` maps phases to ``record_data.PhaseMemory``. The load phase is left out:
    it holds what loading alone allocates (a k-bit base's unquantised copy), which the
    prediction does not cover.
    """
    peaks = [getattr(memory_mb.get(phase), "allocated", None) for phase in ("train", "eval")]
    peaks = [p for p in peaks if isinstance(p, (int, float))]
    return round(max(peaks) * MiB) if peaks else None


def profile_fields(pred: Prediction, memory_mb: dict[str, Any], device: str) -> tuple[dict[str, Any], list[str]]:
    """The record's prediction fields (``predicted_peak_bytes``, its method, measured/predicted) and notes."""
    notes = list(pred.notes)
    ratio = None
    if pred.peak_bytes:
        measured = measured_peak_bytes(memory_mb) if device == "cuda" else None
        if device != "cuda":
            notes.append(
                f"memory prediction not compared: on {device} the measured figure is host RSS, which the "
                "allocator prediction does not model (no measured/predicted ratio)"
            )
        elif measured:
            ratio = round(measured / pred.peak_bytes, 4)
    return {
        "predicted_peak_bytes": pred.peak_bytes,
        "predicted_method": pred.method,
        "measured_over_predicted": ratio,
        "predict_s": pred.seconds,
    }, notes
