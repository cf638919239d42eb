"""FLOPs/MFU model, memory estimator terms, and the optimised-path axes, on hand-computable cases."""

from __future__ import annotations

import json
import textwrap

import pytest

from lorabench.accounting.estimate import (
    CUDA_CONTEXT_BYTES,
    Inventory,
    Shape,
    estimate,
    layer_activation_bytes,
    optimizer_bytes,
    weight_bytes,
)
from lorabench.accounting.flops import attention_shape, flops_per_token, mfu, peak_tflops
from lorabench.errors import UsageError
from lorabench.suite.schema import ModelDef
from tests.conftest import run_cli

# --- FLOPs per token -------------------------------------------------------------------


def test_full_finetuning_is_6n_plus_the_attention_term() -> None:
    f = flops_per_token(frozen_matmul=0, trainable_matmul=100, layers=2, d_attn=4, seq_len=8)
    assert f.model == 6 * 100 + 12 * 2 * 4 * 8
    assert f.attention == 12 * 2 * 4 * 8
    assert f.recompute == 0 and f.hardware == f.model


def test_frozen_base_is_4n_and_adapters_6n() -> None:
    f = flops_per_token(frozen_matmul=100, trainable_matmul=10, layers=2, d_attn=4, seq_len=8)
    assert f.forward == 2 * 110 + 4 * 2 * 4 * 8
    assert f.model == 4 * 100 + 6 * 10 + 12 * 2 * 4 * 8


def test_checkpointing_recomputes_the_layers_forward_but_not_the_head() -> None:
    f = flops_per_token(100, 10, 2, 4, 8, grad_checkpointing=True, head_matmul=20)
    assert f.recompute == 2 * (110 - 20) + 4 * 2 * 4 * 8
    assert f.hardware == f.model + f.recompute


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L40", 181.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA A10G", 125.0),
        ("NVIDIA GeForce RTX 4090", 165.0),
        ("Intel(R) Xeon(R) CPU", None),
        (None, None),
    ],
)
def test_peak_table(name: str | None, tflops: float | None) -> None:
    assert peak_tflops(name) == tflops


def test_mfu_and_its_nulls() -> None:
    assert mfu(6e9, 1000.0, 100.0) == pytest.approx(0.06)  # 6e12 FLOP/s of 100e12
    assert mfu(6e9, None, 989.0) is None
    assert mfu(6e9, 1000.0, None) is None


def test_attention_shape_from_configs() -> None:
    assert attention_shape({"n_layer": 12, "n_embd": 768, "n_head": 12}) == (12, 768)
    llama = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "head_dim": 128}
    assert attention_shape(llama) == (32, 4096)
    t5 = {"num_layers": 6, "num_decoder_layers": 6, "d_model": 512, "num_heads": 8, "d_kv": 64, "is_encoder_decoder": 1}
    assert attention_shape(t5) == (18, 512)  # encoder + decoder self- and cross-attention


def test_matmul_params_splits_frozen_and_trainable_weights() -> None:
    import torch

    from lorabench.accounting.flops import matmul_params

    net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    net[1].weight.requires_grad_(False)
    assert matmul_params(net) == (12, 6, 0)  # embeddings and biases do no matmul


# --- memory estimate terms ---------------------------------------------------------------

INV = Inventory(
    quant_numel=64 * 256 * 2, quant_rows=100, quant_tensors=2, other_base=1000, trainable_base=0, adapter=50
)


def test_weights_nf4_with_and_without_double_quant() -> None:
    # 32768 weights: 16384 B packed; 512 blocks of 64 -> 512 B of 8-bit absmax + 2 fp32 constants
    dq = weight_bytes(INV, "nf4", "bf16", prepare_kbit=True, double_quant=True)
    assert dq == {"weights": 16384 + 512 + 2 * 4 + 1000 * 2, "kbit_fp32_upcast": 1000 * 2}
    plain = weight_bytes(INV, "nf4", "bf16", prepare_kbit=False, double_quant=False)
    assert plain == {"weights": 16384 + 512 * 4 + 1000 * 2}


def test_weights_int8_and_16_bit() -> None:
    assert weight_bytes(INV, "int8", "fp32", True, True) == {"weights": 32768 + 4 * 100 + 4000}
    full = Inventory(100, 10, 1, 20, trainable_base=120, adapter=0)
    assert weight_bytes(full, "bf16", "bf16", True, True) == {"weights": 120 * 4}  # trainable weights are fp32
    assert weight_bytes(INV, "bf16", "bf16", True, True) == {"weights": (32768 + 1000) * 2}


