"""The metric registry, aggregation, leaderboards, compare and the ``check`` regression gate.

Records here are written by hand (the smallest dicts the report side reads), except the
fresh smoke run that must pass the committed baseline.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from lorabench.errors import UsageError
from lorabench.metrics import METRICS, record_values
from lorabench.record_data import Record
from lorabench.report.compare import check, compare_points, parse_tolerances, render
from lorabench.report.leaderboard import leaderboard, pareto_points, runs_frame
from lorabench.report.results import Run, group, run_from_record, sort_points
from lorabench.stats import aggregate, t_critical
from tests.conftest import REPO, run_cli

BASELINE = REPO / "results" / "baselines" / "smoke-cpu"
TASK_TYPE = {
    "synthetic-lm": "causal-lm",
    "synthetic-sentiment": "classification",
    "synthetic-dialogsum": "summarization",
}


def make_record(
    method: str,
    metrics: dict[str, float],
    *,
    task: str = "synthetic-lm",
    rank: int | None = 8,
    precision: str = "fp32",
    seed: int = 0,
    status: str = "success",
    profile: dict[str, Any] | None = None,
    flags: list[str] | None = None,
) -> dict[str, Any]:
    run_id = f"{method}{rank}{precision}{task}{seed}"
    return {
        "run_id": run_id,
        "label": f"m/{method}/{precision}/{task}/s{seed}",
        "suite": "t",
        "status": status,
        "error": None if status == "success" else "boom",
        "spec": {
            "model": {"name": "m"},
            "method": method,
            "rank": rank,
            "precision": precision,
            "task": task,
            "seed": seed,
            "task_options": {"type": TASK_TYPE[task]},
        },
        "metrics": metrics if status == "success" else {},
        "profile": profile
        or {
            "trainable_params": 8762,
            "total_params": 286780,
            "trainable_pct": 3.0553,
            "tokens_per_s": 22100.5,
            "adapter_bytes": 43017,
            "memory_mb": {"train": {"rss": 420.0, "nvml": None}},
        },
        "flags": flags or [],
    }


def typed(records: list[dict[str, Any]]) -> list[Record]:
    """The readers' view of records written as JSON (what load_records returns)."""
    return [Record.from_dict(r) for r in records]


def write_set(root: Path, records: list[dict[str, Any]]) -> Path:
    for rec in records:
        path = root / "runs" / rec["run_id"] / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    return root


# -- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", METRICS.names())
def test_sorting_follows_the_registered_direction(name: str) -> None:
    """For every registered metric, the best value comes first (order asserted, not a substring)."""
    runs = [Run(f"r{v}", ("t", "m", f"x{v}", None, "fp32"), 0, "success", {name: v}, name, (name,)) for v in (1, 3, 2)]
    order = [p.aggs[name].mean for p in sort_points(group(runs), name)]
    assert order == ([3, 2, 1] if METRICS.get(name).higher_is_better else [1, 2, 3])


def test_every_task_metric_is_registered_as_quality() -> None:
    from lorabench.tasks import TASK_TYPES

    for ttype in TASK_TYPES:
        cls = TASK_TYPES.get(ttype)
        assert cls.primary_metric in cls.metrics
        for name in cls.metrics:
            assert METRICS.get(name).kind == "quality", name


def test_an_unregistered_metric_is_an_error_not_a_dropped_column() -> None:
    rec = make_record("lora", {"perplexity": 5.0, "bleu": 3.0})
    with pytest.raises(UsageError, match="metric 'bleu' is not registered"):
        record_values(Record.from_dict(rec))


def test_unregistered_profile_keys_are_ignored_and_peak_memory_names_its_source() -> None:
    rec = make_record("lora", {"perplexity": 5.0})
    rec["profile"]["mfu_future"] = 0.3
    rec["profile"]["memory_mb"]["train"] = {"rss": 420.0, "reserved": 100.0, "nvml": 130.0}
    values = record_values(Record.from_dict(rec))
    assert "mfu_future" not in values and values["peak_mem_train_mb"] == 130.0


