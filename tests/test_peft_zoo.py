"""Every peft type on lorabench's three task families: the table of cases, run row by row.

Each ``works`` row is built through lorabench's peft-type method, counted (lorabench's
count, peft's ``get_nb_trainable_parameters`` and ``lorabench params`` on the meta device
agree), trained two steps, saved, and reloaded onto a fresh base with the same outputs.
Each ``fails`` row raises the error it names; ``n/a`` rows say why. The README's table is
rendered from the same rows (``lorabench list methods --peft-types --markdown``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from lorabench.methods.peft_type import NOT_APPLICABLE, check_config, peft_types
from lorabench.methods.peft_zoo import CASES, FAMILIES, markdown, summary
from lorabench.suite.typed import Collector
from tests.peft_zoo_cases import run_case

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS = [(t, f) for t in sorted(CASES) for f in FAMILIES]


def test_every_peft_type_has_a_row_and_30_train() -> None:
    assert sorted(CASES) == sorted(peft_types()), "a peft type without a row: add it to lorabench/methods/peft_zoo.py"
    assert all(set(row) == set(FAMILIES) for row in CASES.values())
    assert summary()["train_somewhere"] >= 30


@pytest.mark.slow  # 135 in-process trainings: in make test, not in the drift rerun
@pytest.mark.parametrize(("peft_type", "family"), ROWS, ids=[f"{t}-{f}" for t, f in ROWS])
def test_case(peft_type: str, family: str, tmp_path: Path) -> None:
    case = CASES[peft_type][family]
    if case.outcome == "works":
        got = run_case(peft_type, family, case.config, tmp_path)
        assert got["trainable"] > 0
        assert got["trainable"] == got["peft_trainable"] == got["meta_trainable"]
        assert got["total"] == got["peft_total"]
        assert all(math.isfinite(x) for x in got["losses"])
        assert got["changed"] > 0, "no trainable tensor moved"
        torch.testing.assert_close(got["again"], got["out"])  # the saved adapter is the trained model
    elif case.outcome == "fails":
        with pytest.raises(Exception, match=re.escape(case.reason)):
            run_case(peft_type, family, case.config, tmp_path)
        _refused_at_validate(peft_type, family, case.config)
    elif case.outcome == "curated":
        from lorabench.methods import METHODS

        col = Collector("s.yaml")
        check_config("x", {"peft_type": peft_type}, col, 1)
        assert case.reason in METHODS and f"use lorabench's `{case.reason}` method" in col.issues[0].message
    else:
        assert case.reason
        if peft_type in NOT_APPLICABLE:  # refused at validate time with the same reason
            col = Collector("s.yaml")
            check_config("x", {"peft_type": peft_type}, col, 1)
            assert NOT_APPLICABLE[peft_type] in col.issues[0].message
        else:
            pytest.skip(f"{peft_type} on {family}: {case.reason}")


def _refused_at_validate(peft_type: str, family: str, config: dict) -> None:
    """A row that fails in peft is refused when the suite is planned, before any run, with the reason."""
    import yaml

    from lorabench.errors import SuiteError
    from lorabench.methods.peft_zoo import MODELS
    from lorabench.plan import expand
    from lorabench.validate import parse_suite

    task = {"causal-lm": "{type: causal-lm, data: {synthetic: facts}}"}[family]
    entry = yaml.safe_dump({"peft_type": peft_type, "config": config}, default_flow_style=True).strip()
    text = f"matrix: {{model: [{MODELS[family]}], method: [x], task: [t]}}\ntasks: {{t: {task}}}\nmethods: {{x: {entry}}}\n"
    with pytest.raises(SuiteError) as info:
        expand(parse_suite(text, "s.yaml"))
    assert any("are transformers Conv1D modules" in i.message for i in info.value.issues), info.value


def test_the_types_refused_on_gpt2_are_the_zoos_failing_gpt2_rows() -> None:
    from lorabench.methods.peft_type import CONV1D_UNSUPPORTED

    failing = {t for t, row in CASES.items() if row["causal-lm"].outcome == "fails"}
    assert failing == CONV1D_UNSUPPORTED
    for peft_type in sorted(failing):
        _refused_at_validate(peft_type, "causal-lm", CASES[peft_type]["causal-lm"].config)


def test_readme_table_is_generated_from_the_cases() -> None:
    from lorabench.methods.peft_type import quantized_support

    text = README.read_text(encoding="utf-8")
    start, end = "<!-- peft-types:start -->\n", "<!-- peft-types:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0]
    expected = markdown({t: quantized_support(t) for t in CASES})
    assert table == expected, "README is stale: run `lorabench list methods --peft-types --markdown`"


KBIT = sorted(t for t in CASES if CASES[t]["classification"].outcome == "works")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "nf4"])
@pytest.mark.parametrize("peft_type", KBIT)
def test_kbit_base(peft_type: str, precision: str) -> None:
    """Types with peft bitsandbytes layers train on a quantised tiny-bert; the others are refused."""
    from lorabench.methods.peft_type import PeftTypeOptions, method_for, quantized_support

    config = CASES[peft_type]["classification"].config
    cls = method_for("x", PeftTypeOptions(peft_type, dict(config)))
    if not quantized_support(peft_type):
        reason = cls.invalid_reason(precision)
        assert reason is not None and f"peft has no bitsandbytes layers for {peft_type}" in reason
        return
    from peft import prepare_model_for_kbit_training

    from tests.peft_zoo_cases import apply, base, batch

    assert cls.invalid_reason(precision) is None
    torch.manual_seed(0)
    net = prepare_model_for_kbit_training(base("classification", precision), use_gradient_checkpointing=False)
    model = apply(peft_type, "classification", config, net, precision)
    wrapped = [m for m in model.modules() if type(m).__module__.endswith(".bnb")]
    assert wrapped, f"{peft_type} wrapped no bitsandbytes layer"
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2)
    data = batch("classification", model.config.vocab_size)
    for _ in range(2):
        loss = model(**data).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        assert math.isfinite(float(loss))
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params))