def test_optimizer_state() -> None:
    assert optimizer_bytes(1000, "adamw") == 8000
    assert optimizer_bytes(1000, "adamw8bit") == 2 * (1000 + 4 * 4)  # 4 blocks of 256 per moment
    assert optimizer_bytes(1000, "sgd") == 0


SHAPE = Shape(layers=2, hidden=8, intermediate=16, heads=2, kv_width=4, vocab=10, gated_mlp=True)


def test_layer_activations_by_attention_kernel() -> None:
    tokens, seq = 6, 3
    sdpa = layer_activation_bytes(SHAPE, tokens, seq, e=2, attn="sdpa", norms_train=False)
    per_token = 2 * (4 * 8 + 2 * 4) + 8 * 8 + (3 * 2 * 16 + 2 * 16) + 4 * 2
    assert sdpa == per_token * tokens
    eager = layer_activation_bytes(SHAPE, tokens, seq, e=2, attn="eager", norms_train=False)
    assert eager == (per_token - 4 * 2 + 2 * seq * 2) * tokens
    fp32_between = layer_activation_bytes(SHAPE, tokens, seq, e=2, attn="sdpa", norms_train=False, e_io=4)
    assert fp32_between - sdpa == 3 * 2 * 16 * tokens


def test_estimate_adds_up_and_checkpointing_keeps_layer_inputs() -> None:
    inv = Inventory(quant_numel=1000, quant_rows=10, quant_tensors=1, other_base=100, trainable_base=0, adapter=50)
    est = estimate(SHAPE, inv, "bf16", batch_size=2, seq_len=3, device="cuda")
    b = est.breakdown
    layer = layer_activation_bytes(SHAPE, 6, 3, 2, "sdpa", False)
    assert b["activations"] == 2 * layer + 6 * 8 * (2 + 4)
    assert b["logits"] == 6 * 10 * 12
    assert b["gradients"] == 200 and b["optimizer_state"] == 400 and b["adapter"] == 200
    static = b["weights"] + b["adapter"] + b["optimizer_state"]
    assert est.allocated_bytes == static + max(b["activations"] + b["logits"], b["gradients"] + b["optimizer_step"])
    assert est.peak_bytes == est.allocated_bytes + CUDA_CONTEXT_BYTES
    ckpt = estimate(SHAPE, inv, "bf16", batch_size=2, seq_len=3, grad_checkpointing=True, device="cpu")
    assert ckpt.breakdown["activations"] == 2 * 6 * 8 * 2 + layer + 6 * 8 * (2 + 4)
    assert ckpt.peak_bytes == ckpt.allocated_bytes  # no CUDA context on cpu


def test_estimate_rejects_unknown_optimizer() -> None:
    with pytest.raises(UsageError, match="unknown optimizer"):
        estimate(SHAPE, INV, "bf16", 1, 1, optimizer="lion")


def test_estimate_cli_json_matches_the_parameter_count() -> None:
    args = ["builtin:tiny-gpt2", "--method", "lora", "--rank", "8", "--batch-size", "2", "--seq-len", "16"]
    est = run_cli("estimate", *args, "--precision", "fp32", "--device", "cpu", "--json")
    assert est.returncode == 0, est.stderr
    data = json.loads(est.stdout)
    from lorabench.models.loading import resolve_path

    model_dir = resolve_path("builtin:tiny-gpt2")  # `params` takes a directory
    params = run_cli("params", model_dir, "--method", "lora", "--rank", "8", "--json")
    counted = json.loads(params.stdout)
    assert data["breakdown"]["adapter"] == 4 * counted["trainable_params"]
    assert data["breakdown"]["weights"] == 4 * (counted["total_params"] - counted["trainable_params"])
    assert data["peak_bytes"] == data["allocated_bytes"] > data["breakdown"]["weights"]


def test_estimate_cli_usage_errors_exit_2() -> None:
    common = ["--method", "lora", "--precision", "nf4", "--batch-size", "1", "--seq-len", "8"]
    bad = run_cli("estimate", "/nonexistent/model", *common)
    assert bad.returncode == 2 and "/nonexistent/model" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli(
        "estimate", "builtin:tiny-gpt2", "--method", "full", "--precision", "nf4", "--batch-size", "1", "--seq-len", "8"
    )
    assert bad.returncode == 2 and "invalid" in bad.stderr and "Traceback" not in bad.stderr