def test_formats_integers_as_integers_and_never_scientific() -> None:
    assert METRICS.get("trainable_params").format(8762.0) == "8,762"
    assert METRICS.get("tokens_per_s").format_ci(22100.4, 11550.2, 3) == "22,100 ± 11,550"
    assert METRICS.get("perplexity").format_ci(5.6761, 0.01234, 2) == "5.676 ± 0.012"
    assert METRICS.get("trainable_pct").format_ci(100.0, 0.0, 1) == "100"


# -- aggregation ------------------------------------------------------------------------------


def test_student_t_interval_over_seeds() -> None:
    agg = aggregate([1.0, 2.0, 3.0, None, math.nan])
    assert agg is not None and (agg.mean, agg.std, agg.n) == (2.0, 1.0, 3)
    assert agg.half == pytest.approx(4.303 / math.sqrt(3))
    assert aggregate([5.0]).half is None and aggregate([]) is None
    assert t_critical(1) == 12.706 and t_critical(1000) == pytest.approx(1.96, abs=1e-3)


# -- leaderboards -----------------------------------------------------------------------------


def test_one_table_per_task_sorted_by_primary_with_failures_as_rows() -> None:
    records = [
        make_record("lora", {"perplexity": 5.0, "token_accuracy": 0.4, "eval_loss": 1.6}),
        make_record("full", {"perplexity": 3.6, "token_accuracy": 0.5, "eval_loss": 1.3}, rank=None),
        make_record("dora", {}, rank=64, status="oom"),
        make_record("dora", {}, rank=16, status="failed"),
        make_record("lora", {"accuracy": 0.85, "macro_f1": 0.84}, task="synthetic-sentiment"),
    ]
    _, md = leaderboard(typed(records))
    sections = md.split("## ")[1:]
    assert [s.split(" ")[0] for s in sections] == ["synthetic-lm", "synthetic-sentiment"]
    lm_rows = [line for line in sections[0].splitlines() if line.startswith("| m ")]
    assert [r.split("|")[2].strip() + r.split("|")[3].strip() for r in lm_rows] == [
        "full-",
        "lora8",
        "dora16",
        "dora64",
    ]
    assert "oom" in lm_rows[3] and "failed" in lm_rows[2]
    assert "macro_f1" not in sections[0] and "perplexity" not in sections[1]
    assert "8,762" in lm_rows[1] and "8762.0" not in md and "e+" not in md


def test_runs_csv_keeps_integers_and_every_field() -> None:
    df = runs_frame(typed([make_record("lora", {"perplexity": 5.0}), make_record("x", {}, status="failed")]))
    assert str(df["trainable_params"].dtype) == "Int64" and str(df["rank"].dtype) == "Int64"
    assert {"run_id", "seed", "peak_mem_train_mb", "mem_source", "flags", "primary_metric", "error"} <= set(df)


def test_flags_get_a_marker_and_a_legend() -> None:
    _, md = leaderboard(typed([make_record("lora", {"perplexity": 5.0}, flags=["did_not_learn"])]))
    assert "DNL" in md and "**DNL** did_not_learn: training loss did not fall" in md


def test_pareto_ignores_differences_inside_the_noise() -> None:
    """2 MiB of RSS apart is noise: the better-quality point alone is on the front."""

    def run(name: str, ppl: float, mem: float) -> Run:
        return Run(
            name, ("t", "m", name, None, "fp32"), 0, "success", {"perplexity": ppl, "peak_mem_train_mb": mem}, None, ()
        )

    points = group([run("a", 5.0, 420.0), run("b", 8.0, 418.0), run("c", 6.0, 300.0), run("d", 5.5, 200.0)])
    front = {points[i].key[2] for i in pareto_points(points, "perplexity")}
    # b uses 2 MiB less than a (noise) and is worse: dominated; c is beaten by d on both axes.
    assert front == {"a", "d"}
    # A point within perplexity's 5% tolerance of the best and much cheaper takes its place.
    points = group([run("a", 5.0, 420.0), run("e", 5.1, 200.0)])
    assert {points[i].key[2] for i in pareto_points(points, "perplexity")} == {"e"}


# -- compare and check ------------------------------------------------------------------------


