from __future__ import annotations

from pathlib import Path

import pytest

from lorabench.errors import UsageError
from lorabench.metrics import METRICS
from lorabench.registry import Registry


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)


def test_unknown_name_suggests_close_matches() -> None:
    reg: Registry[int] = Registry("method")
    reg.register("lora", 1)
    reg.register("dora", 2)
    with pytest.raises(UsageError, match=r"unknown method 'lorra' \(did you mean 'lora'"):
        reg.get("lorra")


def test_lazy_entries_import_on_first_get() -> None:
    reg: Registry[object] = Registry("x")
    reg.register("join", "os.path:join")
    import os.path

    assert reg.get("join") is os.path.join


def test_metric_directions_come_from_the_registry() -> None:
    assert METRICS.get("perplexity").higher_is_better is False
    assert METRICS.get("token_accuracy").higher_is_better is True
    assert METRICS.get("perplexity").better(3.0, 4.0)
    assert not METRICS.get("accuracy").better(0.5, 0.6)


# --- one vocabulary, one parser, registration checks (issue 19) ------------------------


@pytest.mark.parametrize(
    ("path", "kind", "name"),
    [
        ("builtin:tiny-gpt2", "builtin", "tiny-gpt2"),
        ("config:llama-7b", "config", "llama-7b"),
        ("packaged:minilm-l6", "packaged", "minilm-l6"),
        ("./local/model", "local", "./local/model"),
        ("~/models/x", "local", "~/models/x"),
        ("/abs/model", "local", "/abs/model"),
        ("gpt2", "hub", "gpt2"),
        ("org/model", "hub", "org/model"),
    ],
)
def test_model_ref_parses_every_path_form(path: str, kind: str, name: str) -> None:
    from lorabench.models.ref import ModelRef

    ref = ModelRef.parse(path)
    assert (ref.kind, ref.name, ref.path) == (kind, name, path)
    assert ref.shipped == (kind in ("config", "packaged"))


def test_an_existing_directory_is_local_whatever_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lorabench.models.ref import ModelRef

    (tmp_path / "mymodel").mkdir()
    monkeypatch.chdir(tmp_path)
    assert ModelRef.parse("mymodel").kind == "local"


def test_device_resolution_is_one_rule() -> None:
    from lorabench.vocab import resolve_device

    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda", cuda_available=False)


def test_the_vocabulary_is_the_schema_s_and_the_cli_s() -> None:
    import typing

    from lorabench.cli import build_parser
    from lorabench.suite.schema import ExecutionSettings, MatrixBlock
    from lorabench.vocab import PRECISIONS, Device, Precision

    assert typing.get_type_hints(ExecutionSettings)["device"] is Device
    assert typing.get_args(typing.get_type_hints(MatrixBlock)["precision"])[0] is Precision
    import argparse

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    precision_choices = [
        tuple(a.choices)
        for p in subcommands.choices.values()
        for a in p._actions
        if a.dest == "precision" and a.choices
    ]
    assert precision_choices and all(c == PRECISIONS for c in precision_choices)


def test_a_method_that_does_not_fit_its_entry_fails_when_loaded() -> None:
    from lorabench.methods import _check_method
    from lorabench.registry import Registry

    reg: Registry = Registry("method", check=_check_method)
    reg.register("not-lora", "lorabench.methods.lora:LoRA")  # lazy: checked on first use
    with pytest.raises(TypeError, match=r"method 'not-lora'.*its `name` is 'lora'"):
        reg.get("not-lora")
    with pytest.raises(TypeError, match=r"not a lorabench\.methods\.base\.Method subclass"):
        reg.register("str", str)


def test_every_registered_method_passes_its_registration_check() -> None:
    from lorabench.methods import METHODS

    for name in METHODS:
        assert METHODS.get(name).name == name


def test_method_and_task_option_errors_point_at_their_own_lines() -> None:
    from lorabench.errors import SuiteError
    from lorabench.plan import expand
    from lorabench.validate import parse_suite

    text = """name: bad
matrix: {model: [builtin:tiny-gpt2], method: [lora, adalora], task: [synthetic-lm]}
methods:
  lora:
    dropout: 1.5
    alpha: -1
  adalora:
    tinit_frac: 0.6
    tfinal_frac: 0.5
tasks:
  synthetic-lm: {type: causal-lm, data: {synthetic: facts}, n_eval: 0}
train: {steps: 3}
"""
    with pytest.raises(SuiteError) as err:
        expand(parse_suite(text, "b.yaml"))
    got = {(i.line, i.message.split(":")[0]) for i in err.value.issues}
    assert got == {
        (5, "methods.lora.dropout"),
        (6, "methods.lora.alpha"),
        (9, "methods.adalora.tfinal_frac"),
        (11, "tasks.synthetic-lm.n_eval"),
    }
