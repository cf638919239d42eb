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


def test_alpha_as_a_multiple_of_rank_is_alpha_ratio_with_its_run_ids() -> None:
    """`alpha: 2r` is `alpha_ratio: 2`: the same runs, the same ids, the same resolved alphas."""
    ratio = expand(parse_suite(SWEEP.format(opts="alpha_ratio: 2"), "s.yaml"))
    for spelling in ("2r", "2*r", "2.0 r"):
        specs = expand(parse_suite(SWEEP.format(opts=f"alpha: {spelling}"), "s.yaml"))
        assert [s.run_id for s in specs] == [s.run_id for s in ratio]
        assert {s.method_options.alpha_ratio for s in specs} == {2.0}
    half = expand(parse_suite(SWEEP.format(opts="alpha: 0.5r"), "s.yaml"))
    assert [lora_alpha(s.method_options.alpha, s.method_options.alpha_ratio, s.rank) for s in half[:4]] == [
        2.0,
        4.0,
        8.0,
        16.0,
    ]
    assert LoraOptions(alpha="r").alpha_ratio == 1.0


def test_every_lora_style_method_takes_a_rank_multiple() -> None:
    from lorabench.methods.adalora import AdaLoraOptions
    from lorabench.methods.base import resolve_alpha
    from lorabench.methods.lora_ref import LoraRefOptions
    from lorabench.methods.lycoris import LycorisOptions
    from lorabench.methods.pissa import PissaOptions

    for cls in (LoraOptions, LoraRefOptions, LycorisOptions, AdaLoraOptions, PissaOptions):
        opts = cls(alpha="4r")
        assert (opts.alpha, opts.alpha_ratio) == (None, 4.0), cls
        assert resolve_alpha(opts.alpha, 8, opts.alpha_ratio) == 32.0


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ("alpha: 2x", "`alpha` should be a number > 0 or a positive multiple of the rank"),
        ("alpha: 0r", "`alpha` should be a number > 0 or a positive multiple of the rank"),
        ("alpha: -1", "`alpha` should be > 0"),
        ("alpha: 2r, alpha_ratio: 2", "not both"),
    ],
)
def test_bad_alpha_is_reported_at_its_line(opts: str, message: str) -> None:
    from lorabench.errors import SuiteError

    text = SWEEP.format(opts=opts).replace("  dora: {" + opts + "}\n", "")
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    lines = [str(i) for i in info.value.issues]
    line_no = 1 + text.splitlines().index("  lora: {" + opts + "}")
    assert any(m.startswith(f"s.yaml:{line_no}:") and message in m for m in lines), lines


def test_params_takes_alpha_as_a_rank_multiple() -> None:
    from lorabench.accounting.params import count, method_options
    from lorabench.errors import UsageError
    from lorabench.methods import method_class

    res = count("builtin:tiny-gpt2", "lora", rank=16, alpha="0.5r")
    assert res.resolved["lora_alpha"] == 8.0
    with pytest.raises(UsageError, match="multiple of the rank"):
        method_options(method_class("lora"), "r2", None)


@pytest.mark.slow
def test_rank_sweep_at_alpha_2r_records_and_shows_the_resolved_alpha(tmp_path: Path) -> None:
    """Two tiny runs: the record's resolved alpha and the leaderboard's α column are 2 x rank."""
    from tests.conftest import run_cli

    suite = tmp_path / "sweep.yaml"
    suite.write_text(
        "name: sweep2r\n"
        "matrix:\n"
        "  - {model: [builtin:tiny-gpt2], method: [lora], rank: [4, 8], task: [synthetic-lm]}\n"
        "methods:\n"
        "  lora: {alpha: 2r}\n"
        "train: {steps: 2, batch_size: 2, max_seq_len: 16, warmup_steps: 0}\n"
        "eval: {max_batches: 1}\n"
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert {(r["spec"]["rank"], r["resolved"]["method"]["lora_alpha"]) for r in recs} == {(4, 8.0), (8, 16.0)}
    assert all(r["spec"]["method_options"]["alpha_ratio"] == 2.0 for r in recs)
    md = (out / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if "α" in line)
    col = [c.strip() for c in header.strip("|").split("|")].index("α")
    cells = {
        line.strip("|").split("|")[col].strip()
        for line in md.splitlines()
        if line.startswith("|") and "lora" in line and "α" not in line
    }
    assert cells == {"8", "16"}, md


def test_lycoris_records_the_alpha_it_resolved() -> None:
    """LoHa at alpha 2r: the count's resolved config carries alpha 2 x rank, as a run's record does."""
    from lorabench.accounting.params import count

    res = count("builtin:tiny-bert", "loha", rank=4, alpha="2r", task_type="seq-cls", num_labels=2)
    assert (res.resolved["r"], res.resolved["alpha"]) == (4, 8.0)
