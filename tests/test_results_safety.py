"""Only lorabench's files, only inside its results directory, whole or not at all.

Results directories are built from the committed smoke baseline's records (no model
runs), and most commands run in-process through ``lorabench.cli.main``; the cases that
need a real process (signals, two commands at once) use the real entry point.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorabench.cli import main
from tests.conftest import REPO, cli_env

BASELINE = REPO / "results" / "baselines" / "smoke-cpu"
SUITE = """name: tiny
matrix: {model: [builtin:tiny-gpt2], method: [lora], task: [synthetic-lm]}
train: {steps: 2, batch_size: 4, max_seq_len: 32, warmup_steps: 1}
eval: {batch_size: 16, max_batches: 1}
"""


def results_dir(tmp_path: Path, name: str = "res", n: int = 4) -> Path:
    """A results directory lorabench made: marker, suite.yaml, plan.json and ``n`` real records."""
    out = tmp_path / name
    (out / "runs").mkdir(parents=True)
    recs = [json.loads(p.read_text()) for p in sorted(BASELINE.glob("runs/*/record.json"))[:n]]
    for rec in recs:
        (out / "runs" / rec["run_id"]).mkdir()
        (out / "runs" / rec["run_id"] / "record.json").write_text(json.dumps(rec))
    (out / ".lorabench").write_text(json.dumps({"suite": recs[0]["suite"]}))
    (out / "suite.yaml").write_text(f"name: {recs[0]['suite']}\n")
    (out / "plan.json").write_text(json.dumps([{"run_id": r["run_id"], "label": r["label"]} for r in recs]))
    return out


def cli(capsys, *args: str) -> tuple[int, str]:
    """``lorabench ARGS`` in-process: (exit code, stderr), asserting no traceback."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_report_refuses_a_project_that_merely_has_runs(tmp_path, capsys) -> None:
    proj = tmp_path / "project"
    (proj / "runs" / "exp1").mkdir(parents=True)
    (proj / "runs" / "exp1" / "record.json").write_text("{}")
    (proj / "report.md").write_text("my report\n")
    (proj / "runs.csv").write_text("a,b\n1,2\n")
    before = snapshot(proj)
    code, err = cli(capsys, "report", str(proj))
    assert code == 2 and "not a lorabench results directory" in err
    assert snapshot(proj) == before and sorted(p.name for p in proj.iterdir()) == ["report.md", "runs", "runs.csv"]


def test_report_writes_a_complete_set_and_a_plot_manifest(tmp_path, capsys) -> None:
    out = results_dir(tmp_path)
    (out / "plots").mkdir()
    (out / "plots" / "mine.png").write_bytes(b"my own picture")
    (out / "plots" / "old_ours.png").write_bytes(b"stale")
    (out / "plots" / ".lorabench-plots.json").write_text(json.dumps(["old_ours.png", "../escape.png"]))
    (tmp_path / "escape.png").write_bytes(b"outside")
    code, _ = cli(capsys, "report", str(out))
    assert code == 0
    listed = json.loads((out / "plots" / ".lorabench-plots.json").read_text())
    assert listed and all((out / "plots" / n).is_file() for n in listed)
    assert (out / "plots" / "mine.png").read_bytes() == b"my own picture"  # not in the manifest: left alone
    assert not (out / "plots" / "old_ours.png").exists()  # ours, no longer supported by the data
    assert (tmp_path / "escape.png").read_bytes() == b"outside"  # a manifest entry outside plots/ is ignored
    report = (out / "report.md").read_text()
    assert all(f"(plots/{n})" in report for n in listed)
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]  # no staging left behind


@pytest.mark.parametrize("link", ["plots", "runs.csv", "leaderboard.md", "report.html", "plots/throughput.png"])
def test_report_never_writes_through_a_symlink(tmp_path, capsys, link: str) -> None:
    out = results_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "throughput.png").write_bytes(b"victim's png")
    (victim / "file").write_text("victim's file\n")
    (out / link).parent.mkdir(exist_ok=True)
    (out / link).symlink_to(victim if link == "plots" else victim / "file")
    before = snapshot(victim)
    code, err = cli(capsys, "report", str(out))
    assert code == 2 and "is a symbolic link" in err and err.count("\n") == 1, err
    assert snapshot(victim) == before
    assert (out / link).is_symlink()


