"""A run's memory prediction (profile.predicted_peak_bytes) and the planner's fit check.

The prediction is a figure beside the run, never its failure: traced where a CUDA
allocator will measure, analytic where it will not (CPU: host RSS) or where the step
cannot be traced, null with the reason where no model applies.
"""

from __future__ import annotations

import json

import pytest

from lorabench.accounting.predict import measured_peak_bytes, predict_spec, profile_fields
from lorabench.plan import expand
from lorabench.validate import parse_suite
from lorabench.vocab import MiB

SUITE = """
matrix:
  - model: [builtin:tiny-gpt2]
    method: [lora]
    rank: [8]
    precision: [fp32]
    task: [synthetic-lm]
train: {{steps: 4, batch_size: 4, max_seq_len: 32, loss: {loss}}}
eval: {{batch_size: 8}}
"""


def _spec(loss: str = "default"):
    (spec,) = expand(parse_suite(SUITE.format(loss=loss), "p.yaml"))
    return spec


def test_a_cuda_run_is_traced_and_a_cpu_run_is_analytic_with_the_reason() -> None:
    spec = _spec()
    traced = predict_spec(spec, "causal-lm", "cuda")
    assert traced.method == "trace" and traced.peak_bytes > 0 and traced.notes == []
    cpu = predict_spec(spec, "causal-lm", "cpu", trace=False)
    assert cpu.method == "analytic" and cpu.peak_bytes > 0
    assert any("not traced on cpu" in n for n in cpu.notes)
    # A loss kernel the trace cannot follow: the analytic figure, and why.
    chunked = predict_spec(_spec("chunked"), "causal-lm", "cuda")
    assert chunked.method == "analytic" and any("is not traced" in n for n in chunked.notes)


def test_the_prediction_does_not_move_the_runs_random_streams() -> None:
    import random

    import numpy as np
    import torch

    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    predict_spec(_spec(), "causal-lm", "cuda")
    after = (torch.rand(1).item(), random.random(), np.random.rand())
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    assert after == (torch.rand(1).item(), random.random(), np.random.rand())


def test_a_prediction_that_cannot_be_made_is_null_with_the_reason(monkeypatch) -> None:
    import lorabench.accounting.predict as predict_mod

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("no such op")

    monkeypatch.setattr(predict_mod, "trace_model", boom)
    monkeypatch.setattr(predict_mod, "estimate_model", boom)
    pred = predict_spec(_spec(), "causal-lm", "cuda")
    assert pred.peak_bytes is None and pred.method is None
    assert any("the trace failed (RuntimeError: no such op)" in n for n in pred.notes)
    assert any("no memory prediction" in n for n in pred.notes)


def test_the_ratio_is_measured_over_predicted_on_cuda_only() -> None:
    from lorabench.accounting.predict import Prediction
    from lorabench.record_data import PhaseMemory

    pred = Prediction(peak_bytes=1000 * MiB, method="trace", seconds=0.5)
    mem = {
        "load": PhaseMemory(rss=900.0, allocated=5000.0),  # loading's unquantised copy: not what is predicted
        "train": PhaseMemory(rss=900.0, allocated=1100.0),
        "eval": PhaseMemory(rss=900.0, allocated=400.0),
    }
    assert measured_peak_bytes(mem) == 1100 * MiB
    fields, notes = profile_fields(pred, mem, "cuda")
    assert fields == {
        "predicted_peak_bytes": 1000 * MiB,
        "predicted_method": "trace",
        "measured_over_predicted": 1.1,
        "predict_s": 0.5,
    }
    assert notes == []
    cpu = {k: PhaseMemory(rss=900.0, allocated=None) for k in mem}
    fields, notes = profile_fields(pred, cpu, "cpu")
    assert fields["measured_over_predicted"] is None and fields["predicted_peak_bytes"] == 1000 * MiB
    assert any("host RSS" in n for n in notes)


def test_the_leaderboard_shows_measured_vs_predicted_where_a_device_measured() -> None:
    from lorabench.report.leaderboard import leaderboard
    from tests.test_gate import make_record, typed

    def profile(allocated: float | None, ratio: float | None) -> dict:
        return {
            "trainable_params": 8762,
            "total_params": 286780,
            "tokens_per_s": 100.0,
            "memory_mb": {"train": {"rss": 420.0, "allocated": allocated, "reserved": allocated}},
            "predicted_peak_bytes": 1000 * MiB,
            "predicted_method": "trace",
            "measured_over_predicted": ratio,
        }

    metrics = {"perplexity": 5.0, "token_accuracy": 0.4, "eval_loss": 1.6}
    _, gpu = leaderboard(typed([make_record("lora", metrics, profile=profile(1100.0, 1.1))]))
    assert "predicted MiB" in gpu and "measured/predicted" in gpu
    row = next(line for line in gpu.splitlines() if line.startswith("| m "))
    assert "1,000" in row and "1.100" in row
    _, cpu = leaderboard(typed([make_record("lora", metrics, profile=profile(None, None))]))
    assert "predicted MiB" not in cpu  # beside host RSS a prediction of the allocator compares unlike things


