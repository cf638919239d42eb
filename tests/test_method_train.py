"""Per-method training overrides: ``methods.<name>.train`` changes that method's runs only."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorabench.errors import SuiteError
from lorabench.plan import expand
from lorabench.validate import parse_suite
from tests.conftest import run_cli

SUITE = """\
name: per-method
matrix:
  model: [builtin:tiny-gpt2]
  method: [full, lora]
  task: [synthetic-lm]
methods:
  lora:
    alpha: 16
    train: {{lr: 1.0e-3, steps: 30, schedule: cosine{extra}}}
train: {{epochs: 1, lr: 2.0e-5, schedule: linear, lr_warmup_steps: 5}}
"""


def _specs(text: str) -> dict[str, object]:
    return {s.method: s for s in expand(parse_suite(text, "m.yaml"))}


def test_override_applies_to_its_method_only() -> None:
    specs = _specs(SUITE.format(extra=""))
    full, lora = specs["full"].train, specs["lora"].train
    assert (full.lr, full.epochs, full.steps, full.schedule) == (2e-5, 1.0, None, "linear")
    # steps replaces the suite's epochs; unset keys keep the suite's values.
    assert (lora.lr, lora.epochs, lora.steps, lora.schedule) == (1e-3, None, 30, "cosine")
    assert lora.lr_warmup_steps == 5
    assert specs["lora"].method_options.alpha == 16


def test_run_id_reflects_the_override() -> None:
    a = _specs(SUITE.format(extra=""))
    b = _specs(SUITE.format(extra=", weight_decay: 0.01"))
    assert a["full"].run_id == b["full"].run_id
    assert a["lora"].run_id != b["lora"].run_id
    assert b["lora"].train.weight_decay == 0.01


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", schedul: cosine", "methods.lora.train: unknown key 'schedul' (did you mean 'schedule'?)"),
        (", max_seq_len: 64", "methods.lora.train: unknown key 'max_seq_len'"),
        (", lr: fast", "methods.lora.train.lr: expected float, got 'fast'"),
        (", warmup_steps: 40", "`warmup_steps` (40) must be < `steps` (30)"),
    ],
)
def test_bad_overrides_name_file_and_line(extra: str, message: str) -> None:
    text = SUITE.format(extra=extra).replace("lr: 1.0e-3, ", "") if "lr: fast" in extra else SUITE.format(extra=extra)
    with pytest.raises(SuiteError) as exc:
        parse_suite(text, "m.yaml")
    rendered = str(exc.value)
    assert message in rendered
    assert "m.yaml:9:" in rendered  # the line of `train:` under `methods.lora`


def test_cli_rejects_a_bad_override_with_exit_2(write_suite) -> None:
    path: Path = write_suite(SUITE.format(extra=", steps_: 3"))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:9: methods.lora.train: unknown key 'steps_'" in proc.stderr


def test_method_options_with_lists_rebuild_in_the_run() -> None:
    # The run rebuilds a method's options from its spec, where lists are tuples; a
    # `target_modules` option used to fail there after validating fine.
    from lorabench.spec import RunSpec

    text = SUITE.format(extra="").replace("    alpha: 16\n", "    alpha: 16\n    target_modules: [c_attn]\n")
    spec = RunSpec.from_dict(_specs(text)["lora"].to_dict())  # through the wire format, as in the run

    ctx = spec.method_context("causal-lm", "gpt2")
    assert ctx.options.target_modules == ("c_attn",)