def test_run_refuses_links_in_its_directory_before_running_anything(tmp_path, capsys) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lorabench").write_text(json.dumps({"suite": "tiny"}))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "plan.json").write_text("precious\n")
    (out / "plan.json").symlink_to(victim / "plan.json")
    code, err = cli(capsys, "run", str(suite), "--out", str(out), "--no-progress")
    assert code == 2 and f"{out / 'plan.json'} is a symbolic link" in err
    assert (victim / "plan.json").read_text() == "precious\n"
    # a run's own directory linked elsewhere: refused before any run starts
    (out / "plan.json").unlink()
    from lorabench.validate import check_suite

    (spec,) = check_suite(str(suite)).specs
    (out / "runs").mkdir(exist_ok=True)
    (out / "runs" / spec.run_id).symlink_to(victim, target_is_directory=True)
    code, err = cli(capsys, "run", str(suite), "--out", str(out), "--no-progress", "--force")
    assert code == 2 and f"{out / 'runs' / spec.run_id} is a symbolic link" in err
    assert sorted(p.name for p in victim.iterdir()) == ["plan.json"]


@pytest.mark.parametrize("case", ["dangling", "under-a-file"])
def test_run_out_that_cannot_be_a_directory_exits_2(tmp_path, capsys, case: str) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    if case == "dangling":
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "nowhere")
        needle = "symbolic link to nothing"
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "sub"
        needle = "which is a file, not a directory"
    code, err = cli(capsys, "run", str(suite), "--out", str(out), "--no-progress")
    assert code == 2 and needle in err
    assert not (tmp_path / "nowhere").exists()


def test_run_refuses_an_unmarked_directory_of_another_suite_unless_force(tmp_path, capsys) -> None:
    from lorabench.results_dir import claim

    out = results_dir(tmp_path)
    (out / ".lorabench").unlink()
    (out / "suite.yaml").write_text("name: other-suite\n")
    with pytest.raises(Exception, match="holds the results of suite 'other-suite'"):
        claim(out, "tiny")
    claim(out, "tiny", force=True)
    assert json.loads((out / ".lorabench").read_text())["suite"] == "tiny"


def _read_only(monkeypatch, root: Path) -> None:
    """Simulate a read-only file system under ``root`` (running as root ignores chmod)."""
    real_open, real_mkdir = os.open, Path.mkdir

    def ro_open(path, flags, *a, **k):
        if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **k)

    def ro_mkdir(self, *a, **k):
        if str(self).startswith(str(root)) and not self.exists():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(Path, "mkdir", ro_mkdir)


def test_read_only_results_directory_is_one_line_for_run_and_report(tmp_path, capsys, monkeypatch) -> None:
    out = results_dir(tmp_path)
    before = snapshot(out)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    _read_only(monkeypatch, out)
    code, err = cli(capsys, "report", str(out))
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1, err
    code, err = cli(capsys, "run", str(suite), "--out", str(out / "sub"), "--no-progress")
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1, err
    assert snapshot(out) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_results_directory_by_permissions(tmp_path, capsys) -> None:
    out = results_dir(tmp_path)
    os.chmod(out, 0o555)
    try:
        code, err = cli(capsys, "report", str(out))
        assert code == 2 and "Permission denied" in err
    finally:
        os.chmod(out, 0o755)


def test_a_report_that_fails_midway_keeps_the_previous_complete_set(tmp_path, capsys, monkeypatch) -> None:
    out = results_dir(tmp_path)
    assert cli(capsys, "report", str(out))[0] == 0
    before = snapshot(out)
    import lorabench.report.build as build

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(build, "render_page", full_disk)  # everything else is already staged
    code, err = cli(capsys, "report", str(out))
    assert code == 2 and "No space left on device" in err and "previous one is kept" in err
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]


