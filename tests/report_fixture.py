"""A realistic result set for the report tests, built from the committed smoke baseline's records.

Each baseline record gets a second seed (metrics and costs moved a little), a training-loss
curve and a few predictions, so the page has seed bands, curves and drill-down examples to
show without training anything.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

from lorabench.record_data import Record

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "results" / "baselines" / "smoke-cpu"


def _curve(seed: int, steps: int, start: float, end: float) -> list[list[float]]:
    return [
        [s, round(end + (start - end) * math.exp(-s / max(steps / 4, 1)) + 0.05 * math.sin(s + seed), 6), 0.003]
        for s in range(steps)
    ]


def _predictions(rec: dict[str, Any]) -> list[dict[str, Any]]:
    ttype = rec["spec"]["task_options"].get("type")
    if ttype == "classification":
        return [
            {"id": i, "input": f"the film was {w} <b>really</b>", "reference": i % 2, "prediction": 1}
            for i, w in enumerate(("great", "dull", "fine"))
        ]
    if ttype == "summarization":
        return [
            {
                "id": i,
                "input": f"Alice: meet at the park on day {i}? Bob: yes, I bring the map.",
                "reference": f"alice and bob meet on day {i} .",
                "prediction": f"alice and bob meet day {i} .",
            }
            for i in range(3)
        ]
    return [{"id": i, "reference": "the cat sat", "prediction": "the cat sat"} for i in range(3)]


def build_result_set(root: Path, seeds: int = 2) -> tuple[Path, list[dict[str, Any]]]:
    """``root/runs/<id>/{record.json,predictions.jsonl}`` with ``seeds`` seeds per baseline point."""
    records = []
    for path in sorted(BASELINE.glob("runs/*/record.json")):
        base = json.loads(path.read_text())
        for seed in range(seeds):
            rec = copy.deepcopy(base)
            if seed:
                rec["run_id"] = f"{base['run_id'][:10]}s{seed}"
                rec["spec"]["seed"] = seed
                rec["label"] = base["label"].rsplit("/s", 1)[0] + f"/s{seed}"
                factor = 1 + 0.02 * seed
                rec["metrics"] = {k: v * factor for k, v in (rec.get("metrics") or {}).items()}
                prof = rec["profile"]
                prof["step_s"] = [s * (1 + 0.1 * seed) for s in prof.get("step_s") or []]
                if prof.get("tokens_per_s"):
                    prof["tokens_per_s"] /= 1 + 0.1 * seed
            steps = int((rec.get("profile") or {}).get("train_steps") or 40)
            rec["curves"] = (
                {"train_loss": _curve(seed, steps, 3.0, 1.2 + 0.1 * seed)} if rec["status"] == "success" else {}
            )
            run_dir = root / "runs" / rec["run_id"]
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "record.json").write_text(json.dumps(rec))
            if rec["status"] == "success":
                (run_dir / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in _predictions(rec)))
            records.append(rec)
    return root, records


def copy_baseline(dst: Path) -> Path:
    shutil.copytree(BASELINE, dst)
    return dst


def typed(records: list[dict[str, Any]]) -> list[Record]:
    """The readers' view of records written as JSON (what ``load_records`` returns)."""
    return [Record.from_dict(r) for r in records]
