"""``--executor ray``: a local Ray instance runs a tiny suite and records what the local executor records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SUITE = """
name: tiny-ray
matrix:
  model: [builtin:tiny-gpt2]
  method: [lora, bitfit]
  task: [synthetic-lm]
train: {steps: 3, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 1}
eval: {batch_size: 16, max_batches: 1}
execution: {threads: 1, timeout_s: 300}
"""


def _by_id(out: Path) -> dict[str, dict]:
    recs = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    return {r["run_id"]: r for r in recs}


def test_ray_executor_records_match_the_local_executor(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorabench.bench import run_suite
    from lorabench.execute.local import LocalExecutor
    from lorabench.execute.ray import RayExecutor
    from lorabench.validate import load_suite

    path = tmp_path / "tiny-ray.yaml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    local = run_suite(suite, tmp_path / "local", progress=False, executor=LocalExecutor())
    assert local.statuses == {"success": 2}

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # A new local Ray otherwise turns on token auth and writes a token to ~/.ray/auth_token.
    # Disabled, not a token: this process read Ray's config (auth off) when it imported ray,
    # and a token only its GCS saw would lock it out. The node listens on loopback only.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # On loopback, with a small object store: runs return their results, nothing large.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=80 * 1024**2,
        _node_ip_address="127.0.0.2",  # on loopback: Ray turns 127.0.0.1 into the routed address
        _temp_dir=str(tmp_path_factory.mktemp("r")),  # short: Ray's unix sockets live under it (107 bytes)
    )
    try:
        remote = run_suite(suite, tmp_path / "ray", progress=False, executor=RayExecutor())
    finally:
        ray.shutdown()
    assert remote.statuses == {"success": 2}

    a, b = _by_id(tmp_path / "local"), _by_id(tmp_path / "ray")
    assert a.keys() == b.keys()
    for run_id, rec in b.items():
        assert rec["executor"] == {"name": "ray", "address": None, "attempts": 1}
        assert rec["env"]["node"]["ip"] == "127.0.0.2" and rec["env"]["node"]["id"]
        assert rec["spec"] == a[run_id]["spec"]
        # Same seed, same threads, one process per run: the same numbers, whoever ran it.
        assert rec["metrics"] == a[run_id]["metrics"], run_id
        assert rec["profile"]["trainable_params"] == a[run_id]["profile"]["trainable_params"]
        assert rec["env"]["peft"] == a[run_id]["env"]["peft"] and rec["env"]["ray"]
        assert (tmp_path / "ray" / "runs" / run_id / "log.txt").is_file()
    assert (tmp_path / "ray" / "leaderboard.md").is_file()


@pytest.mark.parametrize(
    ("address", "says"),
    [("127.0.0.2:1", "no Ray head answers there"), ("head-without-port", "expected HOST:PORT")],
)
def test_an_address_where_no_head_answers_is_one_line_and_exit_2(tmp_path: Path, address: str, says: str) -> None:
    """ray.init would retry such an address for minutes; the driver says so at once."""
    from tests.conftest import run_cli

    path = tmp_path / "tiny-ray.yaml"
    path.write_text(SUITE)
    proc = run_cli(
        "run", str(path), "--out", str(tmp_path / "out"), "--executor", "ray", "--address", address, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("runs/*/record.json"))


def test_a_run_that_loses_its_node_twice_is_failed_naming_both_nodes(tmp_path: Path) -> None:
    """The second loss is not retried: the record says failed, with both lost nodes (no cluster needed)."""
    from lorabench.execute.ray import RayExecutor, _Flight
    from lorabench.plan import expand
    from lorabench.validate import load_suite

    path = tmp_path / "tiny-ray.yaml"
    path.write_text(SUITE)
    spec = expand(load_suite(str(path)))[0]
    executor = RayExecutor("127.0.0.2:1")  # connects on first use only: nothing here does
    flight = _Flight(spec, tmp_path / "run", (1.0, 0.0), attempt=2, lost=["127.0.0.3 (aaa)"])
    flight.node = {"id": "bbb", "ip": "127.0.0.4", "host": "h"}
    died = ray.exceptions.NodeDiedError("Task failed because the node it was running on is dead or unavailable.")
    lost = executor._lost(flight, died)
    assert lost == "127.0.0.4 (bbb)"
    flight.lost.append(lost)
    result = executor._failure(flight, died, flight.submitted + 1.0)
    assert result["status"] == "failed"
    assert (
        "on node 127.0.0.4 (bbb)" in result["error"]
        and "after losing node(s) 127.0.0.3 (aaa), 127.0.0.4" in result["error"]
    )
    assert result["executor"] == {
        "name": "ray",
        "address": "127.0.0.2:1",
        "attempts": 2,
        "lost_nodes": ["127.0.0.3 (aaa)", "127.0.0.4 (bbb)"],
    }
    assert result["env"] == {"node": flight.node}
    # Before a run reports its node, the name comes from Ray's message.
    bare = _Flight(spec, tmp_path / "run", (1.0, 0.0))
    msg = ray.exceptions.NodeDiedError("Task failed ... Node IP: 127.0.0.3, node ID: ccc. This can happen if ...")
    assert executor._lost(bare, msg) == "127.0.0.3, node ID: ccc"
    assert executor._lost(bare, RuntimeError("not a node")) is None