def test_an_unparseable_lock_is_taken_over_with_a_message(tmp_path, capsys) -> None:
    out = results_dir(tmp_path)
    (out / ".lock").write_text("")  # what a full disk left before locks were written whole
    code, err = cli(capsys, "report", str(out))
    assert code == 0 and "taking over a stale lock" in err and "cannot be read" in err
    assert not (out / ".lock").exists()


def test_report_waits_for_a_live_lock_then_exits_2(tmp_path, capsys) -> None:
    out = results_dir(tmp_path)
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"}
    (out / ".lock").write_text(json.dumps(lock))
    code, err = cli(capsys, "report", str(out), "--wait", "0.3")
    assert code == 2 and f"locked by pid {os.getpid()}" in err and "waiting for the lock" in err
    assert json.loads((out / ".lock").read_text()) == lock


_HOLDER = """
import random, sys, time
from pathlib import Path
import lorabench.results_dir as rd
read = rd._read_lock
rd._read_lock = lambda path: (read(path), time.sleep(random.random() / 10))[0]  # the race's window, widened
out, go, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
with rd.locked(out, wait_s=30.0):
    with open(log, "a") as fh:
        fh.write(f"{time.monotonic()} +\\n")
    time.sleep(0.2)
    with open(log, "a") as fh:
        fh.write(f"{time.monotonic()} -\\n")
"""


def test_commands_finding_the_same_stale_lock_take_it_over_one_at_a_time(tmp_path) -> None:
    """Each used to delete the stale lock, including the fresh one another had just created."""
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"}
    (out / ".lock").write_text(json.dumps(stale))
    go, log = tmp_path / "go", tmp_path / "held.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(go), str(log)], env=cli_env(), cwd=REPO)
        for _ in range(4)
    ]
    time.sleep(1.0)  # all four waiting on `go` (they import nothing heavy)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    events = [line.split() for line in log.read_text().splitlines()]
    depth = 0
    for _t, sign in sorted(events, key=lambda e: float(e[0])):
        depth += 1 if sign == "+" else -1
        assert depth <= 1, "two commands held the lock at once"
    assert len(events) == 8 and not (out / ".lock").exists() and not (out / ".lock.takeover").exists()


