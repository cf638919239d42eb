"""The tutorial's hand-written classifier as a built-in model, and its suite end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorabench.errors import SuiteError
from lorabench.methods.base import MethodContext
from lorabench.models.loading import ModelLoadError, load_model
from lorabench.suite.schema import ModelDef, QuantSettings
from lorabench.validate import parse_suite
from tests.conftest import REPO, run_cli

MODEL = ModelDef(path="builtin:handwritten-classifier", target_modules=("linear",))


def test_loader_builds_the_same_seeded_classifier_with_hf_style_outputs() -> None:
    torch.manual_seed(1)
    a, tok, info = load_model(MODEL, "classification", "fp32", QuantSettings(), "cpu", {"num_labels": 3})
    torch.manual_seed(2)
    b, _, _ = load_model(MODEL, "classification", "fp32", QuantSettings(), "cpu", {"num_labels": 3})
    assert info["model_type"] == "handwritten-classifier"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # the run seed does not matter
    batch = tok(["the movie was good", "bad"], padding=True, return_tensors="pt")
    out = a(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=torch.tensor([1, 0]))
    assert out.logits.shape == (2, 3) and out.loss.dim() == 0
    out.loss.backward()
    assert a.embedding.weight.grad is not None and a.linear.weight.grad is not None


def test_loader_refuses_what_it_cannot_be() -> None:
    with pytest.raises(ModelLoadError, match="not a transformers one"):
        load_model(MODEL, "classification", "nf4", QuantSettings(), "cpu", {})
    with pytest.raises(ModelLoadError, match="cannot serve a causal-lm task"):
        load_model(MODEL, "causal-lm", "fp32", QuantSettings(), "cpu", {})


@pytest.mark.parametrize("method", ["lora-ref", "lora"])
def test_lora_on_its_linear_trains_only_the_low_rank_update(method: str) -> None:
    from lorabench.methods import METHODS

    model, _, info = load_model(MODEL, "classification", "fp32", QuantSettings(), "cpu", {"num_labels": 2})
    cls = METHODS.get(method)
    ctx = MethodContext(2, cls.Options(), "classification", "fp32", info["model_type"], ("linear",))
    model = cls().apply(model, ctx)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable), trainable


def test_tutorial_suite_validates() -> None:
    from lorabench.plan import expand
    from lorabench.validate import load_suite

    specs = expand(load_suite(REPO / "suites" / "imdb_handwritten_lora.yaml"))
    assert {s.method for s in specs} == {"full", "lora-ref", "lora"}
    assert all(s.eval.every for s in specs)


def test_model_dependent_invalid_combination_is_rejected_at_validation() -> None:
    text = """
matrix: {model: [builtin:tiny-gpt2], method: [lora, loha], task: [synthetic-lm]}
train: {steps: 3}
"""
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    (msg,) = [str(i) for i in info.value.issues]
    assert "loha at fp32 on builtin:tiny-gpt2 (a gpt2 model) is invalid" in msg and "Conv1D" in msg
    assert "{method: loha, model: builtin:tiny-gpt2, precision: fp32}" in msg
    excluded = text + "exclude:\n  - {method: loha, model: builtin:tiny-gpt2}\n"
    assert parse_suite(excluded, "s.yaml").name == "suite"


def test_bad_method_option_is_reported_with_its_value() -> None:
    text = """
matrix: {model: [builtin:tiny-gpt2], method: [adalora], task: [synthetic-lm]}
methods:
  adalora: {tinit_frac: 0.6, tfinal_frac: 0.5}
train: {steps: 3}
"""
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    assert any("s.yaml:4:" in str(i) and "0.6 + 0.5" in str(i) for i in info.value.issues), info.value.issues


@pytest.mark.slow
def test_tutorial_suite_runs_with_loss_and_accuracy_curves(tmp_path: Path) -> None:
    """The tutorial suite, shortened: records carry eval curves and the report plots them."""
    text = (REPO / "suites" / "imdb_handwritten_lora.yaml").read_text()
    text = text.replace("rank: [1, 2]", "rank: [2]").replace("seeds: [0, 1]", "seeds: [0]")
    text = (
        text.replace("steps: 300", "steps: 8")
        .replace("every: 25", "every: 4")
        .replace("warmup_steps: 5", "warmup_steps: 1")
    )
    suite = tmp_path / "tutorial.yaml"
    suite.write_text(text)
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*/record.json")]
    assert {r["spec"]["method"] for r in records} == {"full", "lora-ref", "lora"}
    for rec in records:
        steps = [p["step"] for p in rec["curves"]["eval"]]
        assert steps == [3, 7] and all(0 <= p["accuracy"] <= 1 for p in rec["curves"]["eval"])
        assert rec["curves"]["eval"][-1]["accuracy"] == rec["metrics"]["accuracy"]  # the last point is the final eval
        assert len(rec["curves"]["train_loss"]) == 8
    by_method = {r["spec"]["method"]: r["profile"] for r in records}
    assert by_method["lora-ref"]["trainable_params"] == by_method["lora"]["trainable_params"] == 2 * (64 + 2)
    assert (out / "plots" / "curves_synthetic-sentiment.png").is_file()