def test_compare_reads_the_direction_from_the_registry() -> None:
    base = group(
        [Run("a", ("t", "m", "lora", 8, "fp32"), 0, "success", {"perplexity": 5.0, "accuracy": 0.8}, None, ())]
    )
    cur = group([Run("a", ("t", "m", "lora", 8, "fp32"), 0, "success", {"perplexity": 6.0, "accuracy": 0.9}, None, ())])
    deltas = {d.metric: d for d in compare_points(base, cur)[0].deltas}
    assert deltas["perplexity"].verdict == "worse" and deltas["perplexity"].outside_noise
    assert deltas["accuracy"].verdict == "better"
    assert "▼!" in render(compare_points(base, cur)) and json.loads(render(compare_points(base, cur), "json"))


def test_check_with_seeds_and_explicit_tolerances() -> None:
    def runs(ppl: list[float]) -> list[Run]:
        return [
            Run(f"a{i}", ("t", "m", "lora", 8, "fp32"), i, "success", {"perplexity": v}, None, ())
            for i, v in enumerate(ppl)
        ]

    assert check(group(runs([5.0, 5.1])), group(runs([5.1, 5.2]))).ok  # +2%: inside the default 5%
    res = check(group(runs([5.0, 5.1])), group(runs([5.1, 5.2])), parse_tolerances(["perplexity=1%"]))
    assert not res.ok and "perplexity" in res.regressions[0]
    assert check(group(runs([5.0])), group(runs([4.0]))).improvements  # better never fails
    with pytest.raises(UsageError, match="expected METRIC=ABS or METRIC=REL%"):
        parse_tolerances(["perplexity"])


def worsen(src: Path, dst: Path) -> Path:
    """A copy of a result set with perplexity up 20%, accuracy down 0.1 and ROUGE down 10 points."""
    shutil.copytree(src, dst)
    for path in dst.glob("runs/*/record.json"):
        rec = json.loads(path.read_text())
        m = rec["metrics"]
        if "perplexity" in m:
            m["perplexity"] *= 1.2
        if "accuracy" in m:
            m["accuracy"] -= 0.1
        for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            if k in m:
                m[k] -= 10.0
        path.write_text(json.dumps(rec))
    return dst


