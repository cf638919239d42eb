"""Learning-rate sweeps and selection on validation (lorabench.report.select).

Hand-built runs with known validation and test scores: the rule (best mean validation
over the seeds every eligible rate has, ties to the smaller rate, failed rates never
chosen) and each metric's direction from the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lorabench.errors import SuiteError
from lorabench.plan import expand
from lorabench.report.results import Run, group
from lorabench.report.select import choose, select, selection_markdown
from lorabench.validate import parse_suite

LM = ("perplexity", ("perplexity", "token_accuracy", "eval_loss"))
CLS = ("accuracy", ("accuracy", "macro_f1"))


def run(lr: float, seed: int, val: float | None, test: float, status: str = "success", task: Any = LM) -> Run:
    primary, metrics = task
    base = ("t", "m", "lora", 8, "fp32")
    return Run(
        run_id=f"{lr}-{seed}",
        key=("t", "m", f"lora lr={lr:g}", 8, "fp32"),
        sweep_key=base,
        lr=lr,
        seed=seed,
        status=status,
        values={primary: test} if status == "success" else {},
        val_values={primary: val} if val is not None and status == "success" else {},
        primary=primary,
        task_metrics=metrics,
    )


def chosen(runs: list[Run], metric: str = "perplexity") -> Any:
    sel = choose(("t", "m", "lora", 8, "fp32"), group(runs), metric)
    return sel, (sel.chosen.lr if sel.chosen else None)


def test_lower_is_better_perplexity_picks_the_lowest_mean_validation() -> None:
    sel, lr = chosen([run(1e-4, 0, 9.0, 1.0), run(1e-4, 1, 7.0, 1.0), run(3e-4, 0, 7.5, 50.0), run(3e-4, 1, 7.9, 50.0)])
    assert lr == 3e-4  # mean 7.7 < 8.0 on validation, although its test perplexity is far worse
    assert [c.score for c in sel.candidates] == [8.0, 7.7]


def test_higher_is_better_accuracy_picks_the_highest() -> None:
    runs = [run(1e-4, 0, 0.80, 0.5, task=CLS), run(3e-4, 0, 0.70, 0.9, task=CLS)]
    assert chosen(runs, "accuracy")[1] == 1e-4


def test_an_exact_tie_goes_to_the_smaller_rate_whatever_the_record_order() -> None:
    runs = [run(3e-4, 0, 5.0, 1.0), run(1e-4, 0, 5.0, 2.0), run(1e-3, 0, 6.0, 0.5)]
    for order in (runs, runs[::-1]):
        sel, lr = chosen(order)
        assert lr == 1e-4
        assert any("tie" in n for n in sel.notes)


def test_a_rate_that_failed_on_any_seed_is_never_chosen() -> None:
    runs = [run(1e-4, 0, 8.0, 1.0), run(1e-4, 1, 8.0, 1.0), run(3e-3, 0, 2.0, 1.0), run(3e-3, 1, 0, 0, "diverged")]
    sel, lr = chosen(runs)
    assert lr == 1e-4
    bad = next(c for c in sel.candidates if c.lr == 3e-3)
    assert not bad.eligible and "diverged 1/2" in (bad.reason or "")


def test_every_rate_failed_selects_nothing_and_shows_no_test_score() -> None:
    runs = [run(1e-4, 0, 0, 0, "oom"), run(3e-4, 0, 0, 0, "failed")]
    points, sels = select(group(runs), "perplexity")
    assert sels[0].chosen is None and points[0].aggs == {}
    assert points[0].key[2] == "lora (no rate selectable)" and len(points[0].runs) == 2


def test_missing_seeds_compare_on_the_seeds_every_rate_has() -> None:
    # 1e-4 has seeds 0 and 1; 3e-4 only seed 0 so far (a resumed sweep). On seed 0 alone
    # 1e-4 is better (6 < 7), though its mean over both of its seeds (8) would lose.
    runs = [run(1e-4, 0, 6.0, 1.0), run(1e-4, 1, 10.0, 1.0), run(3e-4, 0, 7.0, 1.0)]
    sel, lr = chosen(runs)
    assert lr == 1e-4 and sel.seeds == (0,)
    assert any("compared on the seeds" in n for n in sel.notes)


def test_a_run_without_validation_scores_is_not_eligible() -> None:
    sel, lr = chosen([run(1e-4, 0, None, 1.0), run(3e-4, 0, 9.0, 1.0)])
    assert lr == 3e-4
    assert "no validation perplexity" in (sel.candidates[0].reason or "")


def test_the_leaderboard_row_is_the_chosen_rates_test_score_and_names_it() -> None:
    runs = [run(1e-4, 0, 9.0, 4.0), run(3e-4, 0, 8.0, 5.0)]
    plain = Run(
        run_id="full", key=("t", "m", "full", None, "fp32"), seed=0, status="success", values={"perplexity": 3.0},
        primary="perplexity", task_metrics=LM[1],
    )  # fmt: skip
    points, sels = select(group([plain, *runs]), "perplexity")
    assert [p.key[2] for p in points] == ["full", "lora (lr=0.0003 selected)"]
    assert points[1].aggs["perplexity"].mean == 5.0  # test, not validation
    text = selection_markdown(sels)
    assert "| 0.0001 | 1/1 | 9.000 | 4.000 |  |" in text and "| 0.0003 | 1/1 | 8.000 | 5.000 | selected |" in text


SWEEP = """
name: sw
matrix:
  - {{model: [builtin:tiny-gpt2], method: [lora, full], task: [lm]{block}}}
