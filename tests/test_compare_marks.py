"""compare/check say only what matters: no mark on an unchanged value or a change inside the
noise, numbers as numbers in CSV, busy-host runs named, different training recipes warned."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from lorabench.record import recipe_hash
from lorabench.report.compare import check, compare_points, recipe_warnings, render
from lorabench.report.results import Run, group, load_runs
from tests.conftest import REPO, run_cli

BASELINE = REPO / "results" / "baselines" / "smoke-cpu"


def _run(values: dict[str, float], flags: tuple[str, ...] = (), recipe: str = "r1") -> Run:
    return Run(
        "a", ("t", "m", "lora", 8, "fp32"), 0, "success", values, "perplexity", ("perplexity",), flags, recipe=recipe
    )


def test_a_set_compared_with_itself_has_no_marks() -> None:
    runs = load_runs(BASELINE)
    md = render(compare_points(group(runs), group(runs)))
    table = md.split("Each cell:")[0]
    assert "▲" not in table and "▼" not in table and "→" not in table and "!" not in table


def test_changes_inside_the_noise_are_unmarked() -> None:
    base = group([_run({"perplexity": 5.757, "adapter_bytes": 34_028.0, "peak_mem_train_mb": 534.0})])
    cur = group([_run({"perplexity": 5.7571, "adapter_bytes": 34_029.0, "peak_mem_train_mb": 539.0})])
    md = render(compare_points(base, cur))
    cells = [c.strip() for c in md.splitlines()[4].strip("|").split("|")]
    assert cells[2:] == [
        "5.757",  # the same as shown: the value once, no arrow
        "34,028 → 34,029 (+0.0%)",  # a byte compared exactly, not flagged
        "534 → 539 (+0.9%)",  # RSS within its 3% noise
    ]
    steps = render(compare_points(group([_run({"step_ms": 21.6})]), group([_run({"step_ms": 22.7})])))
    assert "21.6 → 22.7 (+5.1%) |" in steps  # timing within its 25% noise: no mark
    worse = group([_run({"perplexity": 7.0, "adapter_bytes": 34_028.0, "peak_mem_train_mb": 534.0})])
    assert "5.757 → 7.000 (+21.6% ▼!)" in render(compare_points(base, worse))


def test_csv_and_json_numbers_are_numbers() -> None:
    base = group([_run({"perplexity": 5.0, "trainable_params": 43_017.0})])
    cur = group([_run({"perplexity": 6.0, "trainable_params": 43_017.0})])
    rows = list(csv.DictReader(io.StringIO(render(compare_points(base, cur), "csv"))))
    params = next(r for r in rows if r["metric"] == "trainable_params")
    assert params["baseline"] == "43017.0" and float(params["current"]) == 43_017
    ppl = next(r for r in rows if r["metric"] == "perplexity")
    assert float(ppl["rel"]) == 0.2 and float(ppl["delta"]) == 1.0
    deltas = json.loads(render(compare_points(base, cur), "json"))[0]["deltas"]
    assert all(isinstance(d["base"], float) for d in deltas)


def test_check_names_busy_host_runs_and_calls_their_timing_gate_unreliable() -> None:
    from lorabench.report.compare import parse_tolerances

    base = group([_run({"perplexity": 5.0, "tokens_per_s": 20_000.0})])
    cur = group([_run({"perplexity": 5.0, "tokens_per_s": 2_000.0}, flags=("busy_host",))])
    res = check(base, cur, parse_tolerances(["tokens_per_s=50%"]))
    assert any("busy host" in n and "m/lora-r8/fp32/t" in n and "unreliable" in n for n in res.notes)
    assert res.regressions and "[timed on a busy host: unreliable]" in res.regressions[0]


def test_compare_warns_when_matched_points_were_trained_differently(tmp_path: Path) -> None:
    assert recipe_warnings(group([_run({"perplexity": 5.0})]), group([_run({"perplexity": 5.0}, recipe="r2")]))
    other = tmp_path / "other"
    shutil.copytree(BASELINE, other)
    for path in other.glob("runs/*/record.json"):
        rec = json.loads(path.read_text())
        rec["spec"]["train"]["schedule"] = "constant"
        rec.pop("recipe", None)
        path.write_text(json.dumps(rec))
    proc = run_cli("compare", str(BASELINE), str(other))
    assert proc.returncode == 0 and "trained with a different recipe" in proc.stderr
    same = run_cli("compare", str(BASELINE), str(BASELINE))
    assert same.returncode == 0 and "different recipe" not in same.stderr


def test_the_recipe_hash_leaves_run_ids_alone() -> None:
    """Committed results keep their run_ids: the recipe is a separate field, from the spec."""
    from lorabench.spec import RunSpec

    for path in BASELINE.glob("runs/*/record.json"):
        rec = json.loads(path.read_text())
        assert RunSpec.from_dict(rec["spec"]).run_id == rec["run_id"] == path.parent.name
        assert recipe_hash(rec["spec"]) == recipe_hash(json.loads(json.dumps(rec["spec"])))


def test_cli_compare_of_a_set_with_itself_prints_no_change_marks(capsys: pytest.CaptureFixture[str]) -> None:
    """The Done-when, through the command: every format, the smoke baseline against itself."""
    from lorabench.cli import main

    for fmt in ("md", "csv", "json"):
        assert main(["compare", str(BASELINE), str(BASELINE), "--format", fmt]) == 0
        out, err = capsys.readouterr()
        table = out.split("Each cell:")[0]
        assert "tiny-gpt2/lora-r8/fp32/synthetic-lm" in table and err == ""
        assert not any(mark in table for mark in ("▲", "▼", "→", "!")), fmt
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(out)))
            assert rows and all(float(r["delta"]) == 0 and r["verdict"] == "same" for r in rows)
            assert {r["outside_noise"] for r in rows} == {"False"}
        if fmt == "json":
            deltas = [d for p in json.loads(out) for d in p["deltas"]]
            assert deltas and not any(d["outside_noise"] for d in deltas)


def test_cli_check_on_busy_host_runs_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Current runs timed while other processes held 80% of the CPUs, 4x slower: named, gate called unreliable."""
    from lorabench.cli import main

    busy = tmp_path / "busy"
    shutil.copytree(BASELINE, busy)
    for path in busy.glob("runs/*/record.json"):
        rec = json.loads(path.read_text())
        rec["profile"]["host_cpu_train"] = {**(rec["profile"].get("host_cpu_train") or {}), "other_cpu_share": 0.8}
        rec["profile"]["step_s"] = [s * 4 for s in rec["profile"]["step_s"]]
        path.write_text(json.dumps(rec))
    assert main(["check", "--baseline", str(BASELINE), "--current", str(busy), "--tol", "tokens_per_s=50%"]) == 1
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("note:") and "busy host" in line)
    labels = {Path(p).parent.name for p in busy.glob("runs/*/record.json")}
    assert len(labels) == 16 and "16 current point(s)" in note and "tiny-gpt2/ia3/fp32/synthetic-lm" in note
    assert "unreliable" in note
    regressions = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(regressions) == 16 and all("[timed on a busy host: unreliable]" in r for r in regressions)
    assert main(["check", "--baseline", str(BASELINE), "--current", str(busy)]) == 0  # quality only: passes
    assert "busy host" in capsys.readouterr().out  # ... and still names them


