"""requirements.lock: complete, torch-free, and what the tests run with (drift check)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

sys.path.insert(0, str(REPO / "scripts"))
from check_lock import UNLOCKED, drift, normalise, read_lock

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
    if declared.exists():  # `make install WHEELS=...` or `make test-drift`: other versions on purpose
        pytest.skip(f"this venv differs from the lock on purpose, as declared in {declared}")
    problems = drift(read_lock(LOCK), _installed_fresh(venv_only=False), None)
    assert problems == [], "\n".join(problems) + "\n(`make install` to follow the lock, or `make lock` to refresh it)"


def _installed_fresh(venv_only: bool) -> dict[str, str]:
    """``installed()`` as a fresh interpreter sees it, like the check_lock run being tested.

    This process may have grown its sys.path (ray's import adds its vendored packages).
    """
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from check_lock import installed; "
        f"print(json.dumps(installed(venv_only={venv_only})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "scripts")], env=cli_env(), capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout)


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
    have = {name: v for name, v in _installed_fresh(venv_only=True).items() if not UNLOCKED.match(name)}
    exact = "".join(f"{name}=={version}\n" for name, version in sorted(have.items()))
    assert _check("# header\n" + exact, tmp_path).returncode == 0

    # Two of the venv's own packages (with a reused system stack, numpy may not be one).
    changed_name, dropped_name = sorted(have)[:2]
    changed = exact.replace(f"{changed_name}=={have[changed_name]}\n", f"{changed_name}==0.0.1\n").replace(
        f"{dropped_name}=={have[dropped_name]}\n", ""
    )
    proc = _check(changed + "not-a-real-package==1.0\n", tmp_path)
    assert proc.returncode == 1
    assert f"{changed_name} is {have[changed_name]}, the lock pins 0.0.1" in proc.stderr
    assert "missing: not-a-real-package==1.0" in proc.stderr
    assert f"not in the lock: {dropped_name}==" in proc.stderr
    # --locked-only forgives the unlocked extra, not the rest
    proc = _check(changed, tmp_path, "--locked-only")
    assert proc.returncode == 1 and dropped_name not in proc.stderr


def test_check_lock_rejects_a_malformed_lock_with_file_and_line(tmp_path) -> None:
    proc = _check("numpy==1.0\nrequests>=2\n", tmp_path)
    assert proc.returncode == 2
    assert "requirements.lock:2: expected NAME==VERSION" in proc.stderr
    assert "Traceback" not in proc.stderr


def _exact_lock() -> str:
    """A lock that pins exactly what this environment has (torch and CUDA wheels aside)."""
    have = _installed_fresh(venv_only=False)
    return "".join(f"{name}=={version}\n" for name, version in sorted(have.items()) if not UNLOCKED.match(name))


def test_check_lock_missing_and_drift_ok_modes(tmp_path) -> None:
    """The offline install's two questions: what to install at the lock's version, and what differs (a warning)."""
    numpy_version = metadata.version("numpy")
    lock = _exact_lock().replace(f"numpy=={numpy_version}\n", "numpy==0.0.1\n") + "not-a-real-package==1.0\n"
    proc = _check(lock, tmp_path, "--missing")
    assert proc.returncode == 0 and proc.stdout == "not-a-real-package==1.0\n"  # numpy is there, at another version
    proc = _check(lock, tmp_path, "--drift-ok")
    assert proc.returncode == 0
    assert "warning: 2 difference(s)" in proc.stderr
    assert f"numpy is {numpy_version}, the lock pins 0.0.1" in proc.stderr
    assert "missing: not-a-real-package==1.0" in proc.stderr


def _wheel_set(tmp_path, image: str, lock: str | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "image.txt").write_text(image)
    (tmp_path / "requirements.lock").write_text(_exact_lock() if lock is None else lock)
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "wheel_set.py"),
            "--lock",
            str(tmp_path / "requirements.lock"),
            "--image",
            str(tmp_path / "image.txt"),
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
    )


def test_wheel_set_carries_what_the_image_lacks_and_what_they_need(tmp_path) -> None:
    """An image without datasets: datasets and the dependencies only it brings, plus the build backend."""
    pytest.importorskip("packaging")
    lacks = {"datasets", "xxhash", "dill", "multiprocess"}
    have = _installed_fresh(venv_only=False)
    if "setuptools" not in have:
        pytest.skip("setuptools (lorabench's build backend) is not installed here to be pinned")
    image = "".join(f"{name}=={version}\n" for name, version in have.items() if name not in lacks)
    proc = _wheel_set(tmp_path, image)
    assert proc.returncode == 0, proc.stderr
    carried = {line.split("==")[0]: line.split("==")[1] for line in proc.stdout.split()}
    assert set(carried) == lacks | {"setuptools"}
    assert carried["datasets"] == have["datasets"]  # at the lock's version


def test_wheel_set_refuses_an_image_version_a_carried_wheel_rejects(tmp_path) -> None:
    """pip would fail there with no registry to fix it: say so here, before anything is carried."""
    pytest.importorskip("packaging")
    have = _installed_fresh(venv_only=False)
    image = "".join(
        f"{name}=={'1.0' if name == 'pyarrow' else version}\n" for name, version in have.items() if name != "datasets"
    )
    proc = _wheel_set(tmp_path, image)
    assert proc.returncode == 1
    assert "the image has pyarrow 1.0, but datasets needs pyarrow>=" in proc.stderr


def test_wheel_set_rejects_a_malformed_image_with_file_and_line(tmp_path) -> None:
    proc = _wheel_set(tmp_path, "torch==2.11.0\ntorch>=2\n")
    assert proc.returncode == 2
    assert "image.txt:2: expected NAME or NAME==VERSION" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_extra_has_its_own_lock_on_top_of_the_base_lock() -> None:
    """`make install EXTRAS=ray`: requirements-ray.lock pins the ray extra and only what it adds."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = read_lock(REPO / "requirements-ray.lock")
    wanted = {_requirement_name(r) for r in project["optional-dependencies"]["ray"]}
    assert wanted <= set(extra), sorted(wanted - set(extra))
    assert not set(extra) & set(read_lock(LOCK)), "a package is pinned in both locks"
    assert not [name for name in extra if UNLOCKED.match(name)]


def test_an_extra_lock_is_required_with_extra_and_otherwise_all_or_nothing(tmp_path) -> None:
    have = {name: v for name, v in _installed_fresh(venv_only=True).items() if not UNLOCKED.match(name)}
    moved = sorted(have)[0]  # one of the venv's own packages, locked by the extra instead of the base
    base = "".join(f"{name}=={version}\n" for name, version in sorted(have.items()) if name != moved)
    (tmp_path / "requirements-absent.lock").write_text("not-a-real-package==1.0\n")
    (tmp_path / "requirements-present.lock").write_text(f"{moved}=={have[moved]}\n")
    # none of `absent` is installed: fine unless it is asked for; `present` is all there
    proc = _check(base, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "requirements-present.lock" in proc.stdout and "requirements-absent.lock" not in proc.stdout
    proc = _check(base, tmp_path, "--extra", "absent")
    assert proc.returncode == 1 and "missing: not-a-real-package==1.0" in proc.stderr
    assert "make install EXTRAS=absent" in proc.stderr
    # partly installed: what the extra's lock pins is checked like the base lock
    (tmp_path / "requirements-present.lock").write_text(f"{moved}==0.0.1\nnot-a-real-package==1.0\n")
    proc = _check(base, tmp_path)
    assert proc.returncode == 1
    assert (
        f"{moved} is {have[moved]}, the lock pins 0.0.1" in proc.stderr and "missing: not-a-real-package" in proc.stderr
    )
    # an extra nobody locked, and a package pinned twice, are usage errors
    proc = _check(base + f"{moved}=={have[moved]}\n", tmp_path, "--extra", "nope")
    assert proc.returncode == 2 and "no lock for extra nope" in proc.stderr
    proc = _check(base + f"{moved}=={have[moved]}\n", tmp_path)
    assert proc.returncode == 2 and f"{moved} is pinned in" in proc.stderr and "Traceback" not in proc.stderr
