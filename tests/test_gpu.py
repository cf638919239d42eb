"""GPU paths, run for real where a CUDA device exists (skipped elsewhere, including CI)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_TRAIN, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_cuda_run_records_allocator_and_nvml_peaks(tmp_path) -> None:
    suite = tmp_path / "gpu.yaml"
    suite.write_text(
        """
name: gpu
matrix:
  - {model: [builtin:tiny-gpt2], method: [full], precision: [bf16], task: [synthetic-lm]}
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [4], precision: [fp32, int8, nf4], task: [synthetic-lm]}
"""
        + TINY_TRAIN.replace("threads: 2", "device: cuda")
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in (out / "runs").glob("*/record.json"):
        rec = json.loads(path.read_text())
        mem = rec["profile"]["memory_mb"]["train"]
        assert rec["env"]["device"] == "cuda" and rec["env"]["device_name"]
        assert mem["allocated"] > 0 and mem["reserved"] >= mem["allocated"]
        # NVML per-process usage includes the CUDA context, so it is at least the reserved pool,
        # unless the driver cannot see this PID (then the record says so in its notes).
        if mem["nvml"] is not None:
            assert mem["nvml"] >= mem["reserved"]
        else:
            assert any("NVML" in n for n in rec["profile"]["notes"])
