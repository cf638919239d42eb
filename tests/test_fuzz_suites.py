"""Fuzzing ``lorabench validate`` with generated broken suites (hypothesis).

Every case starts from a valid suite and applies one mutation that is known to make it
invalid: a bad value in a typed field, an unknown or missing key, a wrong shape, a
recursive alias or alias bomb, deep nesting, a Python tag, a syntax error, or bytes that
are not UTF-8. Each must give exit 2 and a message naming the file, with no traceback.
The CLI's ``main`` runs in-process (hundreds of cases in seconds); a few of the same
cases also go through the real entry point in a subprocess.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorabench.cli import main
from tests.conftest import run_cli

BASE: dict[str, Any] = {
    "name": "fuzz",
    "matrix": [
        {"model": ["builtin:tiny-gpt2"], "method": ["lora"], "rank": [8], "task": ["synthetic-lm"]},
        {"model": ["builtin:tiny-bert"], "method": ["full"], "task": ["synthetic-sentiment"]},
    ],
    "seeds": [0, 1],
    "methods": {"lora": {"alpha": 16, "dropout": 0.0}},
    "train": {"steps": 10, "batch_size": 4, "lr": 0.001, "max_seq_len": 32, "warmup_steps": 2},
    "eval": {"batch_size": 8, "generation": {"max_new_tokens": 8, "num_beams": 1}},
    "execution": {"threads": 1, "timeout_s": 60.0},
}

# Numeric fields whose every value in BAD_NUMBERS is out of range or of the wrong type.
NUMERIC = [
    ("train", "steps"),
    ("train", "batch_size"),
    ("train", "lr"),
    ("train", "max_seq_len"),
    ("train", "warmup_steps"),
    ("train", "grad_accum"),
    ("train", "log_every"),
    ("train", "max_grad_norm"),
    ("eval", "batch_size"),
    ("eval", "every"),
    ("execution", "threads"),
    ("execution", "timeout_s"),
    ("execution", "memory_sample_s"),
    ("methods", "lora", "dropout"),
    ("methods", "lora", "alpha"),
    ("eval", "generation", "max_new_tokens"),
    ("eval", "generation", "num_beams"),
]
BAD_NUMBERS = st.one_of(
    st.integers(max_value=-1),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), "abc", "", True, False, [1, 2], {"a": 1}]),
)
HUGE_INTS = st.integers(min_value=2**63, max_value=2**200)
INT_FIELDS = [
    p for p in NUMERIC if p[-1] not in ("lr", "max_grad_norm", "timeout_s", "memory_sample_s", "dropout", "alpha")
]
SECTIONS = ["train", "eval", "execution", "quantization", "methods"]
BAD_SECTION_VALUES = st.sampled_from([5, "text", [1, 2], True, 1.5])
BAD_NAMES = st.one_of(
    st.sampled_from(["builtin:nope", "no-such-method", "", 5, None, 2.5, {"x": 1}]),
    st.text(alphabet="!@#%^&*()+=", min_size=1, max_size=6),
)


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _dump(tree: dict[str, Any]) -> str:
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def _without(key: str) -> str:
    tree = copy.deepcopy(BASE)
    tree.pop(key, None)
    return _dump(tree)


@st.composite
def broken_suites(draw: st.DrawFn) -> tuple[str, bytes]:
    """(kind of mutation, file bytes)."""
    kind = draw(
        st.sampled_from(
            [
                "bad-number",
                "huge-int",
                "unknown-key",
                "missing-key",
                "section-shape",
                "bad-axis-name",
                "empty-axis",
                "bad-seeds",
                "recursive-alias",
                "alias-bomb",
                "deep-nesting",
                "python-tag",
                "syntax",
                "duplicate-key",
                "utf16",
                "invalid-utf8",
                "nul-byte",
                "top-level-shape",
                "bad-task-option",
                "bad-model-def",
            ]
        )
    )
    text = _dump(BASE)
    if kind == "bad-number":
        text = _dump(_set(BASE, draw(st.sampled_from(NUMERIC)), draw(BAD_NUMBERS)))
    elif kind == "huge-int":
        text = _dump(_set(BASE, draw(st.sampled_from(INT_FIELDS)), draw(HUGE_INTS)))
    elif kind == "unknown-key":
        where = draw(st.sampled_from([(), ("train",), ("eval",), ("execution",), ("eval", "generation")]))
        key = draw(st.sampled_from(["trian", "colour", "stepz", "lr_", "x"]))
        tree = copy.deepcopy(BASE)
        node = tree
        for k in where:
            node = node[k]
        node[key] = draw(st.integers(0, 3))
        text = _dump(tree)
    elif kind == "missing-key":
        tree = copy.deepcopy(BASE)
        del tree[draw(st.sampled_from(["matrix", "train"]))]
        text = _dump(tree)
    elif kind == "section-shape":
        text = _dump(_set(BASE, (draw(st.sampled_from(SECTIONS)),), draw(BAD_SECTION_VALUES)))
    elif kind == "bad-axis-name":
        block = draw(st.integers(0, 1))
        axis = draw(st.sampled_from(["model", "method", "task", "precision"]))
        tree = copy.deepcopy(BASE)
        name = draw(BAD_NAMES)
        if axis == "model" and name == "no-such-method":
            name = "builtin:no-such-model"  # a plain name is a valid hub id (found at run time, or offline)
        tree["matrix"][block][axis] = [name]
        text = _dump(tree)
    elif kind == "empty-axis":
        tree = copy.deepcopy(BASE)
        tree["matrix"][draw(st.integers(0, 1))][draw(st.sampled_from(["model", "method", "task"]))] = []
        text = _dump(tree)
    elif kind == "bad-seeds":
        text = _dump(_set(BASE, ("seeds",), draw(st.sampled_from([[-1], [0, 0], "abc", [1.5], [], {"a": 1}]))))
    elif kind == "recursive-alias":
        key = draw(st.sampled_from(["matrix", "train", "seeds", "methods"]))
        shape = draw(st.sampled_from(["&r [*r]", "&r {a: *r}", "&r [1, [2, *r]]"]))
        text = _without(key) + f"{key}: {shape}\n"
    elif kind == "alias-bomb":
        width = draw(st.integers(8, 12))
        lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
        for i in range(1, 9):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
        text = text + "\n".join(lines) + "\n"
    elif kind == "deep-nesting":
        depth = draw(st.integers(51, 3000))
        style = draw(st.sampled_from(["flow", "block"]))
        if style == "flow":
            nested = "[" * depth + "]" * depth
            text = text.replace("seeds:\n- 0\n- 1", f"seeds: {nested}")
        else:
            text = text + "description:\n" + "".join("  " * (i + 1) + "-\n" for i in range(depth))
    elif kind == "python-tag":
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object/apply:os.system ['true']",
                    "!!python/name:os.system",
                    "!!python/object:collections.OrderedDict {}",
                    "!!python/tuple [1, 2]",
                    "!custom 5",
                ]
            )
        )
        key = draw(st.sampled_from(["description", "seeds", "train"]))
        text = _without(key) + f"{key}: {tag}\n"
    elif kind == "syntax":
        lines = text.splitlines()
        at = draw(st.integers(0, len(lines) - 1))
        lines.insert(at, draw(st.sampled_from(["{{{", "key: [unclosed", "- : -\n  : :", "\tbad: tab", "'open"])))
        text = "\n".join(lines) + "\n"
    elif kind == "duplicate-key":
        key = draw(st.sampled_from(["name: again", "seeds: [3]", "train: {steps: 4}"]))
        text = text + key + "\n"
    elif kind == "bad-task-option":
        task = {"type": "classification", "data": {"synthetic": "sentiment"}, "num_labels": 2}
        key, value = draw(
            st.sampled_from(
                [
                    ("n_train", -1),
                    ("n_eval", 0),
                    ("num_labels", 1),
                    ("type", "no-such-type"),
                    ("data", {"synthetic": "sentiment", "eval_fraction": 2.0}),
                    ("data", {}),
                    ("data", {"synthetic": "sentiment", "hub": "imdb"}),
                    ("data", {"train_file": "no/such/file.csv", "eval_file": "no/such/eval.csv"}),
                    ("data", {"synthetic": "no-such-generator"}),
                    ("labels", {"pos": 7}),
                    ("colour", "blue"),
                ]
            )
        )
        task[key] = value
        tree = copy.deepcopy(BASE)
        tree["tasks"] = {"mine": task}
        tree["matrix"][1]["task"] = ["mine"]
        text = _dump(tree)
    elif kind == "bad-model-def":
        key, value = draw(
            st.sampled_from(
                [
                    ("path", 5),
                    ("path", "./no/such/dir"),
                    ("path", "builtin:nope"),
                    ("weights", "banana"),
                    ("revision", [1]),
                    ("target_modules", []),
                    ("colour", "blue"),
                ]
            )
        )
        tree = copy.deepcopy(BASE)
        tree["models"] = {"mine": {"path": "builtin:tiny-gpt2", key: value}}
        tree["matrix"][0]["model"] = ["mine"]
        text = _dump(tree)
    elif kind == "top-level-shape":
        text = draw(st.sampled_from(["42\n", "- a\n- b\n", "'just a string'\n", "null\n", "~\n", "[]\n", "", "# x\n"]))
    data = text.encode("utf-8")
    if kind == "utf16":
        data = text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"])))
    elif kind == "invalid-utf8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + data[at:]
    elif kind == "nul-byte":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    return kind, data


TRIED: list[str] = []
WORKDIR = Path(tempfile.mkdtemp(prefix="lorabench-fuzz-"))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same cases in every CI run; change the seed by editing a strategy
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(case=broken_suites())
def test_validate_rejects_every_generated_broken_suite(case: tuple[str, bytes]) -> None:
    kind, data = case
    path = WORKDIR / "fuzzed-suite.yaml"
    path.write_bytes(data)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["validate", str(path)])  # an exception here fails the test with its traceback
    message = err.getvalue()
    assert code == 2, (kind, data[:400], message, out.getvalue())
    assert str(path) in message, (kind, message)
    assert "Traceback" not in message, (kind, message)
    TRIED.append(kind)


@st.composite
def edited_suites(draw: st.DrawFn) -> bytes:
    """The valid suite with a few random character edits: it may stay valid, it must never crash."""
    text = _dump(BASE)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        chars = draw(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#%@`,? \n\t0123456789.eE+x")), max_size=3))
        if op == "insert":
            text = text[:at] + chars + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + len(chars) + 1 :]
        else:
            text = text[:at] + chars + text[at + len(chars) :]
    return text.encode("utf-8")


EDITED: list[int] = []


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(data=edited_suites())
def test_validate_never_crashes_on_randomly_edited_suites(data: bytes) -> None:
    path = WORKDIR / "edited-suite.yaml"
    path.write_bytes(data)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["validate", str(path)])
    assert code in (0, 2), (code, data, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert str(path) in err.getvalue(), err.getvalue()
    EDITED.append(code)


def test_the_fuzzer_tried_enough_cases_of_every_kind() -> None:
    """Runs after the fuzz test (file order): at least 200 cases, every kind of mutation."""
    if not TRIED:
        pytest.skip("run together with test_validate_rejects_every_generated_broken_suite")
    kinds = set(TRIED)
    print(
        f"fuzzed {len(TRIED)} broken suites ({len(kinds)} kinds of mutation) and {len(EDITED)} randomly edited "
        f"ones ({EDITED.count(2)} rejected, {EDITED.count(0)} still valid)"
    )
    assert len(TRIED) >= 200, len(TRIED)
    assert len(kinds) >= 15, sorted(kinds)


@pytest.mark.parametrize(
    "data",
    [
        _dump(_set(BASE, ("execution", "timeout_s"), -5)).encode(),
        b"matrix: &m [*m]\n",
        _dump(BASE).encode("utf-16"),
        b"seeds: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    ],
    ids=["range", "alias", "utf16", "deep"],
)
def test_fuzz_kinds_through_the_real_entry_point(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(data)
    out = run_cli("validate", str(path))
    assert out.returncode == 2 and str(path) in out.stderr and "Traceback" not in out.stderr, out.stderr
