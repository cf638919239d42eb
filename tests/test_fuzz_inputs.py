"""Fuzzing what lorabench reads besides suites: records, runs.csv, model configs, predictions.

Results are data: committed, cloned, copied from other machines. Each case starts from
something valid (a record of the committed smoke baseline, a runs.csv lorabench wrote,
a GPT-2 config) and applies one mutation known to make it unusable: a field of the
wrong type or missing, a number out of range, bytes that are not UTF-8 or not JSON, a
path that would leave the directory. ``report``, ``check``, ``compare`` and ``params``
must answer exit 2 with a message naming the file and no traceback, and no file outside
the results directory (nor inside it, for a refused command) may change. A corrupt
predictions.jsonl is not an error: it shortens the report's examples, never stops it.
The CLI's ``main`` runs in-process; a few cases also go through the real entry point.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorabench.cli import main
from tests.conftest import REPO, run_cli

BASELINE = REPO / "results" / "baselines" / "smoke-cpu"
RECORDS = [json.loads(p.read_text()) for p in sorted(BASELINE.glob("runs/*/record.json"))]
WORKDIR = Path(tempfile.mkdtemp(prefix="lorabench-fuzz-inputs-"))
TRIED: dict[str, int] = {}
SECONDS: dict[str, float] = {}

# (path into the record, values every reader must refuse there); None as a path value deletes the key.
RECORD_FIELDS: list[tuple[tuple[str, ...], list[Any]]] = [
    (("run_id",), [None, 5, "", "../outside", "a/b", "x" * 500, [], "run\nid", "..", "DELETE"]),
    (("status",), [None, "ok", "SUCCESS", 1, [], "DELETE"]),
    (("label",), [None, 5, [], {}, "DELETE"]),
    (("suite",), [None, 5, [], "DELETE"]),
    (("spec",), [None, [], "spec", 5, True, "DELETE"]),
    (("spec", "model"), [None, "tiny-gpt2", [], 5, "DELETE"]),
    (("spec", "model", "name"), [None, 5, [], {}, "DELETE"]),
    (("spec", "method"), [None, 5, [], {}, "DELETE"]),
    (("spec", "task"), [None, 5, [], {}, "DELETE"]),
    (("spec", "precision"), [None, 5, [], {}, "DELETE"]),
    (("spec", "rank"), ["8", 1.5, [], {}, True, "DELETE"]),
    (("spec", "seed"), ["0", 1.5, [], {}, True, "DELETE"]),
    (("spec", "task_options"), ["x", [1], 5]),
    (("metrics",), [[1, 2], "perplexity", 5, True]),
    (("metrics", "perplexity"), ["low", [], {}, True, 10**30, -(10**40)]),
    (("metrics", "no_such_metric"), [1.0]),
    (("profile",), ["fast", [1], 5, True]),
    (("profile", "memory_mb"), ["big", [1], 5]),
    (("profile", "memory_mb", "train"), ["big", [1], 5]),
    (("profile", "step_s"), ["slow", 5, [None, None, None, None], [[1], [2], [3], [4]]]),
    (("profile", "trainable_params"), [10**30]),
    (("profile", "estimate_bytes"), ["x", [1], 5]),
    (("profile", "host_cpu_train"), ["x", [1], 5]),
    (("profile", "host_cpu_train", "other_cpu_share"), ["x", [1], {}]),
    (("resolved",), ["x", [1], 5]),
    (("curves",), ["x", [1], 5]),
    (("env",), ["x", [1], 5]),
    (("flags",), ["x", 5, {}]),
    (("error",), [5, [], {}]),
]
RAW_RECORDS = {
    "empty": b"",
    "truncated": None,  # the first half of a real record
    "not utf-8": b'{"run_id": "\xff\xfe\xfa"}',
    "utf-16": None,  # a real record in UTF-16
    "a list": b"[1, 2, 3]",
    "null": b"null",
    "a string": b'"record"',
    "deeply nested": b"[" * 100000 + b"]" * 100000,
    "huge integer": b'{"run_id": ' + b"9" * 5000 + b"}",
    "NUL bytes": b"\x00" * 64,
    "trailing garbage": None,  # a real record followed by more text
}


def _set(rec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    cur = out
    for key in path[:-1]:
        if not isinstance(cur.get(key), dict):
            cur[key] = {}
        cur = cur[key]
    if value == "DELETE":
        cur.pop(path[-1], None)
    else:
        cur[path[-1]] = value
    return out


@st.composite
def broken_records(draw: st.DrawFn) -> tuple[str, bytes]:
    rec = draw(st.sampled_from(RECORDS))
    if draw(st.integers(0, 3)) == 0:
        kind = draw(st.sampled_from(sorted(RAW_RECORDS)))
        good = json.dumps(rec).encode()
        data = {
            "truncated": good[: len(good) // 2],
            "utf-16": json.dumps(rec).encode("utf-16"),
            "trailing garbage": good + b"\n}{ more",
        }.get(kind, RAW_RECORDS[kind])
        return f"raw: {kind}", data
    path, values = draw(st.sampled_from(RECORD_FIELDS))
    value = draw(st.sampled_from(values))
    return f"{'.'.join(path)} = {str(value)[:20]}", json.dumps(_set(rec, path, value)).encode()


def _results_dir(root: Path) -> Path:
    """A marked results directory with four of the baseline's records and their plan."""
    out = root / "res"
    if out.exists():
        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True)
    for rec in RECORDS[:4]:
        (out / "runs" / rec["run_id"]).mkdir()
        (out / "runs" / rec["run_id"] / "record.json").write_text(json.dumps(rec))
    (out / ".lorabench").write_text(json.dumps({"suite": RECORDS[0]["suite"]}))
    (out / "suite.yaml").write_text(f"name: {RECORDS[0]['suite']}\n")
    (out / "plan.json").write_text(json.dumps([{"run_id": r["run_id"], "label": r["label"]} for r in RECORDS[:4]]))
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "precious.txt").write_text("not lorabench's\n")
    return out


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(args: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(args)  # an exception here fails the test with its traceback
    return code, err.getvalue()


def _count(kind: str, t0: float) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + 1
    SECONDS[kind] = SECONDS.get(kind, 0.0) + time.perf_counter() - t0


def fuzz(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,  # the same cases in every CI run
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


@fuzz(160)
@given(case=broken_records(), command=st.sampled_from(["report", "check", "compare"]))
def test_every_broken_record_is_refused_naming_its_file(case: tuple[str, bytes], command: str) -> None:
    t0 = time.perf_counter()
    kind, data = case
    out = _results_dir(WORKDIR)
    victim = out / "runs" / RECORDS[1]["run_id"] / "record.json"
    victim.write_bytes(data)
    before = _snapshot(WORKDIR)
    args = {
        "report": ["report", str(out)],
        "check": ["check", "--baseline", str(BASELINE), "--current", str(out)],
        "compare": ["compare", str(out), str(BASELINE)],
    }[command]
    code, message = _cli(args)
    assert code == 2, (kind, command, message)
    assert str(victim) in message and "Traceback" not in message, (kind, message)
    assert message.count("\n") == 1, (kind, message)  # one line
    assert _snapshot(WORKDIR) == before, kind  # nothing written, inside or outside
    _count("record", t0)


@st.composite
def broken_csvs(draw: st.DrawFn) -> tuple[str, bytes]:
    header = ["run_id", "model", "method", "rank", "precision", "task", "seed", "status", "perplexity"]
    rows = [
        [
            r["run_id"],
            r["spec"]["model"]["name"],
            r["spec"]["method"],
            r["spec"]["rank"] or "",
            r["spec"]["precision"],
            r["spec"]["task"],
            r["spec"]["seed"],
            r["status"],
            "12.5",
        ]
        for r in RECORDS
    ]
    kind = draw(
        st.sampled_from(
            [
                "missing column",
                "empty",
                "header only of another tool",
                "not utf-8",
                "binary",
                "empty run_id",
                "NUL byte",
                "only a newline",
                "a record instead",
            ]
        )
    )
    if kind == "missing column":
        drop = draw(st.sampled_from(["run_id", "model", "method", "rank", "precision", "task", "status"]))
        keep = [i for i, h in enumerate(header) if h != drop]
        header = [header[i] for i in keep]
        rows = [[r[i] for i in keep] for r in rows]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    text = buf.getvalue().encode()
    data = {
        "missing column": text,
        "empty": b"",
        "header only of another tool": b"name,value,comment\n",
        "not utf-8": text[:40] + b"\xff\xfe" + text[40:],
        "binary": bytes(draw(st.lists(st.integers(128, 255), min_size=1, max_size=200))),
        "empty run_id": text.replace(RECORDS[2]["run_id"].encode(), b"", 1),
        "NUL byte": text[:30] + b"\x00" + text[30:],
        "only a newline": b"\n",
        "a record instead": json.dumps(RECORDS[0]).encode(),
    }[kind]
    return kind, data


@fuzz(50)
@given(case=broken_csvs(), side=st.sampled_from(["baseline", "current"]))
def test_every_broken_runs_csv_is_refused_naming_its_file(case: tuple[str, bytes], side: str) -> None:
    t0 = time.perf_counter()
    kind, data = case
    path = WORKDIR / "runs.csv"
    path.write_bytes(data)
    before = _snapshot(WORKDIR)
    other = str(BASELINE)
    args = (
        ["--baseline", str(path), "--current", other]
        if side == "baseline"
        else ["--baseline", other, "--current", str(path)]
    )
    code, message = _cli(["check", *args])
    assert code == 2, (kind, message)
    assert str(path) in message and "Traceback" not in message, (kind, message)
    assert _snapshot(WORKDIR) == before
    _count("csv", t0)


def _llama_config() -> dict[str, Any]:
    return json.loads((REPO / "lorabench" / "models" / "configs" / "llama-1b" / "config.json").read_text())


@st.composite
def broken_configs(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(
            ["a list", "a number", "null", "not json", "not utf-8", "empty", "negative size", "deeply nested"]
        )
    )
    if kind == "negative size":
        cfg = _llama_config()
        key = draw(
            st.sampled_from(
                ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]
            )
        )
        cfg[key] = draw(st.integers(-(10**6), -1))
        return f"{key} < 0", json.dumps(cfg).encode()
    return kind, {
        "a list": b"[1, 2, 3]",
        "a number": b"42",
        "null": b"null",
        "not json": b"{model_type: gpt2",
        "not utf-8": b'{"model_type": "\xff"}',
        "empty": b"",
        "deeply nested": b"[" * 50000 + b"]" * 50000,
    }[kind]


@fuzz(30)
@given(case=broken_configs(), command=st.sampled_from(["params", "estimate"]))
def test_every_broken_model_config_is_refused_naming_its_file(case: tuple[str, bytes], command: str) -> None:
    t0 = time.perf_counter()
    kind, data = case
    model = WORKDIR / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_bytes(data)
    args = [command, str(model), "--method", "lora"]
    if command == "estimate":
        args += ["--precision", "fp32", "--batch-size", "1", "--seq-len", "8"]
    code, message = _cli(args)
    assert code == 2, (kind, message)
    assert "config.json" in message and "Traceback" not in message, (kind, message)
    _count("config", t0)


@fuzz(60)
@given(
    data=st.binary(max_size=400)
    | st.lists(st.sampled_from([b"{}", b"[1]", b"null", b'{"prediction": 1}', b"\xff", b"{", b'"x"']), max_size=8).map(
        b"\n".join
    )
)
def test_a_broken_predictions_file_never_stops_the_report(data: bytes) -> None:
    """The two readers of predictions.jsonl (report.md's examples, the page's drill-down) skip what they cannot use."""
    from lorabench.report.build import _read_examples
    from lorabench.report.page import _predictions

    t0 = time.perf_counter()
    run = WORKDIR / "pred" / "runs" / "r1"
    run.mkdir(parents=True, exist_ok=True)
    (run / "predictions.jsonl").write_bytes(data)
    assert all(isinstance(r, dict) for r in _read_examples(run / "predictions.jsonl", 3))
    assert isinstance(_predictions(WORKDIR / "pred", "r1"), list)
    _count("predictions", t0)


def test_the_input_fuzzer_tried_enough_cases() -> None:
    """Runs after the fuzz tests (file order): at least 200 corrupt inputs refused with exit 2."""
    if not TRIED:
        pytest.skip("run together with the fuzz tests above")
    refused = sum(n for k, n in TRIED.items() if k != "predictions")
    print(
        "fuzzed inputs: "
        + ", ".join(f"{k} {n} in {SECONDS[k]:.1f}s" for k, n in TRIED.items())
        + f"; {refused} refused with exit 2"
    )
    assert refused >= 200, TRIED


@pytest.mark.parametrize(
    "case",
    ["record: spec null", "record: not utf-8", "csv: empty", "config: a list"],
)
def test_fuzz_kinds_through_the_real_entry_point(case: str, tmp_path: Path) -> None:
    out = _results_dir(tmp_path)
    victim = out / "runs" / RECORDS[1]["run_id"] / "record.json"
    if case == "record: spec null":
        victim.write_text(json.dumps({**RECORDS[1], "spec": None}))
        proc, where = run_cli("report", str(out)), victim
    elif case == "record: not utf-8":
        victim.write_bytes(b'{"run_id": "\xff"}')
        proc, where = run_cli("check", "--baseline", str(BASELINE), "--current", str(out)), victim
    elif case == "csv: empty":
        where = tmp_path / "runs.csv"
        where.write_bytes(b"")
        proc = run_cli("check", "--baseline", str(where), "--current", str(BASELINE))
    else:
        (tmp_path / "m").mkdir()
        where = tmp_path / "m" / "config.json"
        where.write_text("[1, 2, 3]")
        proc = run_cli("params", str(tmp_path / "m"), "--method", "lora")
    assert proc.returncode == 2 and str(where) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
