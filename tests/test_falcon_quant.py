"""Falcon at int8 and nf4: its FalconLinear projections are quantised, and runs train.

transformers 5.x skips ``FalconLinear`` (an ``nn.Linear`` subclass) when it swaps in
bitsandbytes layers; lorabench builds them as ``nn.Linear`` for quantised Falcon loads
(``lorabench/models/adapt.py``) and records that in ``resolved.adaptations``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

# Falcon-7B's layout (multi-query attention, parallel attention/MLP, no biases), tiny.
FALCON = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "multi_query": True,
    "new_decoder_architecture": False,
    "parallel_attn": True,
    "bias": False,
    "max_position_embeddings": 128,
}
PROJECTIONS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


@pytest.fixture(scope="module")
def falcon_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Falcon config and tokenizer, no weights: runs use ``weights: random``."""
    from transformers import AutoConfig

    from lorabench.models.builtin import build_tokenizer

    tok = build_tokenizer()
    path = tmp_path_factory.mktemp("falcon")
    ids = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
    AutoConfig.for_model("falcon", **ids, **FALCON).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("precision", ["int8", "nf4"])
def test_falcon_projections_are_quantised(falcon_dir: Path, precision: str) -> None:
    import bitsandbytes as bnb
    from transformers.models.falcon import modeling_falcon

    from lorabench.models.loading import load_model
    from lorabench.suite.schema import ModelDef, QuantSettings

    model, _tok, info = load_model(
        ModelDef(path=str(falcon_dir), weights="random"),
        "causal-lm",
        precision,
        QuantSettings(compute_dtype="fp32"),
        "cpu",
    )
    bnb_cls = bnb.nn.Linear8bitLt if precision == "int8" else bnb.nn.Linear4bit
    quantised = {name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, bnb_cls)}
    assert quantised == set(PROJECTIONS)
    assert info["quantized_layers"] == len(PROJECTIONS) * FALCON["num_hidden_layers"]
    assert info["adaptations"] and info["adaptations"][0].startswith("falcon: FalconLinear")
    # The patch is scoped to the load: Falcon's own class is back afterwards.
    assert modeling_falcon.FalconLinear.__name__ == "FalconLinear"


def test_falcon_qlora_and_int8_lora_train_through_the_pipeline(falcon_dir: Path, write_suite, tmp_path: Path) -> None:
    path = write_suite(
        f"""
        name: falcon-quant
        models:
          falcon: {{path: "{falcon_dir}", weights: random, target_modules: [query_key_value]}}
        matrix:
          model: [falcon]
          method: [lora]
          precision: [int8, nf4, fp32]
          task: [synthetic-lm]
        methods:
          lora: {{alpha: 16, dropout: 0.0}}
        quantization: {{compute_dtype: fp32}}
        train: {{steps: 12, batch_size: 4, lr: 1.0e-2, max_seq_len: 32, warmup_steps: 2, log_every: 1}}
        eval: {{batch_size: 16, max_batches: 1}}
        execution: {{device: cpu, threads: 1, timeout_s: 300, keep_adapter: false}}
        """
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = {
        r["spec"]["precision"]: r for r in (json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json")))
    }
    assert set(recs) == {"int8", "nf4", "fp32"}
    for precision in ("int8", "nf4"):
        rec = recs[precision]
        assert rec["status"] == "success", rec.get("error")
        assert rec["resolved"]["quantized_layers"] == 8
        assert rec["resolved"]["adaptations"][0].startswith("falcon: FalconLinear")
        assert rec["resolved"]["method"]["target_modules"] == ["query_key_value"]
        losses = [loss for _s, loss, _lr in rec["curves"]["train_loss"]]
        assert losses[-1] < losses[0]  # random weights on a real objective: the adapters learn
    # An unquantised Falcon needs no adaptation and records none.
    assert recs["fp32"]["status"] == "success"
    assert "adaptations" not in recs["fp32"]["resolved"]