# --- optimised-path axes -------------------------------------------------------------------


def test_optimised_axes_expand_with_distinct_run_ids_and_names(write_suite) -> None:
    from lorabench.plan import expand
    from lorabench.validate import load_suite

    path = write_suite(
        """
        matrix:
          model: [builtin:tiny-gpt2]
          method: [lora]
          task: [synthetic-lm]
          compile: [false, true]
          attn_implementation: [eager, sdpa]
        train: {steps: 4}
        execution: {peak_tflops: 10.0}
        """
    )
    specs = expand(load_suite(path))
    assert len({s.run_id for s in specs}) == 4
    names = sorted(s.model.name for s in specs)
    assert names == [
        "tiny-gpt2+compile+eager",
        "tiny-gpt2+compile+sdpa",
        "tiny-gpt2+eager",
        "tiny-gpt2+sdpa",
    ]
    assert {(s.execution.compile, s.model.attn_implementation) for s in specs} == {
        (False, "eager"),
        (False, "sdpa"),
        (True, "eager"),
        (True, "sdpa"),
    }


def test_peak_tflops_does_not_change_run_ids(write_suite) -> None:
    from lorabench.plan import expand
    from lorabench.validate import load_suite

    base = "matrix: {model: [builtin:tiny-gpt2], method: [full], task: [synthetic-lm]}\ntrain: {steps: 4}\n"
    a = expand(load_suite(write_suite(base, "a")))[0]
    b = expand(load_suite(write_suite(base + "execution: {peak_tflops: 5}\n", "b")))[0]
    assert a.run_id == b.run_id


def test_bad_axis_values_are_suite_errors(write_suite) -> None:
    path = write_suite(
        """
        matrix:
          model: [builtin:tiny-gpt2]
          method: [lora]
          task: [synthetic-lm]
          attn_implementation: [flash]
        train: {steps: 4, loss: fused}
        """
    )
    res = run_cli("validate", str(path))
    assert res.returncode == 2
    assert "attn_implementation" in res.stderr and "loss" in res.stderr and "Traceback" not in res.stderr


def test_flash_attention_and_liger_fail_clearly_on_cpu() -> None:
    from lorabench.models.loading import ModelLoadError, attn_implementation
    from lorabench.run.perf import apply_liger

    with pytest.raises(ModelLoadError, match="needs a CUDA device"):
        attn_implementation(ModelDef(path="x", attn_implementation="flash_attention_2"), "cpu")
    assert attn_implementation(ModelDef(path="x", attn_implementation="sdpa"), "cpu") == "sdpa"
    with pytest.raises(UsageError, match="liger needs a CUDA device"):
        apply_liger(object(), "cpu")


@pytest.mark.slow
def test_a_run_records_flops_mfu_estimate_and_the_optimised_path(write_suite, tmp_path) -> None:
    from tests.conftest import TINY_TRAIN

    suite = textwrap.dedent(
        """
        matrix:
          model: [builtin:tiny-gpt2]
          method: [lora]
          task: [synthetic-lm]
          attn_implementation: [eager]
          compile: [true]
        """
    ) + TINY_TRAIN.replace("execution:\n", "execution:\n  peak_tflops: 0.5\n")
    path = write_suite(suite)
    res = run_cli("run", str(path), "--out", str(tmp_path / "out"), "--no-progress", "--strict")
    assert res.returncode == 0, res.stderr[-3000:]
    (record_path,) = (tmp_path / "out" / "runs").glob("*/record.json")
    rec = json.loads(record_path.read_text())
    prof, resolved = rec["profile"], rec["resolved"]
    assert prof["model_flops_per_token"] > 0 and prof["hardware_flops_per_token"] == prof["model_flops_per_token"]
    expected = prof["model_flops_per_token"] * prof["tokens_per_s"] / 0.5e12
    assert prof["mfu"] == pytest.approx(expected)
    assert prof["peak_tflops_source"] == "execution.peak_tflops"
    assert prof["estimate_bytes"]["allocated"] > 0
    assert resolved["attn_implementation"] == "eager" and resolved["compile"] is True
    assert rec["spec"]["model"]["name"] == "tiny-gpt2+compile+eager"