def test_a_setting_added_since_at_its_default_is_the_same_recipe(tmp_path: Path) -> None:
    """Records written before `alpha_ratio` existed and fresh ones (`alpha_ratio: null`) were 10 of the 16
    smoke points "trained with a different recipe" in every `make check`; a real change still counts."""
    path = next(p for p in BASELINE.glob("runs/*/record.json") if '"lora"' in p.read_text())
    spec = json.loads(path.read_text())["spec"]
    assert "alpha_ratio" not in spec["method_options"]
    fresh = json.loads(json.dumps(spec))
    fresh["method_options"]["alpha_ratio"] = None
    assert recipe_hash(fresh) == recipe_hash(spec)
    fresh["method_options"]["alpha_ratio"] = 2.0
    assert recipe_hash(fresh) != recipe_hash(spec)
    # Through the gate: a copy whose records gained the key at its default, and stored recipes that disagree.
    other = tmp_path / "other"
    shutil.copytree(BASELINE, other)
    for p in other.glob("runs/*/record.json"):
        rec = json.loads(p.read_text())
        rec["spec"]["method_options"].setdefault("alpha_ratio", None)
        rec["recipe"] = "stale0000000"  # as written by an older version: the reader hashes the spec itself
        p.write_text(json.dumps(rec))
    proc = run_cli("check", "--baseline", str(BASELINE), "--current", str(other))
    assert proc.returncode == 0 and "different recipe" not in proc.stderr, proc.stderr[-2000:]
