"""Everything a suite can get wrong is caught by ``validate``, before any work: exit 2, file:line, no traceback.

Hostile YAML, out-of-range numbers, missing files, position limits and hub models that
cannot be had offline. CLI behaviour runs the real entry point in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorabench.errors import SuiteError
from lorabench.validate import parse_suite
from tests.conftest import REPO, cli_env, run_cli

GOOD = """\
name: t
matrix:
  model: [builtin:tiny-gpt2]
  method: [lora]
  task: [synthetic-lm]
train:
  steps: 5
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    return [str(i) for i in info.value.issues]


def assert_clean_exit_2(out: subprocess.CompletedProcess[str], file: Path) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    assert file.name in out.stderr, out.stderr


# --- hostile YAML -----------------------------------------------------------------

HOSTILE: dict[str, bytes] = {
    "recursive-alias": b"matrix: &m [*m]\ntrain: {steps: 3}\n",
    "recursive-alias-in-mapping": b"train: &t {steps: 3, x: *t}\nmatrix: {}\n",
    "nested-5000": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "nested-block-5000": b"".join(b"  " * i + b"-\n" for i in range(2000)),
    "utf16": GOOD.encode("utf-16"),
    "utf16-no-bom": GOOD.encode("utf-16-le"),
    "invalid-utf8": GOOD.encode().replace(b"steps", b"st\xffeps"),
    "nul-byte": GOOD.encode().replace(b"train", b"tr\x00ain"),
    "control-char": GOOD.encode().replace(b"name: t", b"name: t\x07"),
    "empty": b"",
    "only-comments": b"# nothing here\n",
    "top-level-scalar": b"42\n",
    "top-level-list": b"- a\n- b\n",
    "duplicate-key": GOOD.encode() + b"train:\n  steps: 6\n",
    "huge-int": GOOD.encode().replace(b"steps: 5", b"steps: 99999999999999999999999999"),
    "nan": GOOD.encode().replace(b"steps: 5", b"steps: 5\n  lr: .nan"),
    "inf": GOOD.encode().replace(b"steps: 5", b"steps: 5\n  lr: .inf"),
    "huge-float-int": GOOD.encode().replace(b"steps: 5", b"steps: 5\n  lr: " + b"9" * 400),
    "python-tag": GOOD.encode() + b"description: !!python/object/apply:os.system ['echo hi']\n",
    "python-tag-mapping": GOOD.encode() + b"eval: !!python/object:collections.OrderedDict {}\n",
    "alias-bomb": b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + b"".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n".encode() for p, c in zip("abcdefgh", "bcdefghi")),
    "syntax": b"matrix: [\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_is_a_clean_error(case: str, tmp_path: Path) -> None:
    from lorabench.cli import main

    path = tmp_path / f"{case}.yaml"
    path.write_bytes(HOSTILE[case])
    code, err = _main_in_process(main, ["validate", str(path)])
    assert code == 2, err
    assert str(path) in err and "Traceback" not in err, err


@pytest.mark.parametrize("case", ["recursive-alias", "nested-5000", "utf16", "nul-byte", "python-tag"])
def test_hostile_yaml_through_the_real_entry_point(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(HOSTILE[case])
    out = run_cli("validate", str(path))
    assert_clean_exit_2(out, path)


def test_hostile_messages_name_the_line() -> None:
    assert issues_of("x: 1\nmatrix: &m [*m]\n")[0].startswith("s.yaml:2: recursive YAML alias")
    deep = issues_of("a: 1\nb: " + "[" * 100 + "]" * 100 + "\n")
    assert deep[0].startswith("s.yaml:2:") and "nested deeper than" in deep[0]


def test_devices_and_huge_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(GOOD.encode() + b"#" * (2 << 20))
    for path, message in (("/dev/zero", "not a regular file"), (str(big), "a suite is at most")):
        out = run_cli("validate", path, timeout=60)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_utf8_with_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    out = run_cli("validate", str(path))
    assert out.returncode == 0, out.stderr


def _main_in_process(main: object, argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)  # type: ignore[operator]
    return code, err.getvalue()


# --- ranges -------------------------------------------------------------------------


def test_every_out_of_range_value_is_reported_at_once_with_its_line() -> None:
    text = """\
matrix:
  model: [builtin:tiny-gpt2]
  method: [lora]
  rank: [0]
  task: [synthetic-lm]
seeds: [-1]
methods:
  lora: {dropout: 1.0}
train:
  steps: 0
  batch_size: 0
  lr: -1
  max_seq_len: 0
  grad_accum: 0
  weight_decay: -0.1
  max_grad_norm: 0
eval:
  batch_size: 0
  generation: {max_new_tokens: 0, num_beams: 0}
execution:
  timeout_s: -5
  threads: -3
"""
    msgs = issues_of(text)
    expected = {
        2: "matrix.rank: expected ranks >= 1, got 0",
        6: "[-1]",  # seeds
        8: "dropout",
        10: "`steps` should be >= 1, got 0",
        11: "`batch_size` should be >= 1, got 0",
        12: "`lr` should be > 0, got -1.0",
        13: "`max_seq_len` should be >= 1, got 0",
        14: "`grad_accum` should be >= 1, got 0",
        15: "`weight_decay` should be >= 0, got -0.1",
        16: "`max_grad_norm` should be > 0, got 0.0",
        21: "`timeout_s` should be > 0, got -5.0",
        22: "`threads` should be >= 1, got -3",
    }
    for line, text_part in expected.items():
        assert any(m.startswith(f"s.yaml:{line}:") and text_part in m for m in msgs), (line, text_part, msgs)
    assert any("`max_new_tokens` should be >= 1" in m for m in msgs), msgs
    assert any("`num_beams` should be >= 1" in m for m in msgs), msgs


def test_warmup_longer_than_training_and_non_finite_lr() -> None:
    msgs = issues_of(GOOD.replace("steps: 5", "steps: 5\n  warmup_steps: 5\n  lr_warmup_steps: 9"))
    assert any("s.yaml:8:" in m and "`warmup_steps` (5) must be < `steps` (5)" in m for m in msgs), msgs
    assert any("s.yaml:9:" in m and "`lr_warmup_steps` (9) must be <= `steps` (5)" in m for m in msgs), msgs
    for bad in (".nan", ".inf", "-.inf", "'nan'"):
        msgs = issues_of(GOOD.replace("steps: 5", f"steps: 5\n  lr: {bad}"))
        assert any("s.yaml:8:" in m and "train.lr" in m for m in msgs), (bad, msgs)


def test_timeout_and_threads_from_the_issue_fail_validate(write_suite) -> None:
    path = write_suite(GOOD + "execution: {timeout_s: -5, threads: -3}\n")
    out = run_cli("validate", str(path))
    assert_clean_exit_2(out, path)
    assert "timeout_s` should be > 0, got -5.0" in out.stderr and "`threads` should be >= 1, got -3" in out.stderr


# --- paths ------------------------------------------------------------------------

DATA_SUITE = """\
tasks:
  cls:
    type: classification
    data:
      train_file: {train}
      eval_file: {eval}
    num_labels: 2
matrix:
  model: [builtin:tiny-bert]
  method: [lora]
  task: [cls]
train: {{steps: 3}}
"""


def _csv(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\ngood film,1\nbad film,0\n")


def test_missing_data_files_fail_validate_with_their_lines(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(DATA_SUITE.format(train="nope/train.csv", eval="../missing/eval.csv"))
    out = run_cli("validate", str(suite), cwd=tmp_path)
    assert_clean_exit_2(out, suite)
    assert "s.yaml:5: tasks.cls.data.train_file: data file not found: 'nope/train.csv'" in out.stderr
    assert f"(resolved to {tmp_path / 'nope' / 'train.csv'})" in out.stderr
    assert "s.yaml:6: tasks.cls.data.eval_file" in out.stderr
    assert f"resolved to {tmp_path.parent / 'missing' / 'eval.csv'}" in out.stderr  # `..` is resolved


def test_relative_data_paths_resolve_against_the_working_directory(tmp_path: Path) -> None:
    """Documented choice: relative paths are relative to the working directory, not the suite file."""
    work, suites = tmp_path / "work", tmp_path / "suites"
    _csv(work / "data" / "train.csv")
    _csv(tmp_path / "shared" / "eval.csv")
    suites.mkdir()
    suite = suites / "s.yaml"
    suite.write_text(DATA_SUITE.format(train="data/train.csv", eval="../shared/eval.csv"))
    ok = run_cli("validate", str(suite), cwd=work)
    assert ok.returncode == 0, ok.stderr
    # The same suite from the suite's own directory: the files are not there.
    elsewhere = run_cli("validate", str(suite), cwd=suites)
    assert_clean_exit_2(elsewhere, suite)
    assert "data file not found: 'data/train.csv'" in elsewhere.stderr


def test_env_rooted_paths_are_checked_when_set_and_noted_when_not(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(DATA_SUITE.format(train="${LORABENCH_DATA}/imdb/train.csv", eval="${LORABENCH_DATA}/eval.csv"))
    env = {k: v for k, v in cli_env().items() if k != "LORABENCH_DATA"}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lorabench", *args],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )

    unset = cli("validate", str(suite))
    assert unset.returncode == 0, unset.stderr
    assert "uses $LORABENCH_DATA, which is not set: the file is not checked" in unset.stderr
    # A run cannot read them: refused before any work, no results directory made.
    refused = cli("run", str(suite), "--out", str(tmp_path / "out"))
    assert_clean_exit_2(refused, suite)
    assert "set it to run this suite" in refused.stderr and not (tmp_path / "out").exists()
    data = tmp_path / "data"
    _csv(data / "imdb" / "train.csv")
    missing = cli("validate", str(suite), LORABENCH_DATA=str(data))
    assert_clean_exit_2(missing, suite)
    assert "s.yaml:6: tasks.cls.data.eval_file: data file not found" in missing.stderr
    _csv(data / "eval.csv")
    assert cli("validate", str(suite), LORABENCH_DATA=str(data)).returncode == 0


def test_missing_model_directory_with_dotdot_fails_validate(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(GOOD.replace("builtin:tiny-gpt2", "../no-such-model"))
    out = run_cli("validate", str(suite), cwd=tmp_path)
    assert_clean_exit_2(out, suite)
    assert "s.yaml:3:" in out.stderr and "'../no-such-model' does not exist" in out.stderr


# --- params on every listed model ---------------------------------------------------


def test_params_accepts_every_model_that_list_models_shows() -> None:
    listed = run_cli("list", "models")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("builtin:")]
    assert "builtin:tiny-gpt2" in names and "builtin:handwritten-classifier" in names
    from lorabench.cli import main

    for name in names:
        code, err = _main_in_process(main, ["params", name, "--method", "full"])
        assert code == 0, (name, err)
    out = run_cli("params", "builtin:tiny-gpt2", "--method", "lora", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["model_type"] == "gpt2" and result["task_type"] == "causal-lm"
    assert 0 < result["trainable_params"] < result["total_params"]


def test_params_on_a_builtin_counts_as_the_built_model(tmp_path: Path) -> None:
    """The count from the spec's config equals the count on the model the pretraining builds."""
    from transformers import AutoModelForSequenceClassification

    from lorabench.accounting.counting import count_parameters
    from lorabench.accounting.params import count
    from lorabench.models import BUILTIN_MODELS
    from lorabench.models.builtin import build_config, build_tokenizer

    config = build_config(BUILTIN_MODELS.get("tiny-bert"), build_tokenizer())
    _, total = count_parameters(AutoModelForSequenceClassification.from_config(config))
    assert count("builtin:tiny-bert", "full").total_params == total
    assert count("builtin:handwritten-classifier", "lora", target_modules=["linear"]).trainable_params > 0


# --- hub models offline: once per model, no process -----------------------------------

HUB_SUITE = """\
matrix:
  model: [lorabench-test-org/not-a-cached-model]
  method: [lora, full]
  task: [synthetic-lm]
seeds: [0, 1]
train: {steps: 3}
"""


@pytest.mark.parametrize("how", ["offline", "unreachable"])
def test_uncached_hub_model_fails_once_per_model_without_a_run_process(how: str, tmp_path: Path) -> None:
    suite = tmp_path / "hub.yaml"
    suite.write_text(HUB_SUITE)
    env = cli_env()
    env["HF_HUB_CACHE"] = str(tmp_path / "hf-cache")
    if how == "offline":
        env["HF_HUB_OFFLINE"] = "1"
        reason = "HF_HUB_OFFLINE is set"
    else:
        env["HF_HUB_OFFLINE"] = "0"
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            env.pop(k, None)
        reason = "the Hugging Face Hub could not be reached: http://127.0.0.1:9 did not answer"
    out_dir = tmp_path / "out"
    out = subprocess.run(
        [sys.executable, "-m", "lorabench", "run", str(suite), "--out", str(out_dir), "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("lorabench: warning: cannot load model")]
    assert len(warnings) == 1, out.stderr  # once per model, not per run
    assert reason in warnings[0] and "Its 4 run(s) will be recorded as failed" in warnings[0]
    records = [json.loads(p.read_text()) for p in sorted(out_dir.glob("runs/*/record.json"))]
    assert len(records) == 4
    for rec in records:
        assert rec["status"] == "failed" and reason in rec["error"]
        assert rec["wall_s"] == 0.0 and rec["isolation_s"] is None  # no run process was spent
        assert not (out_dir / "runs" / rec["run_id"] / "log.txt").exists()


# --- position limits ------------------------------------------------------------------


def test_decoder_only_summarisation_longer_than_the_positions_fails_validate() -> None:
    """Issue 11: a GPT-2 shape with 256 positions trained, then died in generate with IndexError."""
    text = """\
matrix:
  model: [builtin:tiny-gpt2]
  method: [lora]
  task: [synthetic-dialogsum]
train: {steps: 3, max_seq_len: 240}
eval: {generation: {max_new_tokens: 48}}
"""
    msgs = issues_of_checked(text)
    assert any(
        m.startswith("s.yaml:2:")
        and "train.max_seq_len 240 + eval.generation.max_new_tokens 48 = 288 tokens" in m
        and "the model's 256 positions (n_positions in its config)" in m
        for m in msgs
    ), msgs
    # T5 has relative positions: no limit.
    assert not issues_of_checked(text.replace("builtin:tiny-gpt2", "builtin:tiny-t5").replace("240", "2000"))
    # The same length that fits: fine.
    assert not issues_of_checked(text.replace("240", "200"))


def test_causal_and_classification_windows_and_virtual_tokens_count() -> None:
    lm = GOOD.replace("steps: 5", "steps: 5\n  max_seq_len: 300")
    assert any("train.max_seq_len 300 = 300 tokens" in m and "256 positions" in m for m in issues_of_checked(lm))
    cls = lm.replace("builtin:tiny-gpt2", "builtin:tiny-bert").replace("synthetic-lm", "synthetic-sentiment")
    assert any("max_position_embeddings" in m for m in issues_of_checked(cls))
    prompt = GOOD.replace("[lora]", "[prompt-tuning]").replace("steps: 5", "steps: 5\n  max_seq_len: 250")
    msgs = issues_of_checked(prompt)
    assert any("methods.prompt-tuning.num_virtual_tokens 20 = 270 tokens" in m for m in msgs), msgs


def test_position_limits_of_local_and_cached_hub_models(tmp_path: Path) -> None:
    local = tmp_path / "small-gpt2"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 64}))
    (local / "tokenizer.json").write_text("{}")  # validate only looks for tokenizer files; the run loads them
    # A hub model in the HF cache (the layout huggingface_hub writes): its config is read offline.
    snap = tmp_path / "hf" / "models--acme--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 96}))
    (tmp_path / "hf" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hf" / "models--acme--tiny" / "refs" / "main").write_text("abc123")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        GOOD.replace("[builtin:tiny-gpt2]", f"[{local}, acme/tiny]").replace("steps: 5", "steps: 5\n  max_seq_len: 128")
    )
    env = {**cli_env(), "HF_HUB_CACHE": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-m", "lorabench", "validate", str(suite)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_clean_exit_2(out, suite)
    assert "128 tokens, more than the model's 64 positions (n_positions" in out.stderr
    assert "128 tokens, more than the model's 96 positions (max_position_embeddings" in out.stderr
    # Lengths that fit; the config is cached but not the weights: a pretrained model cannot load offline.
    suite.write_text(suite.read_text().replace("max_seq_len: 128", "max_seq_len: 32"))

    def validate() -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "lorabench", "validate", str(suite)]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    fits = validate()
    assert fits.returncode == 0, fits.stderr
    assert "cannot load model 'acme/tiny'" in fits.stderr and "its weights are not in the HF cache" in fits.stderr
    (snap / "model.safetensors").write_bytes(b"")
    again = validate()
    assert again.returncode == 0 and "cannot load model" not in again.stderr, again.stderr


def issues_of_checked(text: str) -> list[str]:
    """Issues from the schema, the planner and preflight (what ``validate`` reports)."""
    from lorabench.plan import expand
    from lorabench.preflight import preflight

    try:
        suite = parse_suite(text, "s.yaml")
    except SuiteError as exc:
        return [str(i) for i in exc.issues]
    return [str(i) for i in preflight(suite, expand(suite)).issues]


# --- layering -------------------------------------------------------------------------


def _import_graph() -> dict[str, set[str]]:
    """lorabench module → the lorabench modules it imports (at any level, lazy imports too)."""
    import ast

    root = REPO / "lorabench"
    mods: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                # Importing a.b.c runs a and a.b first, except those the importer is inside of.
                targets = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
                graph[mod] |= {t for t in targets if t in mods and t != mod and t not in ancestors}
    return graph


def test_the_package_has_no_import_cycles() -> None:
    graph = _import_graph()
    assert "lorabench.plan" in graph["lorabench.validate"]  # the checker sees real edges
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_validation_modules_import_nothing_above_them() -> None:
    graph = _import_graph()
    assert not graph["lorabench.vocab"]
    assert "lorabench.plan" not in graph["lorabench.suite.schema"]
    assert "lorabench.suite.schema" not in graph["lorabench.methods.base"]


def test_builtin_cache_key_hashes_the_pretraining_code(tmp_path: Path) -> None:
    """An edit to an objective or a generator is a new model directory, never a stale cached one."""
    import shutil

    code = "from lorabench.models.builtin import model_dir; print(model_dir('tiny-gpt2').name)"

    def key(root: Path) -> str:
        env = {**cli_env(), "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "lorabench", copy / "lorabench", ignore=shutil.ignore_patterns("__pycache__"))
    before = key(copy)
    assert before == key(REPO)
    for rel in ("models/objectives.py", "data/grammar.py"):
        path = copy / "lorabench" / rel
        original = path.read_text()
        path.write_text(original + "\n# an edit\n")
        assert key(copy) != before, rel
        path.write_text(original)
    assert key(copy) == before


def test_moving_helpers_out_of_the_pretraining_code_kept_the_cache_keys() -> None:
    """builtin.py and objectives.py hash as the bytes every built-in model was cached under.

    Their helpers moved down (``paths.cache_root``, ``data.batching.pad_batch``) and their
    imports to the top; ``models.pretrain_key`` undoes exactly that before hashing. A real
    change to either file changes these digests: bump ``PRETRAIN_VERSION`` with it and
    empty ``KEY_STABLE_EDITS``.
    """
    import hashlib

    from lorabench.models.pretrain_key import keyed_bytes

    cached_as = {
        "models/builtin.py": "d4eb5c100462ebe0c4f4431d48738bde9ca6581152fc5f1098c9ae2f6a875f88",
        "models/objectives.py": "4c387161b96c5da74e7167aab3b77f4e9036327d84c811753f516a8ad94aacaa",
    }
    for rel, digest in cached_as.items():
        data = (REPO / "lorabench" / rel).read_bytes()
        assert hashlib.sha256(keyed_bytes(rel, data)).hexdigest() == digest, rel


def test_a_run_checks_positions_again_once_its_model_config_is_known() -> None:
    """A hub model not in the cache at validate time is checked by the run, before training."""
    from lorabench.plan import expand
    from lorabench.preflight import positions_error

    (spec,) = expand(parse_suite(GOOD.replace("steps: 5", "steps: 5\n  max_seq_len: 128"), "s.yaml"))
    gpt2_like = {"model_type": "gpt2", "n_positions": 100}
    message = positions_error(spec, gpt2_like)
    assert message is not None and "train.max_seq_len 128 = 128 tokens, more than the model's 100 positions" in message
    assert positions_error(spec, {**gpt2_like, "n_positions": 128}) is None
    assert positions_error(spec, {"model_type": "t5", "n_positions": 16}) is None  # relative positions
    assert positions_error(spec, {"model_type": "custom"}) is None  # no limit known
    pipeline = (REPO / "lorabench" / "run" / "pipeline.py").read_text()
    assert "positions_error(spec, model.config.to_dict())" in pipeline


# Top-level parts of the package, lowest first: a module may import its own part and any
# part of a lower rank, never one of a higher rank or another part of the same rank.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "vocab", "stats", "paths"),
    ("registry", "atomic", "quiet", "record_data"),
    ("metrics",),
    ("suite", "provenance", "quality"),
    ("data",),
    ("tasks", "models", "methods"),
    ("accounting", "spec", "sanity"),
    ("plan", "preflight", "record", "results_dir"),
    ("run", "validate", "report"),
    ("execute",),
    ("bench",),
    ("cli",),
    ("__main__",),
)


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# Edges still allowed, each with its reason (none: shared helpers live in the lower part).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def test_parts_import_only_downwards() -> None:
    """No part reaches up (or sideways: models, tasks and methods do not import each other)."""
    rank = {part: i for i, layer in enumerate(LAYERS) for part in layer}
    graph = _import_graph()
    parts = {_part(m) for m in graph} - {""}
    assert parts <= set(rank), f"parts missing from LAYERS: {sorted(parts - set(rank))}"
    bad = sorted(
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        for dep in deps
        if _part(mod)
        and _part(dep)
        and _part(mod) != _part(dep)
        and rank[_part(dep)] >= rank[_part(mod)]
        and (mod, dep) not in KNOWN_UPWARD
    )
    assert not bad, "\n".join(bad)


#: Third-party libraries a function may import on use, each with why it is not at the top.
LAZY_LIBRARIES = {
    "torch": "1-2 s and GBs of address space: --help, validate, report and config-only answers never pay it",
    "transformers": "imports torch",
    "peft": "imports torch and transformers",
    "bitsandbytes": "k-bit runs only; imports torch's compiler stack (1.2 s)",
    "safetensors": "its torch API imports torch",
    "tokenizers": "Rust extension, only when a built-in tokenizer is built",
    "datasets": "hub data sets only (~1 s of imports)",
    "huggingface_hub": "hub models only",
    "pynvml": "CUDA machines only (NVML)",
    "ray": "optional: the Ray executor",
    "liger_kernel": "optional: Liger's CUDA kernels",
    "matplotlib": "static plots only (~0.5 s)",
    "seaborn": "static plots only; imports matplotlib",
    "plotly": "report.html only: its inlined JS bundle",
    "rouge_score": "summarization scoring only (nltk)",
    "tqdm": "a progress bar only where one is shown (models/builtin.py's bytes also key the model cache)",
}
#: lorabench modules that import parts of lorabench inside functions, each with why.
LAZY_INTERNAL = {
    "lorabench.cli": "each command imports its stage on use: --help and validate import no torch",
    "lorabench.bench": "the executor, report and built-in preparation load only for a run that needs them",
    "lorabench.execute": "only the chosen executor is imported (Ray is optional)",
    "lorabench.execute.entry": "the run process imports the run stage after it starts, so import_s is measured",
    "lorabench.execute.ray": "runs in a Ray worker, which imports the run stage itself",
    "lorabench.execute.ranks": "each rank imports the run stage after its own start-up, as a single run does",
    "lorabench.accounting.estimate": "models.loading imports torch: config-only estimates must not",
    "lorabench.accounting.params": "models.loading imports torch: config-only counts must not",
    "lorabench.accounting.trace": "the tracer's model building imports torch, on use",
    "lorabench.accounting.fit": "estimate and trace (torch) on use",
    "lorabench.run.perf": "the estimator only where a run asks for it (accounting imports methods, models)",
    "lorabench.methods": "peft-type entries (peft) load on use",
    "lorabench.methods.base": "adapter state I/O (torch, safetensors) on use",
    "lorabench.methods.lora_ref": "the reference layer (torch modules) on use",
    "lorabench.models.loading": "bitsandbytes' CPU path and built-in pretraining on use",
    "lorabench.models.handwritten": "loading (torch) on use",
    "lorabench.preflight": "model configs are read only for the checks that need them",
    "lorabench.validate": "preflight (model configs, hub) only when asked",
    "lorabench.plan": "task and peft-type registries resolve on use",
    "lorabench.tasks.classification": "scoring on use",
    "lorabench.tasks.summarization": "scoring (rouge_score) on use",
    "lorabench.results_dir": "the package version on use",
}


def _function_imports() -> list[tuple[str, int, str]]:
    """(module, line, imported name) of every import inside a function of the package."""
    import ast

    out = []
    for path in sorted((REPO / "lorabench").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        mod = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        out += [(mod, node.lineno, a.name) for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module:
                        out.append((mod, node.lineno, node.module))
    return out


def test_imports_inside_functions_are_only_heavy_or_optional_ones() -> None:
    """A function-level import needs a reason: a heavy or optional library, or a listed lazy stage.

    Everything else (the standard library, light dependencies, lorabench's own lower
    parts) is imported at the top, where the import graph test sees it.
    """
    bad = []
    for mod, line, name in _function_imports():
        top = name.split(".")[0]
        if top == "lorabench":
            ok = mod in LAZY_INTERNAL
        else:
            ok = top in LAZY_LIBRARIES
        if not ok:
            bad.append(f"{mod}:{line} imports {name} inside a function")
    assert not bad, "\n".join(bad)
    used = {mod for mod, _, name in _function_imports() if name.startswith("lorabench")}
    assert not set(LAZY_INTERNAL) - used, f"stale LAZY_INTERNAL entries: {sorted(set(LAZY_INTERNAL) - used)}"


def test_no_get_with_a_default_on_a_run_spec() -> None:
    """The schema's defaults are the only defaults: nothing reads ``spec.<section>.get(...)``."""
    import ast

    bad = []
    for path in sorted((REPO / "lorabench").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"):
                continue
            target = node.func.value
            while isinstance(target, ast.Attribute):  # spec.train.get, spec.model.get, ...
                target = target.value
            if isinstance(target, ast.Name) and target.id == "spec" and isinstance(node.func.value, ast.Attribute):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, bad


def test_runs_over_several_processes_are_checked_before_any_work() -> None:
    base = GOOD.replace("steps: 5", "steps: 5\n  batch_size: 6")
    several = base + "execution: {processes: 4, strategy: fsdp}\n"
    (batch,) = issues_of(several)
    assert "train.batch_size (6) is the global batch and must split evenly over execution.processes (4)" in batch
    nf4 = base.replace("method: [lora]", "method: [lora]\n  precision: [nf4]")  # QLoRA
    (refused,) = issues_of(nf4 + "execution: {processes: 2, strategy: fsdp}\n")
    assert "nf4 under execution.strategy: fsdp is refused" in refused and "s.yaml:" in refused
    assert "\n" not in refused
    parse_suite(nf4 + "execution: {processes: 2, strategy: ddp}\n", "s.yaml")  # DDP replicates k-bit bases
    (adalora,) = issues_of(base.replace("method: [lora]", "method: [adalora]") + "execution: {processes: 2}\n")
    assert "adalora computes its loss past the model's own forward" in adalora
    (chunked,) = issues_of(base + "  loss: chunked\nexecution: {processes: 2}\n")
    assert "train.loss: chunked" in chunked
    (zero,) = issues_of(base + "execution: {processes: 0}\n")
    assert "`processes` should be >= 1, got 0" in zero
    (strategy,) = issues_of(base + "execution: {strategy: zero}\n")
    assert "execution.strategy: expected one of 'ddp', 'fsdp', got 'zero'" in strategy


#: The run spec's typed parts, whichever name holds the spec: none is a dict.
SPEC_PARTS = ("task_options", "method_options", "quantization", "execution")


def test_typed_spec_parts_are_read_as_attributes() -> None:
    """``.get(`` or ``[...]`` on a typed spec part, or on a task's options, is a dict habit the types removed.

    ``spec.task_options.get("x", default)`` would re-state a default the Options class
    owns (and fail at run time: the options are a dataclass). A record's ``spec`` is its
    JSON wire form and stays a dict; this checks the typed objects only.
    """
    import ast

    bad = []
    for path in sorted((REPO / "lorabench").rglob("*.py")):
        in_tasks = path.parent.name == "tasks"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                holder = node.func.value
            elif isinstance(node, ast.Subscript):
                holder = node.value
            else:
                continue
            if not isinstance(holder, ast.Attribute):
                continue
            task_options = in_tasks and holder.attr == "options" and isinstance(holder.value, ast.Name)
            if holder.attr in SPEC_PARTS or (task_options and holder.value.id == "self"):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:60]}")
    assert not bad, "\n".join(bad)
