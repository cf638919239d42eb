"""requirements.lock: complete, torch-free, and what the tests run with (drift check)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

sys.path.insert(0, str(REPO / "scripts"))
from check_lock import UNLOCKED, drift, installed, normalise, read_lock

LOCK = REPO / "requirements.lock"


def _requirement_name(req: str) -> str:
    return normalise(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])


def test_lock_pins_every_dependency_but_never_torch_or_cuda_wheels() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pins = read_lock(LOCK)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert wanted - {"torch"} <= set(pins), sorted(wanted - {"torch"} - set(pins))
    assert not [name for name in pins if UNLOCKED.match(name)]
    assert "nvidia-ml-py" in pins  # the NVML bindings are ours, not a CUDA wheel


def test_venv_holds_the_locked_versions() -> None:
    """Lock drift: a locked package at another version here means the lock no longer says what ran."""
    declared = Path(sys.prefix) / "lock-drift.txt"
    if declared.exists():  # `make install WHEELS=...`: the machine's own versions kept on purpose
        pytest.skip(f"installed with no registry, the drift is declared in {declared}")
    problems = drift(read_lock(LOCK), installed(venv_only=False), None)
    assert problems == [], "\n".join(problems) + "\n(`make install` to follow the lock, or `make lock` to refresh it)"


def _check(lock_text: str, tmp_path, *flags: str) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_text)
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_lock.py"), "--lock", str(lock), *flags],
        env=cli_env(),
        capture_output=True,
        text=True,
    )


def test_check_lock_passes_on_this_environment_and_names_each_difference(tmp_path) -> None:
    have = installed(venv_only=True)
    exact = "".join(f"{name}=={version}\n" for name, version in sorted(have.items()) if not UNLOCKED.match(name))
    assert _check("# header\n" + exact, tmp_path).returncode == 0

    numpy_version = metadata.version("numpy")
    changed = exact.replace(f"numpy=={numpy_version}\n", "numpy==0.0.1\n").replace(
        f"pyyaml=={metadata.version('pyyaml')}\n", ""
    )
    proc = _check(changed + "not-a-real-package==1.0\n", tmp_path)
    assert proc.returncode == 1
    assert f"numpy is {numpy_version}, the lock pins 0.0.1" in proc.stderr
    assert "missing: not-a-real-package==1.0" in proc.stderr
    assert "not in the lock: pyyaml==" in proc.stderr
    # --locked-only forgives the unlocked extra, not the rest
    proc = _check(changed, tmp_path, "--locked-only")
    assert proc.returncode == 1 and "pyyaml" not in proc.stderr


def test_check_lock_rejects_a_malformed_lock_with_file_and_line(tmp_path) -> None:
    proc = _check("numpy==1.0\nrequests>=2\n", tmp_path)
    assert proc.returncode == 2
    assert "requirements.lock:2: expected NAME==VERSION" in proc.stderr
    assert "Traceback" not in proc.stderr
