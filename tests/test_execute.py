"""Executors and the results directory: GPU pool (fake ids on CPU), output-dir ownership,
the lock, reruns that say what they reuse, reports scoped to the plan, provenance on
records of runs that died. Each runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

TINY = """
name: {name}
matrix:
  model: [builtin:tiny-gpt2]
  method: [{methods}]
  task: [synthetic-lm]
train: {{steps: {steps}, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 1}}
eval: {{batch_size: 16, max_batches: 1}}
execution: {{threads: 1, timeout_s: {timeout}}}
"""

PROVENANCE = ("python", "torch", "transformers", "peft", "bitsandbytes", "device_name", "git_sha", "git_dirty")


def _suite(tmp_path: Path, name: str = "tiny", methods: str = "lora", steps: int = 2, timeout: float = 300) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, methods=methods, steps=steps, timeout=timeout))
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


def _usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_out_refuses_a_directory_of_user_files_and_overwrites_nothing(tmp_path: Path) -> None:
    mine = tmp_path / "mydir"
    mine.mkdir()
    for name in ("report.html", "runs.csv", "leaderboard.md", "suite.yaml", "notes.txt"):
        (mine / name).write_text(f"my own {name}\n")
    proc = run_cli("run", str(_suite(tmp_path)), "--out", str(mine), "--no-progress")
    _usage_error(proc, "did not create", "nothing of yours is overwritten")
    assert sorted(p.name for p in mine.iterdir()) == [
        "leaderboard.md",
        "notes.txt",
        "report.html",
        "runs.csv",
        "suite.yaml",
    ]
    assert all(p.read_text() == f"my own {p.name}\n" for p in mine.iterdir())


def test_committed_results_without_marker_or_plan_are_resumed(tmp_path: Path) -> None:
    """A results directory committed as suite.yaml + runs/ (no .lorabench, no plan.json) is reused, not refused."""
    out = tmp_path / "out"
    suite = _suite(tmp_path)
    first = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert first.returncode == 0, first.stderr
    (before,) = _records(out)
    (out / ".lorabench").unlink()
    (out / "plan.json").unlink()
    again = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert again.returncode == 0, again.stderr
    assert "(0 run now, 1 reused)" in again.stderr
    assert _records(out) == [before]
    assert json.loads((out / ".lorabench").read_text())["suite"] == "tiny"
    assert (out / "plan.json").is_file()


def test_out_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "some_file"
    target.write_text("mine\n")
    proc = run_cli("run", str(_suite(tmp_path)), "--out", str(target), "--no-progress")
    _usage_error(proc, "is a file, not a directory")
    assert target.read_text() == "mine\n"


def test_out_refuses_the_results_of_another_suite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lorabench").write_text(json.dumps({"suite": "other"}))
    proc = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-progress")
    _usage_error(proc, "holds the results of suite 'other'")


def test_a_second_run_on_a_locked_directory_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lorabench").write_text(json.dumps({"suite": "tiny"}))
    # This test's own process is alive on this host: the lock is held.
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"}
    (out / ".lock").write_text(json.dumps(lock))
    proc = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-progress")
    _usage_error(proc, f"locked by pid {os.getpid()} on {socket.gethostname()} since 2026-01-01T00:00:00+00:00")
    assert not (out / "runs").exists()
    assert json.loads((out / ".lock").read_text()) == lock


def test_device_pool_isolates_each_run_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    """--devices with fake ids on CPU: runs still succeed, each child saw only its device."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lorabench").write_text(json.dumps({"suite": "tiny"}))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"}
    (out / ".lock").write_text(json.dumps(stale))
    suite = _suite(tmp_path, methods="lora, full, bitfit")
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict", "--devices", "7,9")
    assert proc.returncode == 0, proc.stderr
    assert f"taking over a stale lock on {out} (pid {stale['pid']}" in proc.stderr
    assert not (out / ".lock").exists()
    recs = _records(out)
    assert len(recs) == 3 and {r["status"] for r in recs} == {"success"}
    for rec in recs:
        slot = rec["executor"]["device_slot"]
        assert rec["executor"]["name"] == "pool" and slot in ("7", "9")
        assert rec["env"]["cuda_visible_devices"] == slot  # what the run's own process saw
        assert rec["env"]["pool_devices"] == ["7", "9"]
        assert rec["import_s"] is not None and rec["isolation_s"] >= rec["import_s"]
    assert len({r["env"]["pid"] for r in recs}) == 3  # one process per run


