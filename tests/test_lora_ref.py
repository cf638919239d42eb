"""lora-ref, the hand-written LoRA, against peft's LoRA: same A and B → same outputs and gradients."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from lorabench.methods.base import MethodContext
from lorabench.methods.lora_ref import FILENAME, LoRARef, LoraRefOptions
from lorabench.methods.lora_ref_layer import LoRALinear, lora_layers

CONFIGS = {
    # GPT-2's c_attn is a transformers Conv1D (weight stored as in × out).
    "gpt2": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 32, "vocab_size": 64},
    "llama": {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 64,
    },
}


def _tiny(model_type: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **CONFIGS[model_type]))
    return model.eval()  # no dropout: the comparison is exact up to float rounding


def _ctx(model_type: str, rank: int = 4, alpha: float = 8.0) -> MethodContext:
    return MethodContext(
        rank=rank,
        options=LoraRefOptions(alpha=alpha),
        task_family="causal-lm",
        precision="fp32",
        model_type=model_type,
        target_modules=None,
    )


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_same_a_and_b_give_peft_outputs_and_gradients(model_type: str) -> None:
    from peft import LoraConfig, get_peft_model

    base = _tiny(model_type)
    ours = LoRARef().apply(copy.deepcopy(base), _ctx(model_type))
    theirs = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM"))

    ref_layers = lora_layers(ours)
    peft_layers = {n.removeprefix("base_model.model."): m for n, m in theirs.named_modules() if hasattr(m, "lora_A")}
    peft_layers = {n: m for n, m in peft_layers.items() if "default" in getattr(m, "lora_A", {})}
    assert set(ref_layers) == set(peft_layers)  # the same default targets (peft's table)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, layer in ref_layers.items():
            # B is zero at init (a no-op update); a random B makes the comparison meaningful.
            a = torch.randn(layer.lora_A.shape, generator=g)
            b = torch.randn(layer.lora_B.shape, generator=g)
            layer.lora_A.copy_(a)
            layer.lora_B.copy_(b)
            peft_layers[name].lora_A["default"].weight.copy_(a)
            peft_layers[name].lora_B["default"].weight.copy_(b)
            assert layer.scaling == peft_layers[name].scaling["default"] == 2.0

    ids = torch.randint(0, 64, (3, 12), generator=g)
    out_ours, out_theirs = ours(input_ids=ids, labels=ids), theirs(input_ids=ids, labels=ids)
    assert_close(out_ours.logits, out_theirs.logits)
    assert not torch.allclose(out_ours.logits, _tiny(model_type)(input_ids=ids).logits)  # the update is live
    out_ours.loss.backward()
    out_theirs.loss.backward()
    for name, layer in ref_layers.items():
        assert_close(layer.lora_A.grad, peft_layers[name].lora_A["default"].weight.grad)
        assert_close(layer.lora_B.grad, peft_layers[name].lora_B["default"].weight.grad)
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{ab}" for n in ref_layers for ab in "AB"}


def test_saves_only_a_b_and_alpha_and_reloads_them(tmp_path: Path) -> None:
    from safetensors import safe_open

    model = LoRARef().apply(_tiny("llama"), _ctx("llama", rank=2, alpha=5.0))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_()
    LoRARef().save(model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [FILENAME]
    with safe_open(str(tmp_path / FILENAME), framework="pt") as fh:
        keys = set(fh.keys())
        assert fh.metadata()["alpha"] == "5.0"
    assert keys == {f"{n}.lora_{ab}" for n in lora_layers(model) for ab in "AB"}

    reloaded = LoRARef().load(_tiny("llama"), _ctx("llama"), tmp_path)  # rank and alpha come from the file
    layer = next(iter(lora_layers(reloaded).values()))
    assert (layer.r, layer.alpha) == (2, 5.0)
    ids = torch.randint(0, 64, (2, 8))
    model.eval()
    reloaded.eval()
    assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_layer_reads_like_the_formula() -> None:
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, alpha=4.0)
    assert torch.equal(layer.lora_B, torch.zeros(5, 2))  # starts as the base function exactly
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 6)
    expected = base(x) + (4.0 / 2) * (layer.lora_B @ layer.lora_A @ x.T).T
    assert_close(layer(x), expected)


def test_explicit_and_all_linear_targets() -> None:
    model = LoRARef().apply(
        _tiny("llama"),
        MethodContext(4, LoraRefOptions(target_modules=("all-linear",)), "causal-lm", "fp32", "llama", None),
    )
    names = set(lora_layers(model))
    assert "lm_head" not in names and any(n.endswith("mlp.down_proj") for n in names)
    with pytest.raises(ValueError, match="match no linear layer"):
        LoRARef().apply(
            _tiny("llama"),
            MethodContext(4, LoraRefOptions(target_modules=("nope",)), "causal-lm", "fp32", "llama", None),
        )
