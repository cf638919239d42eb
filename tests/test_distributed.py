"""One run over several processes (``execution.processes``), on CPU under gloo.

Two ranks with DDP and with FSDP2 must train exactly as one process at the same global
batch (the same losses up to float error: the data split and the loss weighting are
the point), and a rank that crashes must end the run as ``failed`` with that rank's
error and leave no process behind. The memory estimate is per rank. The model is tiny-gpt2 with its dropout set to 0
(a local copy of the built-in): dropout draws differ between one process and two.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, cli_env

SUITE = """
name: dist
models: {{g: {{path: {model}}}}}
methods: {{lora: {{dropout: 0.0}}}}
matrix: {{model: [g], method: [lora], task: [synthetic-lm]}}
train: {{steps: 4, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 1, log_every: 1}}
eval: {{batch_size: 16, max_batches: 1}}
execution: {{device: cpu, threads: 1, timeout_s: 300{extra}}}
"""

# A rank crashes from outside lorabench: this sitecustomize (on the CLI's PYTHONPATH, so in
# the driver and the forkserver, and inherited by every fork) wraps the loss-item count the
# training loop calls each micro-step; in rank LB_CRASH_RANK, at its 3rd call, the process
# kills itself with SIGSEGV (a crash, no Python exception, no report).
SITECUSTOMIZE = """
import importlib.util, os, signal, sys

class _Crash:
    def find_spec(self, name, path=None, target=None):
        if name != "lorabench.run.distributed" or not os.environ.get("LB_CRASH_RANK"):
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real, calls = module.loss_items, [0]

            def loss_items(*args, **kwargs):
                if os.environ.get("RANK") == os.environ["LB_CRASH_RANK"]:
                    calls[0] += 1
                    if calls[0] == 3:
                        import resource

                        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
                        os.kill(os.getpid(), signal.SIGSEGV)
                return real(*args, **kwargs)

            module.loss_items = loss_items

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Crash())
"""


def _model(tmp_path: Path) -> Path:
    """tiny-gpt2 without dropout: a local copy of the built-in, its config's dropouts at 0."""
    from lorabench.models.builtin import ensure_builtin

    out = tmp_path / "tiny-gpt2-nodrop"
    shutil.copytree(ensure_builtin("tiny-gpt2"), out)
    config = json.loads((out / "config.json").read_text())
    config.update({k: 0.0 for k in config if k.endswith(("_pdrop", "_dropout"))})
    (out / "config.json").write_text(json.dumps(config))
    return out


