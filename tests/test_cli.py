"""The real entry point, in a subprocess: exit codes, messages, no torch on light paths."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, cli_env, run_cli


def test_help_and_validate_do_not_import_torch(write_suite) -> None:
    suite = write_suite("""
        matrix: {model: [builtin:tiny-gpt2], method: [lora, full], task: [synthetic-lm]}
        train: {steps: 3}
    """)
    code = (
        "import sys\n"
        "from lorabench.cli import main\n"
        f"assert main(['validate', {str(suite)!r}]) == 0\n"
        "assert main(['list', 'methods']) == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    help_out = run_cli("--help")
    assert help_out.returncode == 0 and "validate" in help_out.stdout


def test_invalid_suite_exits_2_with_every_error_and_no_traceback(write_suite) -> None:
    suite = write_suite("""
        matrix:
          model: [builtin:tiny-gpt2]
          method: [full, lora]
          precision: [nf4]
          task: [synthetic-lm]
        train:
          steps: 0
          colour: blue
    """)
    out = run_cli("validate", str(suite))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{suite}:7: train.steps: `steps` should be >= 1, got 0" in out.stderr
    assert f"{suite}:8: train: unknown key 'colour'" in out.stderr
    assert f"{suite}:2: full at nf4 is invalid" in out.stderr
    assert "suite is invalid (3 problems)" in out.stderr


def test_missing_suite_file_exits_2() -> None:
    out = run_cli("run", "no/such/suite.yaml")
    assert out.returncode == 2
    assert "suite file not found" in out.stderr and "Traceback" not in out.stderr


def test_validate_plan_lists_run_ids() -> None:
    out = run_cli("validate", "suites/smoke.yaml", "--plan")
    assert out.returncode == 0, out.stderr
    assert "tiny-gpt2/lora-r8/nf4/synthetic-lm/s0" in out.stdout


def test_list_commands() -> None:
    for what, needle in [
        ("methods", "lora"),
        ("models", "builtin:tiny-gpt2"),
        ("tasks", "synthetic-lm"),
        ("metrics", "perplexity"),
    ]:
        out = run_cli("list", what)
        assert out.returncode == 0 and needle in out.stdout, out.stderr


def test_report_on_a_non_results_dir_exits_2(tmp_path) -> None:
    out = run_cli("report", str(tmp_path))
    assert out.returncode == 2 and "no runs/ directory" in out.stderr