tasks:
  lm: {{type: causal-lm, data: {{synthetic: facts{val}}}, n_train: 40, n_eval: 16}}
methods:
  lora: {{train: {{lr: {lora_lr}}}}}
seeds: [0, 1]
{select}
train: {{steps: 3, batch_size: 4, max_seq_len: 32, warmup_steps: 1}}
"""


def plan(block: str = "", val: str = ", val_fraction: 0.2", lora_lr: str = "[1.0e-3, 3.0e-3]", select: str = "") -> Any:
    text = SWEEP.format(block=block, val=val, lora_lr=lora_lr, select=select)
    return expand(parse_suite(text, "sw.yaml"))


def test_a_list_of_rates_is_a_sweep_axis_and_single_rates_keep_their_run_ids() -> None:
    specs = plan()
    lora = sorted((s.train.lr, s.seed, s.sweep) for s in specs if s.method == "lora")
    assert lora == [(1e-3, 0, ("lr",)), (1e-3, 1, ("lr",)), (3e-3, 0, ("lr",)), (3e-3, 1, ("lr",))]
    assert all(s.sweep == () for s in specs if s.method == "full")
    one = {s.label: s.run_id for s in plan(lora_lr="[1.0e-3]")}
    plain = {s.label: s.run_id for s in plan(lora_lr="1.0e-3")}
    assert one == plain  # a one-rate list is no sweep
    swept = {s.run_id for s in specs}
    assert set(plain.values()) <= swept  # the sweep's 1e-3 runs are the plain runs: resume reuses them
    assert "sweep" not in next(s for s in plan(lora_lr="1.0e-3")).to_dict()


def test_lr_in_the_matrix_sweeps_every_method_of_the_block() -> None:
    specs = plan(block=", lr: [1.0e-4, 1.0e-3]", lora_lr="3.0e-3")
    assert sorted({(s.method, s.train.lr) for s in specs}) == [
        ("full", 1e-4), ("full", 1e-3), ("lora", 1e-4), ("lora", 1e-3)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"select": "select: {metric: perplexity}", "val": ""}, "task 'lm' has no validation split"),
        ({"select": "select: {metric: accuracy}"}, "reports perplexity, token_accuracy, eval_loss, not 'accuracy'"),
        ({"select": "select: {metric: tokens_per_s}"}, "is not a validation metric"),
        ({"select": "select: {metric: perplexity}", "lora_lr": "1.0e-3"}, "nothing to select from"),
        ({"block": ", lr: [1.0e-4, 1.0e-3]"}, "`lr` is swept here and in methods.lora.train.lr"),
        ({"lora_lr": "[1.0e-3, 1.0e-3]"}, "distinct rates > 0"),
        ({"block": ", lr: [-1.0]", "lora_lr": "1.0e-3"}, "distinct rates > 0"),
    ],
)
def test_bad_sweeps_and_selections_are_suite_errors(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(SuiteError) as info:
        plan(**kwargs)
    assert any(message in str(i) for i in info.value.issues), info.value


@pytest.mark.slow
def test_a_sweep_with_select_through_the_cli(tmp_path: Path) -> None:
    """Two rates x one seed and a plain full run: one selected row, every rate's record kept,
    the choice recomputed by `report`, and `check` against itself passing (it matches every rate)."""
    import json

    from tests.conftest import run_cli

    suite = tmp_path / "sw.yaml"
    suite.write_text(
        """
