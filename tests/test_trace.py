"""The traced memory estimate: fake tensors must allocate what the real step allocates.

``AllocationCounter`` counts every storage the ops create. Run once on fake tensors and
once on real CPU tensors, the same build and the same steps must give the same peak:
the fake kernels report the shapes and dtypes the real ones produce, so any difference
means the trace stopped following the step (a kernel whose fake allocates differently,
an op that escaped the counter). Equality is exact: both runs round every storage to the
same 512-byte blocks and free at the same points (CPython frees on the last reference).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import transformers

from lorabench.accounting.estimate import estimate_model
from lorabench.accounting.params import method_options, read_config
from lorabench.accounting.trace import (
    AllocationCounter,
    TraceConfig,
    module_group,
    round_block,
    trace_model,
    trace_training,
)
from lorabench.methods import METHODS
from lorabench.methods.base import MethodContext
from tests.conftest import run_cli

# A GPT-2-shaped model small enough to run for real on a CPU in a second.
SMALL_GPT2 = {
    "model_type": "gpt2",
    "architectures": ["GPT2LMHeadModel"],
    "n_layer": 2,
    "n_embd": 128,
    "n_head": 4,
    "n_positions": 256,
    "vocab_size": 1000,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}


@pytest.fixture(scope="module")
def small_gpt2(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("small-gpt2")
    (path / "config.json").write_text(json.dumps(SMALL_GPT2))
    return str(path)


def _trace(path: str, method: str, precision: str, fake: bool, **kw: object) -> int:
    config, raw = read_config(path)
    cls = METHODS.get(method)
    opts = method_options(cls, None, None)
    if cls.uses_rank:
        opts = dataclasses.replace(
            opts, dropout=0.0
        )  # dropout masks are random-sized on neither path, but keep it plain
    ctx = MethodContext(
        rank=8 if cls.uses_rank else None,
        options=opts,
        task_family="causal-lm",
        precision=precision,
        model_type=config.model_type,
        target_modules=None,
    )
    cfg = TraceConfig(precision=precision, batch_size=2, seq_len=32, **{"device": "cpu", **kw})
    result, _ = trace_training(transformers.AutoModelForCausalLM, config, raw, "causal-lm", cls, ctx, cfg, fake=fake)
    assert result.peak_bytes > 0
    return result.peak_bytes


CASES = [
    ("small-gpt2", "full", "fp32", {}),
    ("small-gpt2", "lora", "fp32", {}),
    ("small-gpt2", "full", "bf16", {"device": "cuda"}),  # the GPU emulation (autocast policy, foreach AdamW)
    ("small-gpt2", "lora", "bf16", {"grad_checkpointing": True}),
    ("small-gpt2", "lora", "bf16", {"grad_checkpointing": True, "device": "cuda"}),
    ("tiny-gpt2", "lora", "fp32", {}),
]
# With gradient checkpointing under CPU autocast the real step holds 4 fewer 512-byte blocks
# than the fake one (2 KiB of a 2 MiB peak, in the forward pass; not yet explained). Every
# other case is exact.
CHECKPOINT_TOLERANCE = 0.005


@pytest.mark.parametrize(("model", "method", "precision", "kw"), CASES)
def test_fake_trace_equals_the_real_step(small_gpt2: str, model: str, method: str, precision: str, kw: dict) -> None:
    from lorabench.accounting.estimate import _config_dir

    path = small_gpt2 if model == "small-gpt2" else _config_dir("builtin:tiny-gpt2")
    torch.manual_seed(0)
    fake = _trace(path, method, precision, fake=True, **kw)
    real = _trace(path, method, precision, fake=False, **kw)
    if kw.get("grad_checkpointing"):
        assert abs(fake - real) <= CHECKPOINT_TOLERANCE * real
    else:
        assert fake == real


# The analytic model is checked against the traced CPU step: its terms are written for a
# GPU run (no CPU-only kernels' workspaces), so on CPU it sits within this margin.
ANALYTIC_MARGIN = 0.25


@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_analytic_model_sits_within_its_margin_of_the_trace(small_gpt2: str, method: str) -> None:
    kw = dict(rank=8 if method == "lora" else None, device="cpu")
    traced = trace_model(small_gpt2, method, "fp32", 2, 32, **kw)
    analytic = estimate_model(small_gpt2, method, "fp32", 2, 32, **kw)
    assert traced.method == "trace" and analytic.method == "analytic"
    assert abs(analytic.allocated_bytes - traced.allocated_bytes) <= ANALYTIC_MARGIN * traced.allocated_bytes


def test_counter_rounds_to_blocks_and_frees() -> None:
    counter = AllocationCounter("cpu")
    with counter:
        a = torch.empty(10)  # 40 bytes -> one 512-byte block
        b = torch.empty(200)  # 800 bytes -> two blocks
        assert counter.now == 512 + 1024
        del a
        assert counter.now == 1024
        c = b.view(10, 20)  # a view allocates nothing
        assert counter.now == 1024
        del b, c
    assert counter.now == 0 and counter.peak == 1536
    assert round_block(1) == 512 and round_block(512) == 512 and round_block(513) == 1024
    assert module_group("base_model.model.model.layers.3.mlp") == "model.layers.*"
    assert module_group("lm_head") == "lm_head"


@pytest.mark.slow
def test_estimate_trace_cli_prints_both_and_json_says_which(small_gpt2: str) -> None:
    common = ["--method", "lora", "--precision", "bf16", "--batch-size", "2", "--seq-len", "32", "--trace"]
    out = run_cli("estimate", small_gpt2, *common)
    assert out.returncode == 0, out.stderr
    assert "analytic" in out.stdout and "traced (live at the peak" in out.stdout
    js = run_cli("estimate", small_gpt2, *common, "--json")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data["method"] == "trace" and data["analytic"]["method"] == "analytic"
    assert data["peak_bytes"] > data["allocated_bytes"] > 0  # the CUDA context is on top
    assert {"parameters", "activations"} <= set(data["breakdown"])
    untraceable = run_cli("estimate", small_gpt2, *common, "--loss", "chunked", "--json")
    assert untraceable.returncode == 0, untraceable.stderr
    data = json.loads(untraceable.stdout)
    assert data["method"] == "analytic" and any("not traced" in n for n in data["notes"])


def test_seventy_b_traces(tmp_path: Path) -> None:
    """The 70B llama shape (80 layers) traces: nothing is allocated for real."""
    cfg = json.loads((Path(__file__).parents[1] / "lorabench/models/configs/llama-7b/config.json").read_text())
    cfg.update(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=2, num_attention_heads=64, num_key_value_heads=8
    )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    est = trace_model(str(tmp_path), "lora", "nf4", 1, 128)
    assert est.allocated_bytes > 0 and est.breakdown.get("quantisation_constants", 0) > 0


# --- the H100 measurements -----------------------------------------------------
# Peak torch.cuda.max_memory_allocated over a whole run, measured on an NVIDIA H100 (torch
# 2.11+cu130, transformers 5.17, peft 0.21.0, bitsandbytes 0.50.2) and reported in issue
# 15: config:llama-1b's architecture with GPT-2's 50,257-token vocabulary, weights: random,
# batch 8 x 512, AdamW, sdpa, 25 steps then eval at batch 8; LoRA r16, alpha 32, no
# dropout, on all seven projections; k-bit runs with bf16 compute, double quantisation
# and prepare_kbit.
MEASURED_H100_MIB = {
    ("full", "bf16"): 27_244,
    ("lora", "bf16"): 13_046,
    ("lora", "int8"): 22_481,
    ("lora", "nf4"): 14_837,
}
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# LoRA on int8 traced 17% low (18,543 MiB) until the trace kept `loss` alive as the run's
# loop does: bitsandbytes' MatMul8bitLt holds each layer's input as a ctx attribute, released
# with the graph when the next forward's loss is assigned (+3.7 GiB at this shape).


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "precision"),
    [
        ("full", "bf16"),
        ("lora", "bf16"),
        ("lora", "int8"),
        ("lora", "nf4"),
    ],
)
def test_trace_matches_the_h100_measurements(tmp_path: Path, method: str, precision: str) -> None:
    from lorabench.models.configs import config_dir

    cfg = json.loads((Path(config_dir("llama-1b")) / "config.json").read_text())
    cfg["vocab_size"] = 50_257
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    opts = None
    if method == "lora":
        opts = METHODS.get("lora").Options(alpha=32, dropout=0.0, target_modules=PROJECTIONS)
    est = trace_model(
        str(tmp_path),
        method,
        precision,
        8,
        512,
        rank=16 if method == "lora" else None,
        method_opts=opts,
        target_modules=list(PROJECTIONS) if opts else None,
    )
    measured = MEASURED_H100_MIB[(method, precision)] * 2**20
    error = (est.allocated_bytes - measured) / measured
    assert abs(error) <= 0.05, f"traced {est.allocated_bytes / 2**20:,.0f} MiB, measured {measured / 2**20:,.0f}"


# --- lorabench fit ----------------------------------------------------------------------
def test_parse_memory_and_cards() -> None:
    from lorabench.accounting.fit import gpu_memory, parse_memory, parse_methods
    from lorabench.errors import UsageError

    assert parse_memory("24GiB") == parse_memory("24GB") == 24 * 2**30
    assert parse_memory("40960MiB") == 40 * 2**30
    assert gpu_memory("a100-40gb") == 40960 * 2**20
    assert parse_methods("full,lora@nf4") == [("full", "bf16"), ("lora", "nf4")]
    for bad in (lambda: parse_memory("lots"), lambda: gpu_memory("GTX-9999"), lambda: parse_methods("lora@int3")):
        with pytest.raises(UsageError):
            bad()


@pytest.mark.slow
def test_fit_finds_the_largest_batch_that_fits(small_gpt2: str) -> None:
    from lorabench.accounting.fit import fits, parse_memory

    budget = "600MiB"
    out = run_cli("fit", small_gpt2, "--gpu-memory", budget, "--seq-len", "32", "--methods", "lora", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["method"], r["precision"], r["grad_checkpointing"]) for r in rows] == [
        ("lora", "bf16", False),
        ("lora", "bf16", True),
    ]
    row = rows[0]
    assert row["fits"] and row["max_batch_size"] > 1 and row["rank"] == 8
    assert row["peak_bytes"] <= parse_memory(budget)
    # One more sample does not fit (the bisection's answer is the largest).
    above = trace_model(
        small_gpt2, "lora", "bf16", row["max_batch_size"] + 1, 32, eval_batch_size=row["max_batch_size"] + 1
    )
    assert not fits(above.allocated_bytes, parse_memory(budget))
    human = run_cli("fit", small_gpt2, "--gpu", "L4", "--seq-len", "32", "--methods", "full")
    assert human.returncode == 0, human.stderr
    assert "max batch" in human.stdout and "card: 22.5 GiB" in human.stdout
    bad = run_cli("fit", small_gpt2, "--gpu", "GTX-9999", "--seq-len", "32")
    assert bad.returncode == 2 and "unknown GPU" in bad.stderr and "Traceback" not in bad.stderr


# --- the shapes the issue names -----------------------------------------------------------
T5_XXL = {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": True,
    "tie_word_embeddings": False,
    "dropout_rate": 0.1,
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "eos_token_id": 1,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "method", "precision"),
    [("config:falcon-7b", "lora", "nf4"), ("t5-xxl", "lora", "bf16"), ("config:llama-7b", "lora", "int8")],
)
def test_named_shapes_trace_and_compare(tmp_path: Path, model: str, method: str, precision: str) -> None:
    """Falcon-7B, T5-XXL (encoder-decoder, extended over both stacks) and llama-7B at int8 trace end to end."""
    from lorabench.accounting.trace import compare

    if model == "t5-xxl":
        (tmp_path / "config.json").write_text(json.dumps(T5_XXL))
        model = str(tmp_path)
    traced = trace_model(model, method, precision, 1, 128)
    analytic = estimate_model(model, method, precision, 1, 128)
    rows, _flags = compare(analytic, traced)
    static = rows[0]
    # The weights (with quantisation constants and adapters) are counted, not modelled, by
    # both: they must agree closely whatever the activation terms do.
    assert abs(static["analytic"] - static["trace"]) <= 0.02 * static["trace"]
    assert traced.allocated_bytes > static["trace"]
    assert any("extended linearly" in n for n in traced.notes)


@pytest.mark.slow
def test_analytic_int8_is_within_ten_percent_of_the_trace(tmp_path: Path) -> None:
    """The analytic model's int8 terms (bnb's saved inputs and matmul buffers) come from the trace."""
    from lorabench.models.configs import config_dir

    cfg = json.loads((Path(config_dir("llama-1b")) / "config.json").read_text())
    cfg["vocab_size"] = 50_257
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    opts = METHODS.get("lora").Options(alpha=32, dropout=0.0, target_modules=PROJECTIONS)
    kw = dict(rank=16, method_opts=opts, target_modules=list(PROJECTIONS))
    traced = trace_model(str(tmp_path), "lora", "int8", 8, 512, **kw)
    analytic = estimate_model(str(tmp_path), "lora", "int8", 8, 512, **kw)
    assert analytic.breakdown["int8_matmul_buffers"] > 0
    assert abs(analytic.allocated_bytes - traced.allocated_bytes) <= 0.10 * traced.allocated_bytes


def test_a_step_fake_tensors_cannot_follow_is_untraceable_not_a_crash(small_gpt2: str, monkeypatch) -> None:
    """estimate --trace falls back to the analytic figure on this (with the reason), never a traceback."""
    import lorabench.accounting.trace as trace_mod

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("aten._local_scalar_dense: data-dependent\nmore")

    monkeypatch.setattr(trace_mod, "trace_training", boom)
    with pytest.raises(trace_mod.Untraceable, match=r"RuntimeError: aten\._local_scalar_dense: data-dependent\)"):
        trace_model(small_gpt2, "lora", "bf16", 1, 8)


@pytest.mark.slow
def test_lora_dropout_is_in_the_analytic_model(tmp_path: Path) -> None:
    """LoRA's dropout adds its masks and dropped copies: the analytic term follows the trace's difference."""
    from lorabench.models.configs import config_dir

    cfg = json.loads((Path(config_dir("llama-1b")) / "config.json").read_text())
    cfg.update(vocab_size=50_257, num_hidden_layers=2)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    figures = {}
    for dropout in (0.0, 0.1):
        opts = METHODS.get("lora").Options(alpha=32, dropout=dropout, target_modules=PROJECTIONS)
        kw = dict(rank=16, method_opts=opts, target_modules=list(PROJECTIONS))
        traced = trace_model(str(tmp_path), "lora", "bf16", 4, 256, **kw)
        analytic = estimate_model(str(tmp_path), "lora", "bf16", 4, 256, **kw)
        figures[dropout] = (traced.allocated_bytes, analytic.allocated_bytes, analytic.breakdown.get("adapter_dropout"))
    assert figures[0.0][2] is None and figures[0.1][2] > 0
    traced_diff = figures[0.1][0] - figures[0.0][0]
    analytic_diff = figures[0.1][1] - figures[0.0][1]
    assert traced_diff > 0 and abs(analytic_diff - traced_diff) <= 0.15 * traced_diff, figures
