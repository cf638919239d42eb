"""Matrix expansion and stable run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorabench.plan import expand
from lorabench.spec import RunSpec
from lorabench.validate import load_suite, parse_suite

BASE = """
name: {name}
matrix:
  - model: [builtin:tiny-gpt2]
    method: [full]
    task: [synthetic-lm]
  - model: [builtin:tiny-gpt2]
    method: [lora]
    rank: [4, 8]
    precision: [fp32, int8, nf4]
    task: [synthetic-lm]
seeds: [0, 1]
train: {{steps: 5, lr: 0.001}}
"""


def specs(text: str):
    return expand(parse_suite(text, "p.yaml"))


def test_expansion_counts_points_times_seeds() -> None:
    out = specs(BASE.format(name="a"))
    assert len(out) == (1 + 2 * 3) * 2
    assert {s.rank for s in out if s.method == "full"} == {None}
    assert len({s.run_id for s in out}) == len(out)


def test_run_id_ignores_suite_name_and_key_order() -> None:
    a = {s.label: s.run_id for s in specs(BASE.format(name="a"))}
    reordered = BASE.format(name="b").replace("train: {steps: 5, lr: 0.001}", "train: {lr: 0.001, steps: 5}")
    b = {s.label: s.run_id for s in specs(reordered)}
    assert a == b


def test_run_id_changes_with_any_setting_that_changes_the_run() -> None:
    a = {s.label: s.run_id for s in specs(BASE.format(name="a"))}
    c = {s.label: s.run_id for s in specs(BASE.format(name="a").replace("steps: 5", "steps: 6"))}
    assert not set(a.values()) & set(c.values())


def test_run_id_ignores_timeout() -> None:
    a = {s.label: s.run_id for s in specs(BASE.format(name="a"))}
    c = {s.label: s.run_id for s in specs(BASE.format(name="a") + "execution: {timeout_s: 12}\n")}
    assert a == c


def test_exclude_and_include() -> None:
    text = BASE.format(name="a") + "exclude:\n  - {precision: int8}\n  - {seed: 1, method: full}\n"
    out = specs(text)
    assert not any(s.precision == "int8" for s in out)
    assert [s.seed for s in out if s.method == "full"] == [0]
    text2 = text + "include:\n  - {model: [builtin:tiny-gpt2], method: [freeze], task: [synthetic-lm]}\n"
    assert {s.method for s in specs(text2)} == {"full", "lora", "freeze"}


def test_default_rank_and_resolved_options_are_in_the_spec() -> None:
    text = """
matrix: {model: [builtin:tiny-gpt2], method: [lora], task: [synthetic-lm]}
train: {steps: 3}
"""
    (spec,) = specs(text)
    assert spec.rank == 8
    assert spec.method_options.dropout == 0.05
    assert spec.task_options.type == "causal-lm"


# --- committed results keep their run_ids -------------------------------------------

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(
    p for p in (REPO / "results").rglob("record.json") if not p.relative_to(REPO / "results").parts[0].startswith("_")
)
# The suite each committed results directory was planned from.
SUITE_OF = {
    "smoke": REPO / "suites" / "smoke.yaml",
    "real_encoder": REPO / "suites" / "examples" / "real_encoder.yaml",
    "real_encoder_short": REPO / "suites" / "examples" / "real_encoder_short.yaml",
    "examples-peft-zoo": REPO / "suites" / "examples" / "peft_zoo.yaml",
    "real_fair": REPO / "suites" / "examples" / "real_fair.yaml",
}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results").parent.parent.parent))
def test_a_committed_record_keeps_its_run_id_and_spec(path: Path) -> None:
    """The wire format round-trips through the typed spec (settings added since only gain their
    defaults), and hashes to the committed id."""
    rec = json.loads(path.read_text(encoding="utf-8"))
    spec = RunSpec.from_dict(rec["spec"])
    assert spec.run_id == rec["run_id"] == path.parent.name
    got = json.loads(json.dumps(spec.to_dict()))
    assert set(got) == set(rec["spec"])
    for key, value in rec["spec"].items():
        if not isinstance(value, dict):
            assert got[key] == value, key
            continue
        assert {k: got[key][k] for k in value} == value, key
        # A record written before a setting existed gets the schema's default, which the hash leaves out.
        assert set(got[key]) - set(value) <= {
            "compile",
            "loss",
            "attn_implementation",
            "alpha_ratio",
            "peak_tflops",
            "processes",
            "strategy",
            "startup_timeout_s",
            "gpu_memory",
            "skip_predicted_oom",
        }, key


def test_committed_suites_still_plan_their_committed_run_ids() -> None:
    """Re-planning each committed suite yields every run_id its plan.json or records name."""
    assert COMMITTED, "no committed records found"
    by_suite: dict[str, set[str]] = {}
    for path in COMMITTED:
        rec = json.loads(path.read_text(encoding="utf-8"))
        by_suite.setdefault(rec["suite"], set()).add(rec["run_id"])
    plans = sorted(p for p in (REPO / "results").rglob("plan.json") if not p.relative_to(REPO).parts[1].startswith("_"))
    assert plans, "no committed plan.json found"
    for plan in plans:  # every committed plan.json, at any depth
        ids = {row["run_id"] for row in json.loads(plan.read_text(encoding="utf-8"))}
        suite = {json.loads(p.read_text(encoding="utf-8"))["suite"] for p in plan.parent.glob("runs/*/record.json")}
        assert len(suite) == 1, plan
        by_suite[suite.pop()] |= ids
    for name, ids in by_suite.items():
        planned = {s.run_id for s in expand(load_suite(SUITE_OF[name]))}
        assert ids <= planned, (name, sorted(ids - planned))
