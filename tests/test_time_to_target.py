"""Time-to-target (issue 18, item 4) on hand-computable curves, and the energy counters it reads.

Curves are written by hand: each point says what training had cost when it was
evaluated, so the first point reaching the target, and its cost, can be read off.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lorabench.metrics import METRICS, record_values
from lorabench.quality import Target, default_target, time_to_target
from lorabench.record_data import Record
from lorabench.report.target import load_target, task_targets, with_time_to_target
from lorabench.run.energy import EnergyMeter
from tests.report_fixture import build_result_set

CURVE = [
    {"step": 4, "accuracy": 0.50, "train_tokens": 100, "train_s": 1.0},
    {"step": 9, "accuracy": 0.78, "train_tokens": 200, "train_s": 2.0, "train_j": 30.0},
    {"step": 14, "accuracy": 0.70, "train_tokens": 300, "train_s": 3.0, "train_j": 45.0},
]


def test_default_target_is_within_5_percent_of_the_best_final_value() -> None:
    assert default_target([0.8, 0.6], higher_is_better=True) == pytest.approx(0.76)
    assert default_target([2.0, 3.0], higher_is_better=False) == pytest.approx(2.0 / 0.95)
    assert default_target([], higher_is_better=True) is None


def test_the_first_point_reaching_the_target_gives_its_cost() -> None:
    got = time_to_target(CURVE, Target("accuracy", 0.76, "rule"))
    # Step index 9 is the 10th optimizer step; the later dip below the target does not matter.
    assert got == {
        "metric": "accuracy",
        "target": 0.76,
        "rule": "rule",
        "reached": True,
        "value": 0.78,
        "steps": 10,
        "tokens": 200,
        "seconds": 2.0,
        "joules": 30.0,
    }
    never = time_to_target(CURVE, Target("accuracy", 0.9, "rule"))
    assert never["reached"] is False and "steps" not in never


def test_lower_is_better_targets_are_reached_from_above() -> None:
    curve = [{"step": 0, "perplexity": 9.0, "train_tokens": 10, "train_s": 0.5}, {"step": 1, "perplexity": 4.0}]
    assert time_to_target(curve, Target("perplexity", 5.0, "r"))["steps"] == 2
    assert "joules" not in time_to_target(curve, Target("perplexity", 9.0, "r"))  # not measured: absent


def test_time_to_target_figures_are_registered_costs_lower_is_better() -> None:
    for name in ("steps_to_target", "tokens_to_target", "seconds_to_target", "joules_to_target"):
        m = METRICS.get(name)
        assert m.kind == "cost" and not m.higher_is_better
    for name in ("forgetting_perplexity", "forgetting_pair_retrieval"):
        assert METRICS.get(name).kind == "quality" and not METRICS.get(name).higher_is_better


def _lm_records(tmp_path: Path) -> tuple[Path, list[Record]]:
    """The report fixture with hand-made eval curves on synthetic-lm: each run's final perplexity is known."""
    out, records = build_result_set(tmp_path / "set", seeds=2)
    lm = [r for r in records if r["spec"]["task"] == "synthetic-lm" and r["status"] == "success"]
    for i, rec in enumerate(lm):
        final = 4.0 + i  # the best run ends at 4.0: target 4.0 / 0.95 = 4.2105
        rec["metrics"]["forgetting_perplexity"] = 0.25 * i  # a forgetting reference's change (tasks.forgetting)
        rec["curves"]["eval"] = [
            {"step": 9, "perplexity": final + 2.0, "train_tokens": 640, "train_s": 1.0},
            {"step": 19, "perplexity": final + 0.2, "train_tokens": 1280, "train_s": 2.0},
            {"step": 29, "perplexity": final, "train_tokens": 1920, "train_s": 3.0},
        ]
        (out / "runs" / rec["run_id"] / "record.json").write_text(json.dumps(rec))
    return out, [Record.from_dict(r) for r in records]


def test_targets_and_times_come_from_the_records_curves(tmp_path: Path) -> None:
    _out, records = _lm_records(tmp_path)
    targets = task_targets(records)
    assert set(targets) == {"synthetic-lm"}  # the other tasks' records have no eval curve
    assert targets["synthetic-lm"].value == pytest.approx(4.0 / 0.95)
    by_final = {}
    for rec in with_time_to_target(records):
        ttt = rec.profile.time_to_target
        if ttt:
            by_final[rec.curves["eval"][-1]["perplexity"]] = ttt
    # final 4.0: 4.2 at step 19 reaches 4.2105 -> 20 steps, 1280 tokens; final 5.0 never does.
    assert (by_final[4.0]["steps"], by_final[4.0]["tokens"], by_final[4.0]["seconds"]) == (20, 1280, 2.0)
    assert by_final[5.0]["reached"] is False
    assert all(not r.profile.has("time_to_target") for r in records)  # the records themselves are not changed
    assert task_targets(records, ("perplexity", 7.0))["synthetic-lm"] == Target("perplexity", 7.0, "select.target")


