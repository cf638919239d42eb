"""The record's ``env``: every package that changes numbers, collected cheaply."""

from __future__ import annotations

import json
import subprocess
import sys

from lorabench.provenance import PACKAGES, collect_env, nvidia_driver_version
from tests.conftest import REPO, cli_env

NUMBER_CHANGING = {
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "tokenizers",
    "rouge-score",
    "safetensors",
    "numpy",
}


def test_collect_env_without_device_imports_no_torch() -> None:
    """A driver can describe a failed run's environment without importing torch or probing a GPU."""
    code = (
        "import json, sys; from lorabench.provenance import collect_env; env = collect_env(); "
        "heavy = [m for m in ('torch', 'bitsandbytes', 'peft', 'transformers', 'pynvml') if m in sys.modules]; "
        "print(json.dumps({'env': env, 'heavy': heavy}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["heavy"] == []
    env = out["env"]
    assert env["device"] is None
    assert NUMBER_CHANGING <= set(env)
    for pkg in NUMBER_CHANGING:  # all of them are dependencies, so all are installed here
        assert isinstance(env[pkg], str) and env[pkg][0].isdigit(), (pkg, env[pkg])


def test_collect_env_versions_are_the_imported_ones() -> None:
    import numpy
    import torch
    import transformers

    env = collect_env("cpu")
    assert NUMBER_CHANGING <= set(PACKAGES)
    assert (env["torch"], env["transformers"], env["numpy"]) == (
        torch.__version__,
        transformers.__version__,
        numpy.__version__,
    )
    assert env["device"] == "cpu" and env["device_name"] == env["cpu"]
    assert env["torch_threads"] == torch.get_num_threads()
    assert "cuda" not in env  # CUDA fields only where CUDA was used


def test_driver_version_is_null_or_a_version_string() -> None:
    version = nvidia_driver_version()
    assert version is None or version[0].isdigit()


def test_paths_inside_the_working_directory_are_recorded_relative(tmp_path, monkeypatch) -> None:
    from lorabench.provenance import shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path(str(tmp_path / ".venv" / "bin" / "python")) == ".venv/bin/python"
    assert shown_path("/usr/bin/python3") == "/usr/bin/python3"  # outside: as it is