name: sw
matrix: {model: [builtin:tiny-gpt2], method: [lora, full], task: [lm]}
tasks:
  lm: {type: causal-lm, data: {synthetic: facts, val_fraction: 0.2}, n_train: 40, n_eval: 16}
methods:
  lora: {train: {lr: [1.0e-4, 3.0e-3]}}
seeds: [0]
select: {metric: perplexity, over: [lr]}
train: {steps: 3, batch_size: 4, max_seq_len: 32, warmup_steps: 1}
execution: {threads: 1}
"""
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*/record.json")]
    assert len(records) == 3 and all(r["val_metrics"]["perplexity"] > 0 for r in records)
    lora = {r["spec"]["train"]["lr"]: r for r in records if r["spec"]["method"] == "lora"}
    best = min(lora, key=lambda lr: lora[lr]["val_metrics"]["perplexity"])
    board = (out / "leaderboard.md").read_text()
    assert f"lora (lr={best:g} selected)" in board and "## Learning-rate selection" in board
    assert board.count("| lora") == 1  # one row for the swept point
    first = board
    assert run_cli("report", str(out)).returncode == 0
    assert (out / "leaderboard.md").read_text() == first  # recomputed from the records alike
    check = run_cli("check", "--baseline", str(out), "--current", str(out))
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_the_example_sweep_suite_plans_eight_runs_with_selection() -> None:
    from lorabench.suite.schema import read_suite

    text, file, stem = read_suite(Path(__file__).resolve().parents[1] / "suites" / "examples" / "lr_sweep.yaml")
    suite = parse_suite(text, file, stem)
    specs = expand(suite)
    assert suite.select is not None and suite.select.metric == "perplexity"
    assert sorted({(s.method, s.train.lr) for s in specs}) == [
        ("full", 1e-4), ("full", 1e-3), ("lora", 1e-3), ("lora", 3e-3)
    ]  # fmt: skip
    assert len(specs) == 8 and all(s.sweep == ("lr",) for s in specs)


def test_select_with_only_a_target_needs_no_sweep() -> None:
    """`select.target` (time-to-target) is useful without a sweep; without either, select is a typo."""
    specs = plan(lora_lr="1.0e-3", select="select: {metric: perplexity, target: 6.0}")
    assert all(s.sweep == () for s in specs)


def test_a_target_travels_with_each_spec_but_not_into_its_run_id() -> None:
    """The run records time-to-target against `select.target`; the same run without a target is the same run."""
    from lorabench.spec import RunSpec

    plain = {s.label: s for s in plan(lora_lr="1.0e-3")}
    timed = {s.label: s for s in plan(lora_lr="1.0e-3", select="select: {metric: perplexity, target: 6.0}")}
    assert plain.keys() == timed.keys()
    for label, spec in timed.items():
        assert spec.target == {"metric": "perplexity", "value": 6.0}
        assert spec.run_id == plain[label].run_id  # resume reuses records made before the target was set
        assert RunSpec.from_dict(spec.to_dict()) == spec  # crosses into the run process as planned
        assert "target" not in plain[label].to_dict()  # records without a target keep their shape