# --- the planner: execution.gpu_memory, validate --gpu-memory, predicted_oom rows ----------
PLANNED = """
name: planned
matrix:
  - {{model: [builtin:tiny-gpt2], method: [lora], rank: [4], task: [synthetic-lm]}}
seeds: [0, 1]
train: {{steps: 4, batch_size: 4, max_seq_len: 32, warmup_steps: 1}}
eval: {{batch_size: 8, max_batches: 1}}
execution: {{{execution}}}
"""


def test_gpu_memory_settings_are_checked_and_stay_out_of_run_ids() -> None:
    import pytest

    from lorabench.errors import SuiteError

    plain = expand(parse_suite(PLANNED.format(execution="threads: 2"), "s.yaml"))
    planned = expand(
        parse_suite(PLANNED.format(execution="threads: 2, gpu_memory: A100-40GB, skip_predicted_oom: true"), "s.yaml")
    )
    assert [s.run_id for s in plain] == [s.run_id for s in planned]
    assert planned[0].execution.gpu_memory == "A100-40GB"
    for bad, message in [
        ("gpu_memory: lots", "neither a size"),
        ("skip_predicted_oom: true", "needs `gpu_memory`"),
        ("device: cpu, gpu_memory: 24GiB", "`device` is cpu"),
    ]:
        with pytest.raises(SuiteError, match=message) as info:
            parse_suite(PLANNED.format(execution=bad), "s.yaml")
        assert "s.yaml:" in str(info.value)


def test_points_predicted_not_to_fit_are_rows_or_warnings_never_dropped(tmp_path, monkeypatch, capsys) -> None:
    """Mixed verdicts: the one that does not fit is a predicted_oom record when skipping, a warning otherwise."""
    import lorabench.preflight as preflight
    from lorabench.bench import _plan_memory
    from lorabench.record import read_record

    text = PLANNED.format(execution="gpu_memory: 24GiB, skip_predicted_oom: true")
    specs = expand(parse_suite(text, "s.yaml"))

    def verdicts(planned, gpu_memory=None):
        big, small = 30 * 2**30, 2**30
        return [
            preflight.FitVerdict(s.run_id, s.label, big if s.seed == 0 else small, "trace", s.seed != 0)
            for s in planned
        ]

    monkeypatch.setattr(preflight, "plan_fits", verdicts)
    recorded, todo = _plan_memory(specs, tmp_path)
    assert recorded == 1 and [s.seed for s in todo] == [1]
    rec = read_record(tmp_path / specs[0].run_id / "record.json")
    assert rec.status == "predicted_oom" and "gpu_memory 24GiB" in rec.error and "not run" in rec.error
    assert rec.profile.predicted_peak_bytes == 30 * 2**30 and rec.profile.predicted_method == "trace"
    assert "predicted_oom" in capsys.readouterr().err
    # Without skip_predicted_oom the point runs, and the warning says why it was not skipped.
    runs = expand(parse_suite(PLANNED.format(execution="gpu_memory: 24GiB"), "s.yaml"))
    recorded, todo = _plan_memory(runs, tmp_path / "other")
    assert recorded == 0 and len(todo) == 2
    assert "skip_predicted_oom is false" in capsys.readouterr().err


@pytest.mark.slow
def test_validate_marks_and_run_records_the_points_that_do_not_fit(write_suite, tmp_path) -> None:
    """500 MiB cannot hold even the CUDA context: every point is predicted_oom, none runs, all are rows."""
    from tests.conftest import run_cli

    path = write_suite(PLANNED.format(execution="threads: 2"))
    out = run_cli("validate", str(path), "--gpu-memory", "500MiB")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("OOM  tiny-gpt2/lora-r4") == 2 and "2 of 2 runs predicted not to fit" in out.stdout
    bad = run_cli("validate", str(path), "--gpu-memory", "lots")
    assert bad.returncode == 2 and "neither a size" in bad.stderr and "Traceback" not in bad.stderr
    path = write_suite(PLANNED.format(execution="threads: 2, gpu_memory: 500MiB, skip_predicted_oom: true"))
    res = run_cli("run", str(path), "--out", str(tmp_path / "out"), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*/record.json")]
    assert [r["status"] for r in records] == ["predicted_oom"] * 2
    assert not any((tmp_path / "out" / "runs" / r["run_id"] / "log.txt").exists() for r in records)  # no process
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "predicted_oom" in board
