"""Suites that name any peft type: ``methods.NAME: {peft_type: OFT, config: {...}}``.

The config is checked against peft's own config dataclass at validate time; bad configs
exit 2 with file:line. Curated methods keep their run_ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorabench.errors import SuiteError
from lorabench.plan import expand
from lorabench.validate import parse_suite
from tests.conftest import TINY_TRAIN, run_cli

# The "done when" set: each on tiny-bert's attention projections.
DONE_WHEN = """\
name: peft-types
methods:
  oft: {peft_type: OFT, config: {r: 8, oft_block_size: 0, target_modules: [query, value]}}
  boft: {peft_type: BOFT, config: {boft_block_size: 4, target_modules: [query, value]}}
  hra: {peft_type: HRA, config: {r: 8, target_modules: [query, value]}}
  ln-tuning: {peft_type: LN_TUNING, config: {target_modules: [LayerNorm]}}
  fourierft: {peft_type: FOURIERFT, config: {n_frequency: 100, target_modules: [query, value]}}
  vblora: {peft_type: VBLORA, config: {r: 4, num_vectors: 64, vector_length: 32, target_modules: [query, value]}}
  miss: {peft_type: MISS, config: {r: 8, target_modules: [query, value]}}
  randlora: {peft_type: RANDLORA, config: {r: 8, target_modules: [query, value]}}
matrix:
  - {model: [builtin:tiny-bert], method: [oft, boft, hra, ln-tuning, fourierft, vblora, miss, randlora, lora], task: [synthetic-sentiment]}
