"""GPU paths, run for real where a CUDA device exists (skipped elsewhere, including CI).

The suite and the record checks are plain functions, and the CPU tests at the bottom run
them (on a CPU suite of the same shape), so the GPU test cannot rot unseen: only the
device changes between them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

# Every task family, and on the causal LM every precision: full bf16, LoRA bf16/fp16,
# LoRA@int8, QLoRA (nf4 + double quantisation, bf16 compute).
GPU_MATRIX = """
  - {model: [builtin:tiny-gpt2], method: [full], precision: [bf16], task: [synthetic-lm]}
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [8], precision: [bf16, fp16, int8, nf4], task: [synthetic-lm]}
  - {model: [tiny-bert], method: [lora], rank: [8], precision: [bf16, nf4], task: [synthetic-sentiment]}
  - {model: [builtin:tiny-t5], method: [lora], rank: [8], precision: [bf16], task: [synthetic-dialogsum]}
"""
CPU_MATRIX = """
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [8], precision: [bf16, nf4], task: [synthetic-lm]}
"""
AMP = {"bf16": "bfloat16", "fp16": "float16", "int8": "bfloat16", "nf4": "bfloat16", "fp32": None}


def suite_text(device: str, matrix: str) -> str:
    """A tiny suite through every path in ``matrix`` on ``device`` (k-bit: bf16 compute, double quant)."""
    return f"""
name: gpu-paths
models:
  tiny-bert: {{path: builtin:tiny-bert, target_modules: [query, value]}}
matrix:{matrix}
quantization: {{compute_dtype: bf16, double_quant: true}}
train: {{steps: 6, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 2}}
eval: {{batch_size: 16, max_batches: 2, generation: {{max_new_tokens: 8}}}}
execution: {{device: {device}, threads: 2, timeout_s: 600}}
"""


def record_problems(rec: dict[str, Any], run_dir: Path) -> list[str]:
    """Everything wrong with a successful run's record, for the device it names (empty if none)."""
    problems: list[str] = []
    label = rec.get("label")
    if rec["status"] != "success":
        return [f"{label}: status {rec['status']}: {rec.get('error')}"]
    env, spec, resolved = rec["env"], rec["spec"], rec["resolved"]
    device = env.get("device")
    if not env.get("device_name"):
        problems.append(f"{label}: no device name")
    if device == "cuda":
        for key in ("cuda", "cudnn", "cuda_driver", "device_count"):
            if env.get(key) in (None, "", 0):
                problems.append(f"{label}: env.{key} is {env.get(key)!r}")
    for phase, mem in rec["profile"]["memory_mb"].items():
        alloc, reserved, nvml = mem.get("allocated"), mem.get("reserved"), mem.get("nvml")
        if device != "cuda":
            continue
        if alloc is None or reserved is None or not 0 < alloc <= reserved:
            problems.append(f"{label}: {phase}: allocated {alloc} <= reserved {reserved} does not hold")
        # NVML per-process usage includes the CUDA context, so it is at least the reserved pool,
        # unless the driver cannot see this PID (then the record says so in its notes).
        if nvml is None:
            if not any("NVML" in n for n in rec["profile"]["notes"]):
                problems.append(f"{label}: {phase}: nvml is null and no note says why")
        elif reserved is not None and nvml < reserved:
            problems.append(f"{label}: {phase}: nvml {nvml} < reserved {reserved}")
    prof = rec["profile"]
    if device == "cuda" and prof.get("predicted_method") != "trace":
        problems.append(f"{label}: memory prediction is {prof.get('predicted_method')!r}, not traced: {prof['notes']}")
    ratio = prof.get("measured_over_predicted")
    if device == "cuda" and not (ratio and 0.5 <= ratio <= 2.0):
        problems.append(f"{label}: measured/predicted memory {ratio!r} (the prediction is off by over 2x)")
    want_amp = AMP[spec["precision"]]
    if spec["precision"] in ("int8", "nf4") and spec["quantization"].get("compute_dtype") != "bf16":
        want_amp = resolved.get("amp_dtype")
    if resolved.get("amp_dtype") != want_amp:
        problems.append(f"{label}: amp_dtype {resolved.get('amp_dtype')!r}, expected {want_amp!r}")
    if spec["precision"] in ("int8", "nf4") and not resolved.get("quantized_layers"):
        problems.append(f"{label}: no quantised layer recorded")
    if spec["precision"] == "nf4" and spec["quantization"].get("double_quant") is not True:
        problems.append(f"{label}: nf4 without double quantisation")
    adapter = run_dir / "adapter"
    if not adapter.is_dir() or not any(adapter.iterdir()):
        problems.append(f"{label}: no adapter saved in {adapter}")
    if not all(math.isfinite(v) for v in rec["metrics"].values() if isinstance(v, float)):
        problems.append(f"{label}: non-finite metric {rec['metrics']}")
    return problems


