"""Shared fixtures: write suites to temp files and run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lorabench ARGS`` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "lorabench", *args],
        cwd=cwd or REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write YAML text (dedented) to ``tmp_path/<name>.yaml`` and return its path."""

    def _write(text: str, name: str = "suite") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


TINY_TRAIN = """
train:
  steps: 6
  batch_size: 4
  lr: 3.0e-3
  max_seq_len: 32
  warmup_steps: 2
eval:
  batch_size: 16
  max_batches: 2
execution:
  threads: 2
  timeout_s: 300
"""


def pytest_collection_modifyitems(config, items) -> None:
    """Skip ``gpu``-marked tests where torch sees no CUDA device (CI never has one)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _environ_restored():
    """Each test starts from the environment the session started with.

    Libraries change ``os.environ`` as a side effect (peft's BOFT leaves ``CC``/``CXX=gcc``
    behind when its CUDA extension fails to build), and every later CLI test inherits it
    through :func:`cli_env`: one such leak made torch.compile link kernels without
    libstdc++ in an unrelated test.
    """
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)
