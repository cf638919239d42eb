"""Train, validation and test: a validation split distinct from the test split.

Periodic evaluation and model selection read validation; the final score is on test.
A suite without ``val_fraction``/``val_file`` plans and runs exactly as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lorabench.data.sources import load_rows
from lorabench.errors import SuiteError
from lorabench.plan import expand
from lorabench.tasks.base import options_wire
from lorabench.validate import parse_suite


def task_options(task_yaml: str) -> Any:
    suite = parse_suite(
        "matrix: {model: [builtin:tiny-bert], method: [full], task: [t]}\ntrain: {steps: 3}\ntasks:\n  t: " + task_yaml,
        "t.yaml",
    )
    return expand(suite)[0].task_options


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["text"] for r in rows}


@pytest.fixture
def lines(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"text": "row {i}"}}\n' for i in range(200)), encoding="utf-8")
    return path


def test_val_fraction_of_one_file_is_disjoint_and_leaves_test_where_it_was(lines: Path) -> None:
    with_val = task_options(f"{{type: causal-lm, data: {{file: {lines}, val_fraction: 0.25}}}}").data
    without = task_options(f"{{type: causal-lm, data: {{file: {lines}}}}}").data
    train, val, test = (ids(load_rows(with_val, s, None, 0, "t")) for s in ("train", "val", "eval"))
    assert not train & val and not train & test and not val & test
    assert train | val | test == {f"row {i}" for i in range(200)}
    assert (len(test), len(val), len(train)) == (40, 40, 120)  # 20% test, then 25% of the 160 left
    assert test == ids(load_rows(without, "eval", None, 0, "t"))  # adding validation never moves a test row
    assert train | val == ids(load_rows(without, "train", None, 0, "t"))
    assert ids(load_rows(with_val, "val", None, 1, "t")) != val  # seeded by data_seed
    assert ids(load_rows(with_val, "val", 10, 0, "t")) <= val  # n caps it, as n_eval caps test


def test_val_fraction_with_train_and_eval_files_carves_the_train_file(lines: Path, tmp_path: Path) -> None:
    test_file = tmp_path / "test.jsonl"
    test_file.write_text('{"text": "held out"}\n', encoding="utf-8")
    src = task_options(
        f"{{type: causal-lm, data: {{train_file: {lines}, eval_file: {test_file}, val_fraction: 0.1}}}}"
    ).data
    train, val = ids(load_rows(src, "train", None, 0, "t")), ids(load_rows(src, "val", None, 0, "t"))
    assert len(val) == 20 and len(train) == 180 and not train & val
    assert ids(load_rows(src, "eval", None, 0, "t")) == {"held out"}


def test_val_file_is_read_as_is(lines: Path, tmp_path: Path) -> None:
    val_file = tmp_path / "val.jsonl"
    val_file.write_text('{"text": "v1"}\n{"text": "v2"}\n', encoding="utf-8")
    src = task_options(f"{{type: causal-lm, data: {{file: {lines}, val_file: {val_file}}}}}").data
    assert ids(load_rows(src, "val", None, 0, "t")) == {"v1", "v2"}
    assert len(load_rows(src, "train", None, 0, "t")) == 160  # the train/test split of `file` is untouched


def test_synthetic_validation_has_a_seed_of_its_own() -> None:
    src = task_options("{type: causal-lm, data: {synthetic: facts, val_fraction: 0.1}}").data
    train = load_rows(src, "train", 300, 0, "t", n_train=300)
    val = load_rows(src, "val", None, 0, "t", n_train=300)
    test = load_rows(src, "eval", 50, 0, "t")
    assert len(val) == 30  # 10% of the training count
    assert val != train[:30] and val != test[:30]
    assert len(load_rows(src, "val", 5, 0, "t", n_train=300)) == 5  # n_eval caps it


def test_a_suite_without_validation_keys_keeps_its_task_options() -> None:
    data = options_wire(task_options("{type: causal-lm, data: {synthetic: facts}}"))["data"]
    assert "val_fraction" not in data and "val_file" not in data  # so run_ids and recipes do not move


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{synthetic: facts, val_fraction: 1.0}", "`val_fraction` should be in (0, 1)"),
        ("{synthetic: facts, val_fraction: 0.1, val_file: v.txt}", "`val_fraction` or `val_file`, not both"),
        ("{file: a.txt, val_file: a.txt}", "also a train or test file"),
        ("{train_file: a.txt, eval_file: b.txt, val_file: b.txt}", "also a train or test file"),
    ],
)
def test_bad_validation_settings_are_suite_errors(data: str, message: str) -> None:
    with pytest.raises(SuiteError) as info:
        task_options("{type: causal-lm, data: " + data + "}")
    assert any(message in str(i) and i.line == 4 for i in info.value.issues), info.value


def test_periodic_eval_reads_validation_and_the_final_score_reads_test(tmp_path: Path) -> None:
    """The curve's last point is the model after its last step on validation: it equals
    ``val_metrics`` exactly, and differs from the test score."""
    from lorabench.run.pipeline import run_point

    text = """
name: splits
matrix: {model: [builtin:tiny-gpt2], method: [lora], rank: [4], task: [lm]}
tasks:
  lm: {type: causal-lm, data: {synthetic: facts, val_fraction: 0.2}, n_train: 40, n_eval: 16}
train: {steps: 2, batch_size: 4, max_seq_len: 32, warmup_steps: 0}
eval: {every: 1, batch_size: 16}
execution: {threads: 1}
"""
    (spec,) = expand(parse_suite(text, "splits.yaml"))
    out = run_point(spec, tmp_path)
    assert out["resolved"]["splits"] == {"metrics": "test", "val_metrics": "validation", "curves.eval": "validation"}
    last = out["curves"]["eval"][-1]
    assert last["perplexity"] == out["val_metrics"]["perplexity"]
    assert out["metrics"]["perplexity"] != out["val_metrics"]["perplexity"]
    assert out["resolved"]["data"]["val_tokens"] > 0