def test_select_target_is_read_from_the_results_suite_copy(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text("select: {metric: accuracy, over: [lr], target: 0.8}\n")
    assert load_target(tmp_path) == ("accuracy", 0.8)
    (tmp_path / "suite.yaml").write_text("select: {metric: accuracy, over: [lr]}\n")
    assert load_target(tmp_path) is None  # no target: the default rule
    (tmp_path / "suite.yaml").write_text("select: [broken\n")
    assert load_target(tmp_path) is None


def test_leaderboard_report_page_and_plot_show_time_to_target(tmp_path: Path) -> None:
    from lorabench.report import build_report

    out, records = _lm_records(tmp_path)
    build_report(out, records)
    board = (out / "leaderboard.md").read_text()
    assert "to target: steps" in board and "to target: tokens" in board
    assert "perplexity <= 4.211 (95% of the best run's final perplexity" in board
    assert "(1/2 reached)" in board and "(0/2 reached)" in board  # seeds that never reached it are counted
    html = (out / "report.html").read_text()
    data = json.loads(re.search(r'<script id="lb-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["targets"]["synthetic-lm"]["target"] == pytest.approx(4.0 / 0.95)
    series = [p["quality_cost"] for p in data["points"] if p["task"] == "synthetic-lm" and p["quality_cost"]]
    assert series and all(s["tokens"] == [640, 1280, 1920] for s in series)
    assert (out / "plots" / "time_to_quality_synthetic-lm.png").is_file()
    assert 'id="ttq-chart"' in html
    # Forgetting is a registered quality metric: a leaderboard column and a report column, lower is better.
    assert "forgetting_perplexity" in board
    cols = {c["key"]: c for c in data["columns"]["synthetic-lm"]}
    assert "forgetting_perplexity" in cols and "lower" in json.dumps(data["metrics"]["forgetting_perplexity"])
    row = next(r for r in with_time_to_target(records) if (r.profile.time_to_target or {}).get("reached"))
    assert record_values(row)["tokens_to_target"] == 1280


def _zone(root: Path, name: str, energy_uj: int, max_uj: int = 1000_000_000) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_sums_package_domains_and_survives_a_counter_wrap(tmp_path: Path) -> None:
    pkg0 = _zone(tmp_path, "intel-rapl:0", 5_000_000)
    pkg1 = _zone(tmp_path, "intel-rapl:1", 999_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 1)  # a sub-domain: part of package 0, never added
    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert meter.source == "rapl"
    meter.start()
    (pkg0 / "energy_uj").write_text("7000000\n")  # +2 J
    (pkg1 / "energy_uj").write_text("1000000\n")  # wrapped at 1000 J: +2 J
    assert meter.joules() == pytest.approx(4.0)
    assert meter.describe(4.0)["train_j"] == 4.0


def test_no_readable_counter_is_absent_with_the_reason(tmp_path: Path) -> None:
    meter = EnergyMeter("cpu", powercap=tmp_path / "none")
    assert meter.source is None and meter.joules() is None
    assert meter.describe(None) == {"source": None, "train_j": None, "reason": meter.reason}
    assert "no RAPL package domain" in meter.reason
    zone = _zone(tmp_path / "pc", "intel-rapl:0", 1)
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # unreadable as a file, like a root-only counter
    assert "not readable" in EnergyMeter("cpu", powercap=tmp_path / "pc").reason


@pytest.mark.slow
def test_a_run_records_time_to_the_suites_explicit_target(tmp_path: Path) -> None:
    """With `select.target`, record.json carries `profile.time_to_target`; the report's figure is the same."""
    from tests.conftest import run_cli

    suite = tmp_path / "t.yaml"
    suite.write_text(
        """
name: t
matrix: {model: [builtin:tiny-gpt2], method: [lora], task: [lm]}
tasks:
  lm: {type: causal-lm, data: {synthetic: facts, val_fraction: 0.2}, n_train: 40, n_eval: 16}
seeds: [0]
select: {metric: perplexity, target: 1.0e+6}
train: {steps: 4, batch_size: 4, max_seq_len: 32, warmup_steps: 1}
eval: {every: 2}
execution: {threads: 1}
"""
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (out / "runs").glob("*/record.json")
    rec = Record.from_dict(json.loads(path.read_text()))
    ttt = rec.profile.time_to_target
    curve = rec.curves["eval"]
    # Any perplexity is below 1e6: the first evaluation (after 2 steps) reaches it.
    assert ttt == time_to_target(curve, Target("perplexity", 1.0e6))
    assert (ttt["reached"], ttt["steps"], ttt["rule"]) == (True, 2, "select.target")
    assert ttt["tokens"] == curve[0]["train_tokens"] > 0 and ttt["seconds"] == curve[0]["train_s"] > 0
    (reported,) = with_time_to_target([rec], load_target(out))
    assert reported.profile.time_to_target == ttt


def test_curves_draw_one_line_per_point_at_its_selected_rate_over_its_seeds() -> None:
    """The committed real-weights sweep: 45 runs (5 points x 3 rates x 3 seeds) are 5 lines, each the
    leaderboard's selected rate, each the mean of its 3 seeds with their range as the band."""
    from lorabench.record import load_records
    from lorabench.report.plots import curve_series, mean_curve

    out = Path(__file__).resolve().parents[1] / "results" / "examples-real-fair"
    records = load_records(out)
    assert len(records) == 45
    series = curve_series(records, "accuracy")
    board = (out / "leaderboard.md").read_text()
    assert len(series) == 5 and all(len(s.runs) == 3 for s in series)
    for s in series:
        (lr,) = {r.spec["train"]["lr"] for r in s.runs}
        assert f"lr={lr:g} selected" in s.label and f"(lr={lr:g} selected)" in board
        assert sorted(r.spec["seed"] for r in s.runs) == [0, 1, 2]
    # The band: the mean and the range of the seeds at each step, hand-checked on two seeds.
    xs, mean, lo, hi = mean_curve([[(0, 0.5, 10.0), (1, 0.7, 20.0)], [(0, 0.6, 12.0), (1, None, 22.0)]])
    assert (xs, mean, lo, hi) == ([11.0, 20.0], [pytest.approx(0.55), 0.7], [0.5, 0.7], [0.6, 0.7])
    # Without `select`, every rate is its own line.
    assert len(curve_series(records)) == 15