def _report_proc(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lorabench", "report", str(out)],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _consistent(out: Path) -> None:
    """Every plot report.md links exists, and runs.csv holds every record."""
    import csv
    import re

    report = (out / "report.md").read_text()
    for name in re.findall(r"\(plots/([^)]+)\)", report):
        assert (out / "plots" / name).is_file(), name
    with open(out / "runs.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(list(out.glob("runs/*/record.json")))


@pytest.mark.slow
def test_two_reports_at_once_both_succeed_and_sigterm_leaves_a_complete_set(tmp_path) -> None:
    out = results_dir(tmp_path, n=8)
    procs = [_report_proc(out), _report_proc(out)]
    for p in procs:
        _stdout, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, err
    _consistent(out)
    shutil.rmtree(out / "plots")
    (out / "report.md").unlink()
    assert _report_proc(out).wait(timeout=300) == 0
    for delay in (0.5, 1.5, 3.0, 5.0):
        p = _report_proc(out)
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=300)
        _consistent(out)
    assert _report_proc(out).wait(timeout=300) == 0
    assert not [q for q in out.iterdir() if q.name.startswith(".report-")]  # a killed report's staging is gone


# --- names that cannot break outputs (issue 20, item 6) ------------------------------------------


def test_names_that_would_break_files_or_tables_are_refused_at_validate(write_suite, capsys) -> None:
    suite = write_suite("""
        matrix: {model: [builtin:tiny-gpt2], method: [lora], task: [synthetic-lm, "bad\\nname"]}
        tasks:
          "a/b": {type: causal-lm}
        seeds: [0, 4294967296]
        train: {steps: 3}
    """)
    code, err = cli(capsys, "validate", str(suite))
    assert code == 2
    assert f"{suite}:1: task: name 'bad\\nname' contains control character(s) '\\n'" in err
    assert f"{suite}:3: tasks: name 'a/b' contains '/'" in err
    assert f"{suite}:4: seeds: should be < 2**32" in err


def _hostile_names(out: Path) -> list[dict]:
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]
    recs[0]["spec"]["model"]["name"] = "evil|model\nname"
    recs[0]["label"] = '=HYPERLINK("http://x")'
    recs[1]["spec"]["model"]["name"] = "@SUM(A1)"
    recs[1]["status"] = "failed"
    recs[1]["error"] = "-2+3 | broken\nsecond line"
    for rec in recs:
        (out / "runs" / rec["run_id"] / "record.json").write_text(json.dumps(rec))
    return recs


def test_markdown_and_csv_cells_are_escaped(tmp_path, capsys) -> None:
    import csv

    from lorabench.report.results import load_runs

    out = results_dir(tmp_path)
    recs = _hostile_names(out)
    assert cli(capsys, "report", str(out))[0] == 0
    board = (out / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("|")]
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in rows}
    assert len(widths) == 1, rows  # an escaped | stays inside its cell
    assert "evil\\|model name" in board
    report = (out / "report.md").read_text()
    assert "second line" in report and "\nsecond line" not in report
    with open(out / "runs.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    by_id = {r["run_id"]: r for r in csv_rows}
    assert by_id[recs[1]["run_id"]]["model"] == "'@SUM(A1)"
    assert by_id[recs[1]["run_id"]]["error"].startswith("'-2+3")
    assert all(not v.startswith(("=", "+", "@", "\t", "\r")) for r in csv_rows for v in r.values() if v)
    numbers = [float(r["trainable_pct"]) for r in csv_rows if r["trainable_pct"]]
    assert numbers  # numeric cells are still numbers
    # lorabench reads its own neutralised CSV back to the raw names: points match the records
    assert {r.key for r in load_runs(out / "runs.csv")} == {r.key for r in load_runs(out)}
    assert cli(capsys, "report", str(out), "--raw-csv")[0] == 0
    with open(out / "runs.csv", newline="") as fh:
        assert {r["run_id"]: r for r in csv.DictReader(fh)}[recs[1]["run_id"]]["model"] == "@SUM(A1)"


def test_negative_numbers_stay_numbers_in_csv() -> None:
    import pandas as pd

    from lorabench.report.escape import csv_safe_frame

    df = pd.DataFrame({"name": ["-x", "ok", "=1+1"], "value": [-1.5, 2.0, -3.0], "n": [-1, 0, 1]})
    safe = csv_safe_frame(df)
    assert list(safe["name"]) == ["'-x", "ok", "'=1+1"]
    assert list(safe["value"]) == [-1.5, 2.0, -3.0] and list(safe["n"]) == [-1, 0, 1]


# --- every error a clear line (issue 20, item 7) -------------------------------------------------

RECORD_CORRUPTIONS = {
    "invalid UTF-8": lambda rec: b'{"run_id": "\xff\xfe"}',
    "huge integer metric": lambda rec: {**rec, "metrics": {"perplexity": 10**400}},
    "spec missing": lambda rec: {k: v for k, v in rec.items() if k != "spec"},
    "spec null": lambda rec: {**rec, "spec": None},
    "metrics a list": lambda rec: {**rec, "metrics": [1, 2]},
    "profile a string": lambda rec: {**rec, "profile": "fast"},
}


@pytest.mark.parametrize("case", list(RECORD_CORRUPTIONS))
def test_a_corrupt_record_is_one_line_naming_its_file(tmp_path, capsys, case: str) -> None:
    out = results_dir(tmp_path)
    path = sorted(out.glob("runs/*/record.json"))[0]
    bad = RECORD_CORRUPTIONS[case](json.loads(path.read_text()))
    path.write_bytes(bad if isinstance(bad, bytes) else json.dumps(bad).encode())
    for args in (["report", str(out)], ["check", "--baseline", str(BASELINE), "--current", str(out)]):
        code, err = cli(capsys, *args)
        assert code == 2 and str(path) in err and err.count("\n") == 1, (case, err)


def test_a_corrupt_predictions_file_does_not_stop_the_report(tmp_path, capsys) -> None:
    out = results_dir(tmp_path)
    runs = sorted(out.glob("runs/*/"))
    (runs[0] / "predictions.jsonl").write_bytes(b'{"reference": "a", "prediction": "b"}\n\xff{not json\n[1,2]\n')
    (runs[1] / "predictions.jsonl").write_bytes(b"\x00" * 100)
    code, _ = cli(capsys, "report", str(out))
    assert code == 0
    assert "pred: `b`" in (out / "report.md").read_text()


def test_probe_env_says_nothing_when_the_driver_stopped_listening() -> None:
    """Ctrl-C during the environment probe: the driver closed its end; the probe must not print a traceback."""
    from lorabench.execute.entry import send_quietly

    class Closed:
        def send(self, msg: object) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def close(self) -> None:
            pass

    assert send_quietly(Closed(), {"x": 1}) is False


def test_freezing_a_baseline_replaces_only_a_baseline(tmp_path, capsys) -> None:
    from lorabench.report.baseline import main as baseline_main

    src = results_dir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    assert baseline_main([str(src), str(mine)]) == 2
    assert "not a lorabench baseline" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    old = tmp_path / "old"
    shutil.copytree(BASELINE, old)  # a baseline from before the marker: records and leaderboard.md only
    assert baseline_main([str(src), str(old)]) == 0
    assert json.loads((old / ".lorabench").read_text())["kind"] == "baseline"
    assert len(list(old.glob("runs/*/record.json"))) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".old")]  # swapped in, old copy removed
    from lorabench.results_dir import claim

    with pytest.raises(Exception, match="is a frozen baseline"):
        claim(old, "smoke")  # a run never writes into a baseline


