"""``weights: random``: built in the target dtype on the target device, quantised in memory."""

from __future__ import annotations

import pytest
import torch

from lorabench.models.configs import MODEL_CONFIGS, config_dir
from lorabench.models.loading import load_model, random_model
from lorabench.suite.schema import ModelDef, QuantSettings


@pytest.fixture
def no_checkpoint_files(monkeypatch):
    """Random weights must not go through a checkpoint on disk (28 GB at 7B)."""
    from transformers import PreTrainedModel

    def refuse(*args, **kwargs):
        raise AssertionError("random weights were written to disk")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", refuse)


def _layer(net):
    return net.transformer.h[0].mlp.c_fc


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_random_weights_are_built_in_the_run_dtype(no_checkpoint_files, precision: str) -> None:
    model = ModelDef(path="builtin:tiny-gpt2", weights="random")
    net, _, info = load_model(model, "causal-lm", precision, QuantSettings(), "cpu")
    want = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    assert {p.dtype for p in net.parameters()} == {want}
    assert info["model_type"] == "gpt2"


@pytest.mark.parametrize(
    ("precision", "param_class", "storage"), [("nf4", "Params4bit", torch.uint8), ("int8", "Int8Params", torch.int8)]
)
def test_random_kbit_weights_are_quantised_in_memory(
    no_checkpoint_files, precision: str, param_class: str, storage: torch.dtype
) -> None:
    model = ModelDef(path="builtin:tiny-gpt2", weights="random")
    net, _, info = load_model(
        model, "causal-lm", precision, QuantSettings(compute_dtype="bf16", double_quant=True), "cpu"
    )
    assert info["quantized_layers"] == 8
    weight = _layer(net).weight
    assert type(weight).__name__ == param_class and weight.dtype == storage
    if precision == "nf4":
        assert weight.quant_state.nested  # double quantisation, as asked
        assert getattr(net, "is_loaded_in_4bit", False)
    else:
        assert getattr(net, "is_loaded_in_8bit", False)
    net.eval()
    with torch.no_grad():
        logits = net(torch.arange(1, 17).reshape(1, 16)).logits
    assert torch.isfinite(logits).all() and logits.float().std() > 0


def test_random_weights_are_seeded() -> None:
    model = ModelDef(path="builtin:tiny-gpt2", weights="random")
    torch.manual_seed(0)
    a, _, _ = load_model(model, "causal-lm", "fp32", QuantSettings(), "cpu")
    torch.manual_seed(0)
    b, _, _ = load_model(model, "causal-lm", "fp32", QuantSettings(), "cpu")
    torch.testing.assert_close(_layer(a).weight, _layer(b).weight, rtol=0, atol=0)


def test_7b_shape_materialises_nothing_before_its_device() -> None:
    """Construction happens on the target device: on ``meta`` a 6.7B model allocates no memory."""
    from transformers import AutoModelForCausalLM

    net = random_model(AutoModelForCausalLM, str(config_dir("llama-7b")), None, {"dtype": torch.bfloat16}, "meta")
    params = list(net.parameters())
    assert all(p.is_meta for p in params)
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert sum(p.numel() for p in params) == 6_738_415_616  # Llama-2-7B's published count


def test_shipped_configs_resolve_with_a_tokenizer() -> None:
    from transformers import AutoConfig, AutoTokenizer

    for name in MODEL_CONFIGS:
        path = config_dir(name)
        assert AutoConfig.from_pretrained(path).model_type == name.split("-")[0]
        tok = AutoTokenizer.from_pretrained(path)
        text = "any text, even ünïcode"
        assert tok.decode(tok(text)["input_ids"]) == text
        assert (tok.bos_token_id, tok.eos_token_id) == (1, 2)


def test_unknown_shipped_config_is_a_suite_error(write_suite) -> None:
    from tests.conftest import run_cli

    suite = write_suite(
        """
        name: bad
        models:
          big: {path: "config:llama-2b", weights: random}
        matrix:
          - {model: [big], method: [lora], precision: [bf16], task: [synthetic-lm]}
        train: {steps: 3}
        """
    )
    proc = run_cli("validate", str(suite))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{suite}:5: model 'big': unknown shipped model config 'llama-2b' (did you mean" in proc.stderr


def test_falcon_7b_shape_is_the_published_one() -> None:
    """config:falcon-7b on meta: 6,921,720,704 parameters (embeddings tied), fused qkv of 4544 + 2 x 64."""
    from transformers import AutoModelForCausalLM

    net = random_model(AutoModelForCausalLM, str(config_dir("falcon-7b")), None, {"dtype": torch.bfloat16}, "meta")
    assert sum(p.numel() for p in net.parameters()) == 6_921_720_704
    qkv = net.transformer.h[0].self_attention.query_key_value
    assert (qkv.in_features, qkv.out_features) == (4544, 4672)  # 71 query heads, one shared k/v head of 64