def test_records_of_killed_runs_have_provenance_and_reruns_name_reused_failures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    suite = _suite(tmp_path, steps=100000, timeout=0.5)
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(out)
    assert rec["status"] == "timeout"  # the driver killed the run's process: it never reported
    missing = [k for k in PROVENANCE if k not in rec["env"]]
    assert not missing, missing
    assert rec["env"]["torch"] and rec["env"]["peft"] and rec["env"]["transformers"]
    assert isinstance(rec["env"]["git_dirty"], bool)

    again = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "1 reused record(s) did not succeed (1 timeout)" in again.stderr
    assert "rerun them with --retry-failed" in again.stderr
    assert _records(out) == [rec]  # reused, not rerun

    retry = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--retry-failed")
    assert retry.returncode == 0, retry.stderr
    assert "1 to run, 0 already recorded" in retry.stderr


def test_report_covers_only_the_current_plan(tmp_path: Path) -> None:
    """An edited suite rerun into its directory: the old record is listed, never merged into a row."""
    out = tmp_path / "out"
    assert run_cli("run", str(_suite(tmp_path, steps=2)), "--out", str(out), "--no-progress").returncode == 0
    (old,) = _records(out)
    proc = run_cli("run", str(_suite(tmp_path, steps=3)), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    new = next(r for r in _records(out) if r["run_id"] != old["run_id"])
    assert f"not in this suite: {old['run_id']}" in proc.stderr
    csv_text = (out / "runs.csv").read_text()
    assert new["run_id"] in csv_text and old["run_id"] not in csv_text
    assert len(csv_text.strip().splitlines()) == 2  # header + the current run only
    assert "failed" not in (out / "leaderboard.md").read_text()
    report = run_cli("report", str(out))
    assert report.returncode == 0, report.stderr
    assert f"not in this suite: {old['run_id']}" in report.stdout
    assert old["run_id"] not in (out / "runs.csv").read_text()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--devices", "0,0"), "lists a device twice"),
        (("--devices", "0,,1"), "comma-separated list of device ids"),
        (("--executor", "ray", "--devices", "0,1"), "--devices is for the local executor"),
        (("--address", "auto"), "--address is for --executor ray"),
    ],
)
def test_executor_flag_errors_exit_2(tmp_path: Path, flags: tuple[str, ...], needle: str) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-progress", *flags)
    _usage_error(proc, needle)
    assert not out.exists()


def test_a_killed_driver_takes_its_run_and_forkserver_with_it(tmp_path: Path) -> None:
    """SIGKILL of `lorabench run` mid-run leaves no process behind (no orphan holding a GPU)."""
    import signal
    import time

    import psutil

    from tests.conftest import REPO, cli_env

    out = tmp_path / "out"
    children: list[psutil.Process] = []
    driver = subprocess.Popen(
        [sys.executable, "-m", "lorabench", "run", str(_suite(tmp_path, steps=100000, timeout=600)), "--out", str(out)],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("runs/*/log.txt")) and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver exited before the run started"
            time.sleep(0.5)
        assert list(out.glob("runs/*/log.txt")), "the run never started"
        time.sleep(2)  # the run is in its own imports or training by now
        children = psutil.Process(driver.pid).children(recursive=True)
        assert len(children) >= 2  # the forkserver and the run
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        _gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [p.cmdline()[:3] for p in alive]
    finally:
        if driver.poll() is None:
            driver.kill()
        for p in children:
            if p.is_running():
                p.kill()
    log = next(out.glob("runs/*/log.txt")).read_text()
    assert "the driver exited; stopping this run" in log
    assert not list(out.glob("runs/*/record.json"))