"""


def _specs(text: str) -> dict[str, object]:
    return {s.method: s for s in expand(parse_suite(text, "p.yaml"))}


def test_entries_plan_with_their_rank_on_the_rank_axis() -> None:
    specs = _specs(DONE_WHEN + "train: {steps: 4}\n")
    oft = specs["oft"]
    assert (oft.rank, oft.label) == (8, "tiny-bert/oft-r8/fp32/synthetic-sentiment/s0")
    # r lives in the rank axis, the rest of the config as written.
    assert (oft.method_options.peft_type, oft.method_options.config) == (
        "OFT",
        {"oft_block_size": 0, "target_modules": ["query", "value"]},
    )
    assert specs["boft"].rank is None and specs["ln-tuning"].rank is None  # no `r` field: no rank axis
    assert specs["vblora"].rank == 4


def test_rank_axis_sets_r_and_peft_checks_each_rank() -> None:
    text = DONE_WHEN.replace(
        "method: [oft, boft, hra, ln-tuning, fourierft, vblora, miss, randlora, lora]",
        "method: [hra, lora], rank: [2, 4]",
    )
    specs = expand(parse_suite(text + "train: {steps: 4}\n", "p.yaml"))
    assert sorted((s.method, s.rank) for s in specs) == [("hra", 2), ("hra", 4), ("lora", 2), ("lora", 4)]
    # OFT with a block size takes no rank: peft's own check, at validate time.
    bad = DONE_WHEN.replace(
        "oft: {peft_type: OFT, config: {r: 8, oft_block_size: 0,", "oft: {peft_type: OFT, config: {oft_block_size: 8,"
    ).replace(
        "method: [oft, boft, hra, ln-tuning, fourierft, vblora, miss, randlora, lora]", "method: [oft], rank: [4]"
    )
    with pytest.raises(SuiteError, match=r"p.yaml:12: matrix: oft at rank 4: peft refuses it: .*only specify either r"):
        parse_suite(bad + "train: {steps: 4}\n", "p.yaml")


def test_generic_entries_leave_curated_run_ids_alone() -> None:
    plain = _specs(
        DONE_WHEN.replace("oft, boft, hra, ln-tuning, fourierft, vblora, miss, randlora, ", "").split("methods:")[0]
        + "matrix:\n  - {model: [builtin:tiny-bert], method: [lora], task: [synthetic-sentiment]}\ntrain: {steps: 4}\n"
    )
    mixed = _specs(DONE_WHEN + "train: {steps: 4}\n")
    assert plain["lora"].run_id == mixed["lora"].run_id


def test_bad_configs_exit_2_with_file_line_all_at_once(write_suite) -> None:
    path: Path = write_suite(
        """\
        name: bad
        methods:
          a: {peft_type: OFT, config: {r: 8, oft_blok_size: 0}}
          b: {peft_type: OFT, config: {r: eight}}
          c: {peft_type: OFT, config: {r: 8, target_modules: 5}}
          d: {peft_type: OFT, config: {r: 8, task_type: SEQ_CLS}}
          e: {peft_type: OFT, config: {r: 8, oft_block_size: 8}}
          f: {peft_type: OFT, config: [r, 8]}
          g: {peft_type: OFTT}
          h: {peft_type: XLORA}
          i: {peft_type: ADALORA}
          lora: {peft_type: LORA, config: {r: 4}}
          j: {peft_type: HRA, confg: {r: 4}}
        matrix: {model: [builtin:tiny-bert], method: [a, lora], task: [synthetic-sentiment]}
        train: {steps: 4}
        """
    )
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    expected = [
        "3: methods.a.config: unknown OFTConfig field 'oft_blok_size' (did you mean 'oft_block_size'?)",
        "4: methods.b.config.r: expected int, got 'eight'",
        "5: methods.c.config.target_modules: expected str or a list of str or null, got 5",
        "6: methods.d.config.task_type: set by lorabench, from the task's family",
        "7: methods.e.config: peft refuses it: You can only specify either r (8) or oft_block_size (8)",
        "8: methods.f.config: expected a mapping of OFTConfig fields",
        "9: methods.g.peft_type: 'OFTT' is no peft type (did you mean 'OFT'",
        "10: methods.h.peft_type: XLORA does not apply: X-LoRA mixes already-trained",
        "11: methods.i.peft_type: use lorabench's `adalora` method for ADALORA",
        "12: methods.lora: 'lora' is a curated method",
        "13: methods.j: unknown key 'confg'",
    ]
    for message in expected:
        assert f"{path}:{message}" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--peft-config", "{r: 8, oft_blok_size: 0}"],
            "unknown OFTConfig field 'oft_blok_size' (did you mean 'oft_block_size'?)",
        ),
        (["--peft-config", "[1]"], "--peft-config: expected a mapping"),
        (["--alpha", "4"], "--alpha is for registered methods"),
    ],
)
def test_params_cli_refuses_bad_peft_configs(args: list[str], message: str) -> None:
    proc = run_cli("params", "builtin:tiny-bert", "--method", "peft:OFT", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_params_and_estimate_cli_build_a_peft_type_on_meta() -> None:
    from peft import HRAConfig, get_peft_model

    from tests.peft_zoo_cases import base

    proc = run_cli(
        "params",
        "builtin:tiny-bert",
        "--method",
        "peft:HRA",
        "--peft-config",
        "{r: 8, target_modules: [query, value]}",
        "--rank",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    counted = json.loads(proc.stdout)
    model = get_peft_model(
        base("classification"), HRAConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS")
    )
    assert (counted["rank"], counted["trainable_params"]) == (4, model.get_nb_trainable_parameters()[0])
    proc = run_cli(
        "estimate",
        "builtin:tiny-bert",
        "--method",
        "peft:HRA",
        "--peft-config",
        "{r: 8, target_modules: [query, value]}",
        "--precision",
        "fp32",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--device",
        "cpu",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["breakdown"]["adapter"] > 0


@pytest.mark.slow
def test_done_when_types_run_and_count_like_peft(write_suite, tmp_path: Path) -> None:
    """The issue's eight types train on tiny-bert through the CLI; the leaderboard's counts are peft's."""
    from lorabench.methods.peft_type import PeftTypeOptions
    from tests.peft_zoo_cases import apply, base

    path = write_suite(DONE_WHEN + TINY_TRAIN)
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["method"]: r for r in _csv(out / "leaderboard.csv")}
    assert set(rows) == {"oft", "boft", "hra", "ln-tuning", "fourierft", "vblora", "miss", "randlora", "lora"}
    for record in (out / "runs").glob("*/record.json"):
        rec = json.loads(record.read_text())
        spec = rec["spec"]
        if spec["method"] == "lora":
            continue
        opts = spec["method_options"]
        config = dict(opts["config"], **({"r": spec["rank"]} if spec["rank"] is not None else {}))
        model = apply(opts["peft_type"], "classification", config, base("classification"))
        expected = model.get_nb_trainable_parameters()[0]
        assert rec["profile"]["trainable_params"] == expected, spec["method"]
        assert float(rows[spec["method"]]["trainable_params_mean"]) == expected
        assert rec["profile"]["estimate_bytes"]["peak"] > 0  # the memory prediction covers it
        assert PeftTypeOptions(**opts).peft_type == rec["resolved"]["method"]["peft_type"]


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
