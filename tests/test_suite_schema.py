"""Suite validation: strict keys, typed values, file:line on every error, all at once."""

from __future__ import annotations

import pytest

from lorabench.errors import SuiteError
from lorabench.validate import load_suite, parse_suite

GOOD = """
name: t
matrix:
  model: [builtin:tiny-gpt2]
  method: [lora]
  rank: [4, 8]
  precision: [fp32, nf4]
  task: [synthetic-lm]
train:
  steps: 5
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    return [str(i) for i in info.value.issues]


def test_good_suite_parses_with_defaults() -> None:
    suite = parse_suite(GOOD, "s.yaml")
    assert suite.name == "t"
    assert suite.train.steps == 5 and suite.train.batch_size == 8
    assert suite.seeds == (0,)


def test_unknown_keys_are_errors_with_line_and_hint() -> None:
    text = GOOD + "trian:\n  steps: 3\n"
    msgs = issues_of(text)
    assert any(
        m.startswith("s.yaml:11:") and "unknown top-level key 'trian'" in m and "did you mean 'train'" in m
        for m in msgs
    ), msgs


def test_nested_unknown_key_and_bad_type_reported_together() -> None:
    text = GOOD.replace("  steps: 5\n", "  steps: five\n  batchsize: 3\n")
    msgs = issues_of(text)
    assert any("s.yaml:10:" in m and "train.steps: expected int" in m for m in msgs), msgs
    assert any("s.yaml:11:" in m and "unknown key 'batchsize'" in m and "'batch_size'" in m for m in msgs), msgs


def test_yaml_1_1_exponent_floats_are_accepted() -> None:
    suite = parse_suite(GOOD + "  lr: 1e-3\n", "s.yaml")
    assert suite.train.lr == pytest.approx(1e-3)


def test_full_at_nf4_is_rejected_with_reason_and_line() -> None:
    text = GOOD.replace("method: [lora]", "method: [lora, full]")
    msgs = issues_of(text)
    assert any("s.yaml:4:" in m and "full at nf4 is invalid" in m and "exclude" in m for m in msgs), msgs


def test_invalid_combination_can_be_excluded() -> None:
    text = GOOD.replace("method: [lora]", "method: [lora, full]") + "exclude:\n  - {method: full, precision: nf4}\n"
    assert parse_suite(text, "s.yaml").name == "t"


def test_rank_on_full_is_rejected() -> None:
    text = GOOD.replace("method: [lora]", "method: [full]").replace("precision: [fp32, nf4]", "precision: [fp32]")
    msgs = issues_of(text)
    assert any("`rank` is given but no method here uses one" in m for m in msgs), msgs


def test_unknown_method_model_and_task_all_reported() -> None:
    text = (
        GOOD.replace("[lora]", "[lorra]")
        .replace("builtin:tiny-gpt2", "builtin:tiny-gtp2")
        .replace("[synthetic-lm]", "[synthetic-llm]")
    )
    msgs = "\n".join(issues_of(text))
    assert "unknown method 'lorra'" in msgs and "did you mean 'lora'" in msgs
    assert "unknown built-in model 'tiny-gtp2'" in msgs
    assert "task 'synthetic-llm'" in msgs


def test_exclude_rule_matching_nothing_is_an_error() -> None:
    msgs = issues_of(GOOD + "exclude:\n  - {method: dora}\n")
    assert any("exclude[0] matches no point" in m for m in msgs), msgs


def test_steps_and_epochs_are_exclusive() -> None:
    msgs = issues_of(GOOD.replace("  steps: 5\n", "  steps: 5\n  epochs: 1\n"))
    assert any("not both" in m for m in msgs), msgs


def test_yaml_syntax_error_has_a_line() -> None:
    msgs = issues_of("name: t\nmatrix: [unclosed\n")
    assert msgs[0].startswith("s.yaml:") and "YAML syntax error" in msgs[0]


def test_python_tags_never_construct_objects() -> None:
    msgs = issues_of(GOOD + "description: !!python/object/apply:os.system ['echo pwned']\n")
    assert any("unsupported YAML value" in m for m in msgs), msgs


def test_alias_bomb_is_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    msgs = issues_of(bomb)
    assert any("too many YAML nodes" in m for m in msgs), msgs


def test_duplicate_keys_are_errors() -> None:
    msgs = issues_of(GOOD + "seeds: [0]\nseeds: [1]\n")
    assert any("duplicate key 'seeds'" in m for m in msgs), msgs


def test_missing_local_model_dir_is_reported(tmp_path) -> None:
    text = GOOD.replace("builtin:tiny-gpt2", str(tmp_path / "nope"))
    msgs = issues_of(text)
    assert any("does not exist" in m for m in msgs), msgs


def test_load_suite_missing_file_is_a_usage_error(tmp_path) -> None:
    from lorabench.errors import UsageError

    with pytest.raises(UsageError, match="suite file not found"):
        load_suite(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", ["suites/smoke.yaml", "suites/qlora_vs_lora.yaml"])
def test_shipped_suites_validate(path: str) -> None:
    from lorabench.plan import expand
    from tests.conftest import REPO

    assert expand(load_suite(REPO / path))