def test_params_and_estimate_answer_a_huge_rank_from_the_config_and_refuse_rank_0(capsys) -> None:
    """--rank 10^8 once allocated ~38 GB of adapter weights; the count needs none (meta device)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _ = cli(capsys, "params", "builtin:tiny-gpt2", "--method", "lora", "--rank", "100000000", "--json")
    assert code == 0
    args = ["builtin:tiny-gpt2", "--method", "lora", "--precision", "fp32", "--batch-size", "1", "--seq-len", "8"]
    assert cli(capsys, "estimate", *args, "--rank", "100000000")[0] == 0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 2048, grown_mb  # adapter weights of rank 10^8 on this model would be tens of GB
    for cmd in (["params", "builtin:tiny-gpt2", "--method", "lora"], ["estimate", *args]):
        code, err = cli(capsys, *cmd, "--rank", "0")
        assert code == 2 and "--rank should be >= 1, got 0" in err, err


@pytest.mark.parametrize("content", ["[1, 2, 3]", "n_embd=-5"])
def test_a_config_json_that_cannot_build_a_model_is_one_line(tmp_path, capsys, content: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    if content == "n_embd=-5":
        from transformers import GPT2Config

        cfg = GPT2Config(n_layer=2, n_head=2, n_embd=16).to_dict()
        cfg["n_embd"] = -5
        content = json.dumps(cfg)
        needle = "n_embd must be >= 0, got -5"
    else:
        needle = "a config.json must be a JSON object, got list"
    (model / "config.json").write_text(content)
    for cmd in (
        ["params", str(model), "--method", "lora"],
        ["estimate", str(model), "--method", "lora", "--precision", "fp32", "--batch-size", "1", "--seq-len", "8"],
    ):
        code, err = cli(capsys, *cmd)
        assert code == 2 and needle in err and err.count("\n") == 1, err
