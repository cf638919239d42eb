"""A real two-node Ray cluster on loopback: runs spread over both nodes, then one node dies mid-suite.

The head and a second node are separate ``ray start --block`` processes, each in its own
session (process group) with its temp dir under pytest's tmp, one CPU and a small object
store each. ``lorabench run --executor ray --address`` drives them from a subprocess, as a
user would. At the end every process of both nodes is stopped by its process group, and
the test fails if one survives.

Loopback only: Ray rewrites 127.0.0.1 to the machine's routed address, so the head listens
on 127.0.0.2 and the second node on 127.0.0.3 (both on ``lo``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

# CI installs the ray extra (`make install EXTRAS=ray`; `make lock-check EXTRAS=ray` fails
# without it), so these run there; the drift venv has no Ray and skips them.
ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

HEAD_IP, NODE2_IP = "127.0.0.2", "127.0.0.3"
OBJECT_STORE = str(80 * 1024**2)  # Ray's floor is 75 MiB; runs return small dicts

SUITE = """
name: tiny-cluster
matrix:
  model: [builtin:tiny-gpt2]
  method: [{methods}]
  task: [synthetic-lm]
train: {{steps: 3, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 1}}
eval: {{batch_size: 16, max_batches: 1}}
execution: {{threads: {threads}, timeout_s: 300, startup_timeout_s: {startup}}}
"""


#: The cluster's token (Ray's token auth), handed to every node and the driver in the
#: environment: a new Ray cluster otherwise writes one to ~/.ray/auth_token.
TOKEN = os.urandom(16).hex()


def _env() -> dict[str, str]:
    env = cli_env()
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        pytest.skip("no `ray` command beside this interpreter")
    return found


class Node:
    """One ``ray start --block`` in its own session; ``stop()`` ends its whole process group."""

    def __init__(self, name: str, args: list[str], temp: Path) -> None:
        self.name = name
        self.log = temp.parent / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [_ray_cli(), "start", "--block", "--disable-usage-stats", f"--temp-dir={temp}", *args],
                env=_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.proc.pid  # start_new_session: the leader's pid is the group's id
        self.seen: set[int] = {self.proc.pid}

    def wait_started(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        pytest.fail(f"ray node {self.name} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        """This node's processes now: its group and the leader's descendants (remembered for the final check)."""
        found: dict[int, psutil.Process] = {}
        try:
            found.update((p.pid, p) for p in psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            pass
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.pgid:
                    found[proc.pid] = proc
            except (ProcessLookupError, psutil.Error):
                continue
        self.seen.update(found)
        return list(found.values())

    def stop(self) -> list[str]:
        """SIGTERM the ``ray start`` (it stops its node), then SIGKILL the group; what survived."""
        self.processes()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for pid in [self.pgid, *[p for p in self.seen if _alive(p) is not None]]:
            try:
                (os.killpg if pid == self.pgid else os.kill)(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = [p for p in map(_alive, self.seen) if p is not None]
            if not alive:
                return []
            time.sleep(0.5)
        return [f"{self.name}: pid {p.pid} {' '.join(p.cmdline())[:120]}" for p in alive]


def _alive(pid: int) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.NoSuchProcess:
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node | str]]:
    """A head (1 CPU) and a second node (1 CPU) on loopback; every process stopped afterwards."""
    # Short paths: Ray's unix sockets live under the temp dir (107-byte limit).
    base = tmp_path_factory.mktemp("rc")
    (base / "head").mkdir()
    (base / "node2").mkdir()
    port = _free_port()
    nodes: list[Node] = []
    try:
        head = Node(
            "head",
            [
                "--head",
                f"--node-ip-address={HEAD_IP}",
                f"--port={port}",
                f"--dashboard-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}",
                "--include-dashboard=false",
                "--num-cpus=1",
                f"--object-store-memory={OBJECT_STORE}",
            ],
            base / "head",
        )
        nodes.append(head)
        head.wait_started()
        node2 = Node(
            "node2",
            [
                f"--address={HEAD_IP}:{port}",
                f"--node-ip-address={NODE2_IP}",
                f"--dashboard-agent-listen-port={_free_port()}",
                "--num-cpus=1",
                '--resources={"lorabench_node2": 1}',
                f"--object-store-memory={OBJECT_STORE}",
            ],
            base / "node2",
        )
        nodes.append(node2)
        node2.wait_started()
        yield {"address": f"{HEAD_IP}:{port}", "head": head, "node2": node2}
    finally:
        stray = [line for node in reversed(nodes) for line in node.stop()]
        assert not stray, "Ray processes outlived the test:\n" + "\n".join(stray)


def _suite(tmp_path: Path, methods: str, threads: int = 1, startup: float = 240) -> Path:
    """The suite file (one directory per matrix: the larger suite has the same name, to resume into)."""
    path = tmp_path / f"{len(methods.split(','))}-{threads}" / "tiny-cluster.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(SUITE.format(methods=methods, threads=threads, startup=startup))
    return path


def _cmd(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lorabench", "run", str(suite), "--out", str(out), "--no-progress", *extra]


def _records(out: Path) -> dict[str, dict]:
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]
    by_id = {r["run_id"]: r for r in recs}
    assert len(by_id) == len(recs), "a run_id recorded twice"
    return by_id


def _on_node(node: Node) -> bool:
    """True once one of ``node``'s workers runs a lorabench run's task."""
    for proc in node.processes():
        try:
            if "_ray_run" in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def test_a_two_node_cluster_spreads_runs_survives_a_dead_node_and_resumes(cluster, tmp_path: Path) -> None:
    address, head, node2 = cluster["address"], cluster["head"], cluster["node2"]
    assert isinstance(node2, Node) and isinstance(head, Node) and isinstance(address, str)
    ray_args = ("--executor", "ray", "--address", address)
    # The reference: every run of the larger suite on the local executor.
    local = tmp_path / "local"
    big = _suite(tmp_path, "lora, bitfit, ia3, full")
    proc = subprocess.run(_cmd(big, local), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = _records(local)
    assert len(reference) == 4

    # 1. Two runs, two nodes with one CPU each: one run on each; the driver alone records.
    out = tmp_path / "cluster"
    small = _suite(tmp_path, "lora, bitfit")
    proc = subprocess.run(
        _cmd(small, out, *ray_args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = _records(out)
    assert len(first) == 2 and {r["status"] for r in first.values()} == {"success"}
    assert {r["env"]["node"]["ip"] for r in first.values()} == {HEAD_IP, NODE2_IP}, "runs did not land on both nodes"
    for run_id, rec in first.items():
        assert rec["executor"] == {"name": "ray", "address": address, "attempts": 1}
        assert rec["env"]["node"]["id"] and rec["env"]["ray"] == ray.__version__
        assert rec["metrics"] == reference[run_id]["metrics"], run_id  # same numbers, whichever node ran it
    assert not list(out.glob("runs/*/*.tmp*")), "a half-written record was left behind"

    # 2. The larger suite resumes in the same directory: its two new runs go to both nodes,
    # and node2's raylet is killed while a run is on it. The run goes again on the head.
    driver = subprocess.Popen(
        _cmd(big, out, *ray_args), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 600
        while not _on_node(node2):
            assert driver.poll() is None, "the suite ended before a run reached node2"
            assert time.monotonic() < deadline, "no run reached node2"
            time.sleep(0.2)
        raylets = [p for p in node2.processes() if p.name() == "raylet"]
        assert len(raylets) == 1
        raylets[0].kill()
        _stdout, stderr = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, stderr[-3000:]
    assert "4 runs, 2 to run, 2 already recorded" in stderr
    records = _records(out)
    assert set(records) == set(reference) and {r["status"] for r in records.values()} == {"success"}
    moved = [r for r in records.values() if r["executor"]["attempts"] == 2]
    assert len(moved) == 1, [r["executor"] for r in records.values()]
    assert moved[0]["executor"]["lost_nodes"][0].startswith(NODE2_IP)
    assert moved[0]["env"]["node"]["ip"] == HEAD_IP  # retried once, elsewhere
    for run_id, rec in records.items():
        assert rec["metrics"] == reference[run_id]["metrics"], run_id
        if run_id in first:  # resumed, not rerun
            assert rec == first[run_id]
    # `ray start --block` stops the rest of a node whose raylet died.
    node2.proc.wait(timeout=60)

    # 3. Run again: nothing left to run, nothing rewritten.
    before = {p: p.read_bytes() for p in out.glob("runs/*/record.json")}
    proc = subprocess.run(_cmd(big, out, *ray_args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 runs, 0 to run, 4 already recorded" in proc.stderr
    assert {p: p.read_bytes() for p in out.glob("runs/*/record.json")} == before


def test_a_run_no_node_can_take_times_out_at_startup_instead_of_waiting_forever(cluster, tmp_path: Path) -> None:
    """Four CPUs per run on one-CPU nodes: Ray would queue it forever; startup_timeout_s ends it."""
    address = cluster["address"]
    suite = _suite(tmp_path, "lora", threads=4, startup=5)
    out = tmp_path / "out"
    proc = subprocess.run(
        _cmd(suite, out, "--executor", "ray", "--address", str(address)),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = _records(out).values()
    assert rec["status"] == "timeout"
    assert "did not start this run within execution.startup_timeout_s=5s" in rec["error"]
    assert "4 CPU(s)" in rec["error"]