def test_chunked_cross_entropy_matches_the_models_loss_and_gradients() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from lorabench.models.loading import resolve_path
    from lorabench.run.perf import chunked_ce_forward

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_path("builtin:tiny-gpt2"))
    model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = 0.0
    model.eval()  # no dropout: both passes must see the same network
    ids = torch.randint(4, model.config.vocab_size, (3, 12))
    labels = ids.clone()
    labels[0, 8:] = -100  # padding is ignored by both
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    ref = model(**batch).loss
    ref.backward()
    ref_grad = model.get_output_embeddings().weight.grad.clone()
    model.zero_grad()
    got = chunked_ce_forward(model, chunk_tokens=5)(batch)  # 36 tokens in uneven chunks
    got.backward()
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(model.get_output_embeddings().weight.grad, ref_grad)


def test_chunked_loss_shrinks_the_logits_term() -> None:
    big = Shape(layers=1, hidden=8, intermediate=16, heads=2, kv_width=8, vocab=1000)
    default = estimate(big, INV, "bf16", batch_size=4, seq_len=2048)
    chunked = estimate(big, INV, "bf16", batch_size=4, seq_len=2048, loss="chunked")
    assert default.breakdown["logits"] == 4 * 2048 * 1000 * 12
    assert chunked.breakdown["logits"] == 4096 * 1000 * 12


def test_new_settings_at_their_defaults_keep_existing_run_ids(write_suite) -> None:
    from lorabench.plan import expand
    from lorabench.spec import RunSpec
    from lorabench.validate import load_suite

    path = write_suite(
        "matrix: {model: [builtin:tiny-gpt2], method: [lora], task: [synthetic-lm]}\ntrain: {steps: 4}\n"
    )
    spec = expand(load_suite(path))[0]
    d = spec.to_dict()
    d["execution"].pop("compile")
    d["train"].pop("loss")
    d["model"].pop("attn_implementation")
    assert RunSpec.from_dict(d).run_id == spec.run_id  # as before these settings existed
    d["execution"]["compile"] = True
    assert RunSpec.from_dict(d).run_id != spec.run_id


@pytest.mark.gpu
@pytest.mark.slow
def test_a_gpu_run_records_mfu_from_the_datasheet_table(write_suite, tmp_path) -> None:
    import torch

    from tests.conftest import TINY_TRAIN

    suite = textwrap.dedent(
        """
            matrix:
              model: [builtin:tiny-gpt2]
              method: [lora]
              precision: [bf16]
              task: [synthetic-lm]
            """
    ) + TINY_TRAIN.replace("execution:\n", "execution:\n  device: cuda\n")
    res = run_cli("run", str(write_suite(suite)), "--out", str(tmp_path / "out"), "--no-progress", "--strict")
    assert res.returncode == 0, res.stderr[-3000:]
    (record_path,) = (tmp_path / "out" / "runs").glob("*/record.json")
    prof = json.loads(record_path.read_text())["profile"]
    peak = peak_tflops(torch.cuda.get_device_name())
    assert prof["peak_tflops"] == peak
    if peak is not None:
        assert 0 < prof["mfu"] < 1
        assert prof["mfu"] == pytest.approx(prof["model_flops_per_token"] * prof["tokens_per_s"] / (peak * 1e12))
    assert prof["estimate_bytes"]["allocated"] > 0 and prof["memory_mb"]["train"]["allocated"] > 0


def test_gpt2_activation_and_attention_dropout_terms() -> None:
    import dataclasses

    gpt2ish = dataclasses.replace(SHAPE, gated_mlp=False, dropout=True, composite_gelu=True)
    plain = dataclasses.replace(SHAPE, gated_mlp=False, dropout=True)
    tokens, seq = 6, 3
    diff = layer_activation_bytes(gpt2ish, tokens, seq, 4, "sdpa", False) - layer_activation_bytes(
        plain, tokens, seq, 4, "sdpa", False
    )
    assert diff == 3 * 4 * 16 * tokens
    eager = layer_activation_bytes(plain, tokens, seq, 4, "eager", False)
    sdpa = layer_activation_bytes(plain, tokens, seq, 4, "sdpa", False)
    assert eager - sdpa == (2 * seq * (2 * 4 + 1) - 4 * 2) * tokens