def test_check_cli_passes_itself_fails_a_worse_copy_and_rejects_bad_input(tmp_path: Path) -> None:
    assert (BASELINE / "runs").is_dir(), "the committed baseline is missing: run `make baseline`"
    ok = run_cli("check", "--baseline", str(BASELINE), "--current", str(BASELINE))
    assert ok.returncode == 0, ok.stdout + ok.stderr

    worse = worsen(BASELINE, tmp_path / "worse")
    full = next(p for p in worse.glob("runs/*/record.json") if json.loads(p.read_text())["spec"]["method"] == "full")
    shutil.rmtree(full.parent)  # and one grid point gone
    bad = run_cli("check", "--baseline", str(BASELINE), "--current", str(worse))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = [line for line in bad.stdout.splitlines() if "REGRESSION" in line]
    n_lm = sum("synthetic-lm" in line and "perplexity" in line for line in lines)
    assert n_lm == 13 and any("accuracy 0." in line for line in lines) and any("rougeL " in line for line in lines)
    assert sum("missing from the current results" in line for line in lines) == 1

    for args in (
        ("--baseline", str(BASELINE), "--current", str(tmp_path / "nope")),
        ("--baseline", str(BASELINE), "--current", str(BASELINE), "--tol", "perplxity=2%"),
    ):
        proc = run_cli("check", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "error:" in proc.stderr

    broken = tmp_path / "broken"
    shutil.copytree(BASELINE, broken)
    next(broken.glob("runs/*/record.json")).write_text("{not json")
    proc = run_cli("check", "--baseline", str(BASELINE), "--current", str(broken))
    assert proc.returncode == 2 and "cannot read record" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_cli_formats(tmp_path: Path) -> None:
    worse = worsen(BASELINE, tmp_path / "worse")
    for fmt in ("md", "csv", "json"):
        proc = run_cli("compare", str(BASELINE), str(worse), "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "perplexity" in proc.stdout
    assert "▼!" in run_cli("compare", str(BASELINE), str(worse)).stdout


@pytest.mark.slow
def test_a_fresh_smoke_run_passes_the_committed_baseline(tmp_path: Path) -> None:
    """What CI does: the smoke suite from scratch (cached built-in models), gated against the baseline."""
    out = tmp_path / "smoke"
    # ~1 min on 2 idle cores; far longer on a loaded machine, hence the generous timeout.
    proc = run_cli("run", "suites/smoke.yaml", "--out", str(out), "--no-progress", "--strict", timeout=2400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert len(rec["profile"]["step_s"]) == rec["profile"]["timed_steps"]
    gate = run_cli("check", "--baseline", str(BASELINE), "--current", str(out))
    assert gate.returncode == 0, gate.stdout
    worse = run_cli("check", "--baseline", str(BASELINE), "--current", str(worsen(out, tmp_path / "worse")))
    assert worse.returncode == 1


def test_report_is_self_contained_escaped_with_compare_view_and_run_filter(tmp_path: Path) -> None:
    from lorabench.report import build_report

    records = [
        make_record("lora", {"perplexity": 5.0, "token_accuracy": 0.4, "eval_loss": 1.6}),
        make_record("full", {"perplexity": 3.6, "token_accuracy": 0.5, "eval_loss": 1.3}, rank=None),
        make_record("dora", {}, status="failed"),
        make_record("ia3", {"perplexity": 9.0, "token_accuracy": 0.3, "eval_loss": 2.2}, rank=None),
    ]
    records[2]["error"] = "<script>alert(1)</script>"
    out = write_set(tmp_path / "set", records)
    base = worsen(out, tmp_path / "base")
    keep = [r["run_id"] for r in records[:3]]
    build_report(out, typed(records), run_ids=keep, baseline=base)
    page = (out / "report.html").read_text()
    # The error is data inside the page's JSON block, where no "<" survives to close it.
    assert "<script>alert" not in page and "\\u003cscript\\u003ealert(1)" in page
    assert 'src="http' not in page and 'src="//' not in page
    assert "Compared with the baseline" in page and '"others":[{"label":"m/ia3/' in page
    assert (out / "compare.md").is_file() and "▲" in (out / "compare.md").read_text()  # perplexity lower than base
    assert "ia3" not in (out / "leaderboard.md").read_text()


def test_a_runs_csv_is_the_same_result_set_as_its_records(tmp_path: Path) -> None:
    from lorabench.report.results import load_runs

    out = write_set(tmp_path / "set", [make_record("lora", {"perplexity": 5.0}), make_record("x", {}, status="oom")])
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    runs_frame(typed(records)).to_csv(out / "runs.csv", index=False)
    diffs = compare_points(group(load_runs(out)), group(load_runs(out / "runs.csv")))
    assert len(diffs) == 2 and all(p.base_status == p.current_status for p in diffs)
    assert all(d.verdict == "same" and d.delta == 0 for p in diffs for d in p.deltas)
    assert {d.metric for p in diffs for d in p.deltas} >= {"perplexity", "peak_mem_train_mb", "trainable_params"}


@pytest.mark.parametrize(("other", "flagged"), [(0.6, True), (0.05, False), (None, False)])
def test_timings_taken_on_a_busy_host_are_flagged(other: float | None, flagged: bool) -> None:
    from lorabench.report.results import run_from_record

    profile = {"tokens_per_s": 100.0, "host_cpu_train": {"cpus": 2, "own_cpu_share": 0.4, "other_cpu_share": other}}
    run = run_from_record(Record.from_dict(make_record("lora", {"perplexity": 3.0}, profile=profile)))
    assert ("busy_host" in run.flags) is flagged


# -- the gate judges the suite it is given (issue 20) -----------------------------------------


def write_plan(root: Path, records: list[dict[str, Any]]) -> None:
    (root / "plan.json").write_text(json.dumps([{"run_id": r["run_id"], "label": r["label"]} for r in records]))


def test_check_judges_only_the_plan_and_names_the_records_it_ignores(tmp_path: Path) -> None:
    """A rerun after a suite change keeps the old records; averaging them in hid a +8% regression (as +4%)."""
    base = write_set(tmp_path / "base", [make_record("lora", {"perplexity": 5.0})])
    stale = make_record("lora", {"perplexity": 5.0})
    fresh = make_record("lora", {"perplexity": 5.4})
    fresh["run_id"] = "fresh-steps-changed"
    foreign = make_record("ia3", {"perplexity": 1.0}, rank=None)  # copied in from another suite
    foreign["run_id"] = "from-another-suite"
    cur = write_set(tmp_path / "cur", [stale, fresh, foreign])
    write_plan(cur, [fresh])
    proc = run_cli("check", "--baseline", str(base), "--current", str(cur))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REGRESSION m/lora-r8/fp32/synthetic-lm: perplexity 5.000 -> 5.400" in proc.stdout
    ignored = [line for line in proc.stdout.splitlines() if line.startswith("ignored:")]
    assert len(ignored) == 2 and any(stale["run_id"] in x for x in ignored)
    assert any("from-another-suite m/ia3/fp32/synthetic-lm/s0" in x for x in ignored)
    assert "ia3" not in proc.stdout.replace(ignored[0], "").replace(ignored[1], "")  # not a "new point"
    # compare keeps stdout for the table: what it ignored goes to stderr.
    proc = run_cli("compare", str(base), str(cur), "--format", "json")
    assert proc.returncode == 0 and "from-another-suite" in proc.stderr
    assert [p["label"] for p in json.loads(proc.stdout)] == ["m/lora-r8/fp32/synthetic-lm"]
    # A bare runs.csv is read as written: both lora records count.
    records = [json.loads(p.read_text()) for p in cur.glob("runs/*/record.json")]
    runs_frame(typed(records)).to_csv(tmp_path / "all.csv", index=False)
    from lorabench.report.results import load_result_set

    assert len(load_result_set(tmp_path / "all.csv").runs) == 3


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty-runs-dir", None),
        ("blank.csv", ""),
        ("unrelated.csv", "a,b,c\n"),
        ("header-only.csv", "run_id,status,task,model,method,rank,precision,seed,perplexity\n"),
    ],
)
def test_an_empty_set_is_a_usage_error_not_ok(tmp_path: Path, name: str, content: str | None) -> None:
    path = tmp_path / name
    if content is None:
        (path / "runs").mkdir(parents=True)
    else:
        path.write_text(content)
    for args in (
        ("--baseline", str(path), "--current", str(BASELINE)),
        ("--baseline", str(BASELINE), "--current", str(path)),
    ):
        proc = run_cli("check", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "error:" in proc.stderr and "ok" not in proc.stdout
    proc = run_cli("compare", str(path), str(BASELINE))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_sets_with_no_point_in_common_or_no_baseline_success_cannot_pass() -> None:
    lm = group([run_from_record(r) for r in typed([make_record("lora", {"perplexity": 5.0})])])
    cls = group(
        [run_from_record(r) for r in typed([make_record("lora", {"accuracy": 0.8}, task="synthetic-sentiment")])]
    )
    with pytest.raises(UsageError, match="share no grid point"):
        check(lm, cls)
    failed = group([run_from_record(r) for r in typed([make_record("lora", {}, status="failed")])])
    with pytest.raises(UsageError, match="nothing to gate against"):
        check(failed, lm)
    assert not check(lm, failed).ok  # a point that now fails is a regression, not a usage error


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_metric_in_a_success_record_fails_its_point(tmp_path: Path, bad: float) -> None:
    seeds = [make_record("lora", {"perplexity": 5.0}, seed=0), make_record("lora", {"perplexity": bad}, seed=1)]
    (point,) = group([run_from_record(r) for r in typed(seeds)])
    assert point.n == 1 and point.status == "diverged 1/2, success 1/2"
    _, md = leaderboard(typed(seeds))
    assert "diverged 1/2" in md
    frame = runs_frame(typed(seeds))
    assert list(frame["status"]) == ["success", "diverged"] and "non-finite metric" in frame["error"][1]
    base = write_set(tmp_path / "base", [make_record("lora", {"perplexity": 5.0}, seed=s) for s in (0, 1)])
    cur = write_set(tmp_path / "cur", seeds)
    proc = run_cli("check", "--baseline", str(base), "--current", str(cur))
    assert proc.returncode == 1 and "now diverged 1/2, success 1/2 (baseline: success)" in proc.stdout
    # Through a runs.csv too: pandas writes NaN as an empty cell, so the status carries it.
    frame.to_csv(tmp_path / "cur.csv", index=False)
    proc = run_cli("check", "--baseline", str(base), "--current", str(tmp_path / "cur.csv"))
    assert proc.returncode == 1 and "now diverged" in proc.stdout
    csv_text = (tmp_path / "cur.csv").read_text().replace("diverged", "success")  # a hand-edited CSV
    (tmp_path / "edited.csv").write_text(csv_text)
    proc = run_cli("check", "--baseline", str(base), "--current", str(tmp_path / "edited.csv"))
    assert proc.returncode == 1 and "now diverged" in proc.stdout


def test_tolerances_are_finite_and_non_negative_and_loose_ones_warn() -> None:
    from lorabench.report.compare import tolerance_warnings

    for item in ("perplexity=1e999", "perplexity=-1", "perplexity=-5%", "accuracy=1e400%"):
        with pytest.raises(UsageError, match="finite number >= 0"):
            parse_tolerances([item])
    assert tolerance_warnings(parse_tolerances(["perplexity=150%"]))
    assert not tolerance_warnings(parse_tolerances(["perplexity=50%", "accuracy=2"]))
    proc = run_cli("check", "--baseline", str(BASELINE), "--current", str(BASELINE), "--tol", "perplexity=1e999")
    assert proc.returncode == 2 and "finite number >= 0" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("check", "--baseline", str(BASELINE), "--current", str(BASELINE), "--tol", "perplexity=200%")
    assert proc.returncode == 0 and "warning: --tol perplexity=200%" in proc.stderr


@pytest.mark.slow
def test_a_rerun_with_changed_steps_is_judged_without_its_stale_records(tmp_path: Path) -> None:
    """The default flow: change `steps`, rerun into the same directory, gate it. Stale records stay
    (resume needs them) but only the plan's count: the gate sees the regression a runs.csv shows."""
    suite = tmp_path / "s.yaml"
    text = """
name: stale
matrix: {{model: [builtin:tiny-gpt2], method: [full], task: [synthetic-lm]}}
train: {{steps: {steps}, batch_size: 8, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 1}}
eval: {{batch_size: 16, max_batches: 2}}
execution: {{threads: 1, timeout_s: 300}}
"""
    out = tmp_path / "out"
    suite.write_text(text.format(steps=40))
    assert run_cli("run", str(suite), "--out", str(out), "--no-progress").returncode == 0
    base = tmp_path / "base"
    shutil.copytree(out, base)
    suite.write_text(text.format(steps=2))  # far fewer steps: a worse model
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    plan = {p["run_id"] for p in json.loads((out / "plan.json").read_text())}
    ppl = {
        json.loads(p.read_text())["run_id"] in plan: json.loads(p.read_text())["metrics"]["perplexity"]
        for p in out.glob("runs/*/record.json")
    }
    assert ppl[True] > 1.05 * ppl[False], ppl  # the premise: beyond perplexity's 5% tolerance
    gate = run_cli("check", "--baseline", str(base), "--current", str(out))
    assert gate.returncode == 1, gate.stdout + gate.stderr
    (stale,) = set(ppl_ids := [p.parent.name for p in out.glob("runs/*/record.json")]) - plan
    assert len(ppl_ids) == 2 and f"ignored: {out}: {stale} " in gate.stdout
    regressions = [line for line in gate.stdout.splitlines() if "REGRESSION" in line]
    # The same verdict as the runs.csv that `run` wrote for this plan, line for line.
    csv_gate = run_cli("check", "--baseline", str(base), "--current", str(out / "runs.csv"))
    assert csv_gate.returncode == 1 and regressions == [x for x in csv_gate.stdout.splitlines() if "REGRESSION" in x]
