"""alpha as a function of rank: a rank sweep at a fixed LoRA scale alpha/r, without moving run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorabench.methods.lora import LoraOptions, lora_alpha
from lorabench.plan import expand
from lorabench.record_data import Record
from lorabench.validate import parse_suite

REPO = Path(__file__).resolve().parents[1]

SWEEP = """
name: sweep
matrix:
  - model: [builtin:tiny-gpt2]
    method: [lora, dora]
    rank: [4, 8, 16, 32]
    task: [synthetic-lm]
methods:
  lora: {{{opts}}}
  dora: {{{opts}}}
train: {{steps: 5}}
"""


def test_alpha_ratio_keeps_the_scale_fixed_across_ranks() -> None:
    specs = expand(parse_suite(SWEEP.format(opts="alpha_ratio: 2"), "s.yaml"))
    alphas = {
        (s.method, s.rank): lora_alpha(s.method_options.alpha, s.method_options.alpha_ratio, s.rank) for s in specs
    }
    assert {a / r for (_m, r), a in alphas.items()} == {2.0}
    fixed = expand(parse_suite(SWEEP.format(opts="alpha: 16"), "s.yaml"))
    assert {s.run_id for s in fixed}.isdisjoint({s.run_id for s in specs})  # a different run is a different id


def test_alpha_and_alpha_ratio_together_is_an_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        LoraOptions(alpha=16, alpha_ratio=2)
    with pytest.raises(ValueError, match="alpha_ratio"):
        LoraOptions(alpha_ratio=0)
    assert lora_alpha(None, None, 8) == 16 and lora_alpha(8.0, None, 32) == 8.0


def test_committed_results_keep_their_run_ids() -> None:
    """alpha_ratio at its default stays out of the hash: the smoke suite plans the baseline's ids."""
    specs = expand(parse_suite((REPO / "suites" / "smoke.yaml").read_text(), "smoke.yaml"))
    committed = {p.parent.name for p in (REPO / "results" / "baselines" / "smoke-cpu").glob("runs/*/record.json")}
    assert {s.run_id for s in specs} == committed
    rec = json.loads(next((REPO / "results" / "baselines" / "smoke-cpu").glob("runs/*/record.json")).read_text())
    assert "alpha_ratio" not in rec["spec"]["method_options"]


def test_resolved_alpha_is_in_the_leaderboard() -> None:
    from lorabench.report.leaderboard import leaderboard, runs_frame

    records = [
        json.loads(p.read_text()) for p in (REPO / "results" / "baselines" / "smoke-cpu").glob("runs/*/record.json")
    ]
    typed = [Record.from_dict(r) for r in records]
    num, md = leaderboard(typed)
    lm = md.split("## synthetic-lm")[1].split("## ")[0]
    header = [c.strip() for c in lm.splitlines()[2].strip("|").split("|")]
    row = next(line for line in lm.splitlines() if "| lora " in line and "| fp32 " in line)
    assert row.split("|")[1 + header.index("α")].strip() == "16"  # the suite's lora alpha, as resolved
    assert set(num.loc[num["method"] == "full", "alpha"]) == {"-"}
    frame = runs_frame(typed)
    assert frame.loc[(frame["method"] == "rslora"), "alpha"].tolist() == [16.0]