def reload_and_evaluate(rec: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """Rebuild the fine-tuned model from the base and the saved adapter, and evaluate it again."""
    import torch

    from lorabench.models.loading import is_encoder_decoder, load_model
    from lorabench.run.pipeline import RunContext, amp_dtype, prepare_base, seed_everything
    from lorabench.spec import RunSpec
    from lorabench.tasks import TASK_TYPES
    from lorabench.tasks.cache import prepare_cached

    spec = RunSpec.from_dict(rec["spec"])
    device = rec["resolved"]["device"]
    seed_everything(spec.seed)
    task = TASK_TYPES.get(spec.task_options.type)(spec.task, spec.task_options)
    family = task.resolve_family(lambda: is_encoder_decoder(spec.model))
    base, tokenizer, info = load_model(
        spec.model, family, spec.precision, spec.quantization, device, task.model_kwargs()
    )
    data = prepare_cached(task, tokenizer, spec.train.max_seq_len)
    method = spec.method_cls()
    model = method.load(
        prepare_base(base, spec), spec.method_context(task.family, info["model_type"]), run_dir / "adapter"
    )
    model.eval()
    ctx = RunContext(device=device, amp_dtype=amp_dtype(spec, device), seed=spec.seed)
    with torch.no_grad():
        return task.evaluate(model, tokenizer, data, spec.eval, ctx).metrics


def run_and_check(tmp_path: Path, device: str, matrix: str, rel_tol: float) -> list[dict[str, Any]]:
    """Run the suite through the real CLI, check every record, reload every adapter."""
    suite = tmp_path / "gpu.yaml"
    suite.write_text(suite_text(device, matrix))
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = []
    for path in sorted((out / "runs").glob("*/record.json")):
        rec = json.loads(path.read_text())
        assert record_problems(rec, path.parent) == []
        again = reload_and_evaluate(rec, path.parent)
        for name, value in rec["metrics"].items():
            assert math.isclose(again[name], value, rel_tol=rel_tol, abs_tol=1e-6), (rec["label"], name)
        records.append(rec)
    return records


@pytest.mark.gpu
@pytest.mark.slow
def test_every_family_and_precision_on_cuda(tmp_path) -> None:
    records = run_and_check(tmp_path, "cuda", GPU_MATRIX, rel_tol=1e-2)
    assert len(records) == 8
    assert {r["spec"]["precision"] for r in records} == {"bf16", "fp16", "int8", "nf4"}


# CPU: the same suite builder, record checks and adapter reload, on what a CPU can run.


def test_gpu_suite_validates() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "gpu.yaml"
        suite.write_text(suite_text("cuda", GPU_MATRIX))
        proc = run_cli("validate", str(suite))
    assert proc.returncode == 0, proc.stderr
    assert "8 runs" in proc.stdout


@pytest.mark.parametrize("name", ["gpu_llama1b", "gpu_llama7b", "gpu_falcon7b"])
def test_shipped_gpu_suites_validate(name: str) -> None:
    proc = run_cli("validate", f"suites/{name}.yaml")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_record_checks_and_adapter_reload_on_cpu(tmp_path) -> None:
    records = run_and_check(tmp_path, "cpu", CPU_MATRIX, rel_tol=1e-6)
    assert {r["resolved"]["amp_dtype"] for r in records} == {"bfloat16"}
    # and the checks do catch a bad record
    bad = json.loads(json.dumps(records[0]))
    bad["env"]["device"], bad["env"]["cuda"] = "cuda", None
    bad["profile"]["memory_mb"]["train"].update(allocated=10.0, reserved=5.0, nvml=None)
    bad["profile"]["notes"] = []
    bad["resolved"]["amp_dtype"] = None
    problems = " | ".join(record_problems(bad, tmp_path / "nowhere"))
    for expected in (
        "env.cuda",
        "allocated 10.0 <= reserved 5.0",
        "no note says why",
        "amp_dtype",
        "no adapter",
        "not traced",
    ):
        assert expected in problems


def test_gpu_bench_script_usage_and_stage_bookkeeping(tmp_path) -> None:
    """scripts/gpu_bench.sh (what a GPU machine runs) checks its arguments and logs every stage, on CPU too."""
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    env = {**cli_env(), "PY": sys.executable}
    usage = subprocess.run(["bash", "scripts/gpu_bench.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "Stages" in usage.stderr
    out = tmp_path / "gpu"
    proc = subprocess.run(
        ["bash", "scripts/gpu_bench.sh", str(out), "env", "no-such-stage"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = [line.split("\t") for line in (out / "stages.tsv").read_text().splitlines()]
    assert [(r[0], r[1]) for r in rows] == [("env", "0"), ("no-such-stage", "2")]
    env_json = json.loads((out / "env.json").read_text())
    assert env_json["torch"] and env_json["transformers"] and env_json["peft"]
    assert "unknown stage 'no-such-stage'" in (out / "logs" / "no-such-stage.log").read_text()
