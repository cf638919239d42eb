"""What lorabench trusts on disk: a planted cache entry never runs code, and the run it
would have poisoned still succeeds on rebuilt data. Runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SUITE = """
name: trust
matrix: {model: [builtin:tiny-gpt2], method: [lora], rank: [2], task: [synthetic-lm]}
train: {steps: 2, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 1}
eval: {batch_size: 16, max_batches: 1}
execution: {threads: 1, timeout_s: 300}
"""


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: what an attacker's ``os.system`` would be."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_a_planted_pickle_in_the_data_cache_is_not_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "datacache"
    monkeypatch.setenv("LORABENCH_DATA_CACHE", str(cache))
    suite = tmp_path / "trust.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    first = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    rec = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert rec["status"] == "success" and rec["resolved"]["data"]["cache"] == "miss"
    key = rec["resolved"]["data"]["cache_key"]  # published in every record: an attacker knows it
    assert json.loads((cache / f"{key}.json").read_text())["train"]

    # The payload is live: unpickled here it does run (into a directory of the test's own).
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.is_dir()

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    (cache / f"{key}.pkl").write_bytes(payload)  # where lorabench <= 0.x looked
    (cache / f"{key}.json").write_bytes(payload)  # and where it looks now
    again = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--force")
    assert again.returncode == 0, again.stderr
    assert not marker.exists(), "a cache entry ran code"
    rec = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert rec["status"] == "success" and rec["resolved"]["data"]["cache"] == "miss"  # rebuilt, not trusted
    assert json.loads((cache / f"{key}.json").read_text())["train"]  # and the entry is sound again
