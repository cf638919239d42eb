"""nf4 on CPUs with AVX512-BF16: bitsandbytes' packed eval path, forced on any CPU.

bitsandbytes decides per ``Linear4bit`` (``has_avx512bf16()`` read in ``__init__``) whether
eval-mode forwards repack the weight; patching that function to return True reproduces,
on any CPU, what ``make bench`` does on AMD Zen 4 or a recent Xeon.
"""

from __future__ import annotations

import math

import pytest
import torch

from lorabench.models.bnb_cpu import PACKED_FLAG, packing_compatible
from tests.conftest import TINY_TRAIN


@pytest.fixture
def packed_path_forced(monkeypatch):
    """Make every Linear4bit built from now on believe the CPU has AVX512-BF16."""
    from bitsandbytes.nn import modules

    monkeypatch.setattr(modules, "has_avx512bf16", lambda: True)


def _linear4bit(in_features: int, out_features: int):
    import bitsandbytes as bnb

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(in_features, out_features, bias=False, quant_type="nf4", compute_dtype=torch.float32)
    layer.weight = bnb.nn.Params4bit(
        torch.randn(out_features, in_features) * 0.05, requires_grad=False, quant_type="nf4"
    )
    return layer.to("cpu")  # quantises


@pytest.mark.parametrize(("k", "n"), [(96, 288), (96, 96), (128, 64), (384, 96)])
def test_packing_compatible_matches_bitsandbytes_conversion(packed_path_forced, k: int, n: int) -> None:
    """The shape rule in lorabench.models.bnb_cpu is the one bitsandbytes' repacking enforces."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    layer = _linear4bit(k, n)
    assert getattr(layer, PACKED_FLAG) is True  # the patch really selects the packed path
    state = layer.weight.quant_state
    if packing_compatible(k, n, state.blocksize):
        packed, _ = _convert_weight_packed_for_cpu(layer.weight.data, state)
        assert packed.shape == (n, k // 2)
    else:
        with pytest.raises((RuntimeError, AssertionError)):
            _convert_weight_packed_for_cpu(layer.weight.data, state)


def _logits(precision: str) -> torch.Tensor:
    from lorabench.models.loading import load_model
    from lorabench.suite.schema import ModelDef, QuantSettings

    net, _, info = load_model(
        ModelDef(path="builtin:tiny-gpt2"), "causal-lm", precision, QuantSettings(double_quant=True), "cpu"
    )
    assert precision == "fp32" or info["quantized_layers"] > 0
    net.eval()
    ids = torch.arange(4, 4 + 2 * 24).reshape(2, 24) % net.config.vocab_size
    with torch.no_grad():
        return net(ids).logits


def test_nf4_eval_logits_equal_with_and_without_packed_path(monkeypatch) -> None:
    """Still quantised, and bit-for-bit the numbers a CPU without AVX512-BF16 computes."""
    unpacked = _logits("nf4")
    from bitsandbytes.nn import modules

    monkeypatch.setattr(modules, "has_avx512bf16", lambda: True)
    forced = _logits("nf4")
    torch.testing.assert_close(forced, unpacked, rtol=0, atol=0)
    # and nf4 is not silently the full-precision model
    assert not torch.allclose(_logits("fp32"), unpacked)


@pytest.mark.slow
def test_nf4_train_and_eval_through_pipeline_with_packed_path(packed_path_forced, tmp_path) -> None:
    """The smoke suite's lora@nf4 run, end to end in this process, with the packed path forced."""
    from lorabench.plan import expand
    from lorabench.run.pipeline import run_point
    from lorabench.validate import parse_suite

    text = (
        """
name: nf4-packed
matrix:
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [8], precision: [nf4], task: [synthetic-lm]}
"""
        + TINY_TRAIN
    )
    (spec,) = expand(parse_suite(text, "nf4-packed.yaml"))
    out = run_point(spec, tmp_path)
    assert out["resolved"]["bnb_cpu_packing_disabled"] == out["resolved"]["quantized_layers"] > 0
    assert math.isfinite(out["metrics"]["perplexity"])
    assert out["profile"]["train_steps"] == 6


@pytest.mark.slow
def test_nf4_run_through_cli_with_packed_path_forced_in_every_process(tmp_path) -> None:
    """As ``make bench`` on an AVX512-BF16 CPU: driver, forkserver and run all take the packed path."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    force = tmp_path / "force"
    force.mkdir()
    # Imported at start-up by every interpreter this run starts. It patches bitsandbytes only
    # when a process imports it, so the forkserver stays free of it (its preload check).
    (force / "sitecustomize.py").write_text(
        "import importlib.abc, importlib.machinery, sys\n"
        "class _Force(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name != 'bitsandbytes.nn.modules':\n"
        "            return None\n"
        "        spec = importlib.machinery.PathFinder.find_spec(name, path)\n"
        "        run = spec.loader.exec_module\n"
        "        def exec_module(module):\n"
        "            run(module)\n"
        "            module.has_avx512bf16 = lambda: True\n"
        "        spec.loader.exec_module = exec_module\n"
        "        return spec\n"
        "sys.meta_path.insert(0, _Force())\n"
    )
    suite = tmp_path / "nf4.yaml"
    suite.write_text(
        """
name: nf4-packed
matrix:
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [8], precision: [nf4], task: [synthetic-lm]}
"""
        + TINY_TRAIN
    )
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(force), str(REPO), env["PYTHONPATH"]])
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "lorabench", "run", str(suite), "--out", str(out), "--no-progress", "--strict"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert record["status"] == "success"
    assert record["resolved"]["bnb_cpu_packing_disabled"] == record["resolved"]["quantized_layers"] > 0