def _suite(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "dist.yaml"
    path.write_text(SUITE.format(model=_model(tmp_path), extra=extra))
    return path


@pytest.mark.slow
def test_two_ranks_train_as_one_process_at_the_same_global_batch(tmp_path: Path) -> None:
    from lorabench.execute.local import LocalExecutor
    from lorabench.plan import expand
    from lorabench.record import make_record
    from lorabench.record_data import Record
    from lorabench.report.leaderboard import leaderboard_markdown
    from lorabench.report.results import group, run_from_record
    from lorabench.validate import load_suite

    (spec,) = expand(load_suite(_suite(tmp_path)))
    executor = LocalExecutor()
    results = {}
    for processes, strategy in ((1, "ddp"), (2, "ddp"), (2, "fsdp")):
        execution = dataclasses.replace(spec.execution, processes=processes, strategy=strategy)
        point = dataclasses.replace(spec, execution=execution)
        result = executor.submit(point, tmp_path / "runs" / f"{processes}-{strategy}")
        assert result["status"] == "success", result.get("error")
        results[processes, strategy] = (point, result)
    one = results[1, "ddp"][1]
    assert "distributed" not in one["profile"]
    for key in ((2, "ddp"), (2, "fsdp")):
        point, res = results[key]
        torch.testing.assert_close(
            torch.tensor([loss for _, loss, _ in res["curves"]["train_loss"]]),
            torch.tensor([loss for _, loss, _ in one["curves"]["train_loss"]]),
            rtol=1e-5,
            atol=1e-5,
        )
        torch.testing.assert_close(res["metrics"]["eval_loss"], one["metrics"]["eval_loss"], rtol=1e-5, atol=1e-5)
        # The driver's typed record holds it, and writes back exactly what it read.
        rec = make_record(point, res, {})
        assert rec.profile.distributed is not None and rec.profile.distributed.world_size == 2
        assert Record.from_dict(rec.to_dict()).to_dict() == rec.to_dict()
        dist = res["profile"]["distributed"]
        assert (dist["world_size"], dist["strategy"], dist["backend"]) == (2, key[1], "gloo")
        per_rank = [r["memory_mb"]["train"]["rss"] for r in dist["per_rank"]]
        assert [r["rank"] for r in dist["per_rank"]] == [0, 1] and all(m > 0 for m in per_rank)
        assert res["profile"]["memory_mb"]["train"]["rss"] == max(per_rank)
        # Throughput is the run's: both ranks' tokens, as many as one process trains on.
        assert res["profile"]["timed_tokens"] == one["profile"]["timed_tokens"]
        assert res["profile"]["adapter_bytes"] == one["profile"]["adapter_bytes"]
    # The leaderboard says its memory column is per rank, and how each run was spread.
    records = [make_record(point, res, {}) for point, res in results.values()]
    table = leaderboard_markdown(group([run_from_record(r) for r in records]))
    assert "peak train MiB per rank" in table and "1 / 2 ddp / 2 fsdp" in table
    # runs.csv names each run's spread too.
    from lorabench.report.leaderboard import runs_frame

    frame = runs_frame(records)
    assert [(p, s if isinstance(s, str) else None) for p, s in zip(frame["processes"], frame["strategy"])] == [
        (1, None), (2, "ddp"), (2, "fsdp")
    ]  # fmt: skip


def _ours(marker: str) -> list[int]:
    """pids of live processes started by this test (marked by LB_DIST_ID in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if f"LB_DIST_ID={marker}".encode() in env and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_crashed_rank_fails_the_run_with_its_error_and_leaves_no_process(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = cli_env()
    env.update(PYTHONPATH=str(site) + os.pathsep + env["PYTHONPATH"], LB_CRASH_RANK="1", LB_DIST_ID=str(tmp_path))
    out = tmp_path / "o"
    suite = _suite(tmp_path, ", processes: 2, strategy: fsdp")
    proc = subprocess.run(
        [sys.executable, "-m", "lorabench", "run", str(suite), "--out", str(out), "--no-progress"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("runs/*/record.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed", rec["error"]
    assert rec["error"].startswith("rank 1: process died from signal SIGSEGV"), rec["error"]
    assert rec["spec"]["execution"]["processes"] == 2
    deadline = time.monotonic() + 10
    while _ours(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ours(str(tmp_path))


def test_the_estimate_is_per_rank_fsdp_shards_state_and_ddp_splits_only_the_batch() -> None:
    from lorabench.accounting.estimate import estimate_model

    args = ("builtin:tiny-gpt2", "full", "fp32", 4, 32)
    one = estimate_model(*args).breakdown
    ddp = estimate_model(*args, processes=2, strategy="ddp").breakdown
    fsdp = estimate_model(*args, processes=2, strategy="fsdp").breakdown
    for key in ("weights", "gradients", "optimizer_state", "optimizer_step"):
        assert ddp[key] == one[key] and fsdp[key] == -(-one[key] // 2), key
    assert ddp["activations"] == fsdp["activations"] < one["activations"]  # 2 of the 4 rows per rank
    assert ddp["logits"] * 2 == one["logits"]
    assert "fsdp_gathered_unit" in fsdp and "fsdp_gathered_unit" not in ddp


def test_the_cause_is_the_rank_that_died_silently_not_the_peers_its_death_broke(tmp_path: Path) -> None:
    import signal

    from lorabench.execute.ranks import _failure

    broken = {"status": "failed", "error": "rank 0: RuntimeError: Connection closed by peer", "failed_at": 2.0}
    # rank 0 reported the broken collective; rank 1 died from a signal without a word
    out = _failure({0: broken}, [1, -signal.SIGSEGV], None, tmp_path)
    assert out["error"] == "rank 1: process died from signal SIGSEGV" and out["status"] == "failed"
    # both reported: the earliest report is the cause; a rank torch ended with SIGTERM is not
    first = {"status": "oom", "error": "rank 1: OutOfMemoryError: ...", "failed_at": 1.0}
    out = _failure({0: broken, 1: first}, [1, 1, -signal.SIGTERM], None, tmp_path)
    assert out == {"status": "oom", "error": "rank 1: OutOfMemoryError: ..."}


def test_ray_refuses_runs_over_several_processes_before_any_run(tmp_path: Path) -> None:
    from lorabench.bench import run_suite
    from lorabench.errors import UsageError
    from lorabench.validate import load_suite

    class RayStandIn:  # run_suite asks only for the executor's name before refusing
        name = "ray"
        closed = False

        def close(self) -> None:
            self.closed = True

    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(model="builtin:tiny-gpt2", extra=", processes: 2"))
    executor = RayStandIn()
    with pytest.raises(UsageError, match=r"execution\.processes: 2 runs with the local executor only"):
        run_suite(load_suite(path), tmp_path / "out", progress=False, executor=executor)
    assert executor.closed and not list((tmp_path / "out").glob("runs/*/record.json"))
