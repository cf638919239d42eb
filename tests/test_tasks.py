"""Classification and summarisation end to end through the CLI, on the built-in pretrained models.

A short LoRA fine-tune must go clearly above chance (sentiment) and above trivial
baselines (dialogue summaries); the metrics in each record must be recomputable from its
predictions.jsonl; a second run on the same data set must read the tokenised data from
the cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lorabench.tasks.scoring import rouge
from tests.conftest import run_cli
from tests.test_metrics_reference import sentences

pytestmark = pytest.mark.slow

SUITE = """
name: families
models:
  tiny-bert: {path: "builtin:tiny-bert", target_modules: [query, value, word_embeddings]}
matrix:
  - {model: [tiny-bert], method: [lora], rank: [4, 8], task: [synthetic-sentiment]}
  - {model: [builtin:tiny-t5], method: [lora], rank: [8], task: [synthetic-dialogsum]}
methods:
  lora: {alpha: 16, dropout: 0.0}
train: {epochs: 1, batch_size: 8, lr: 3.0e-3, max_seq_len: 64, warmup_steps: 5}
eval: {batch_size: 32, generation: {max_new_tokens: 24}}
execution: {threads: 2, timeout_s: 600}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    tmp = tmp_path_factory.mktemp("families")
    (tmp / "families.yaml").write_text(SUITE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORABENCH_DATA_CACHE", str(tmp / "data-cache"))  # a fresh tokenised-data cache
        proc = run_cli("run", str(tmp / "families.yaml"), "--out", str(tmp / "out"), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for path in sorted((tmp / "out" / "runs").glob("*/record.json")):
        rec = json.loads(path.read_text())
        preds = [json.loads(line) for line in (path.parent / "predictions.jsonl").read_text().splitlines()]
        rec["_dir"] = str(path.parent)
        out[rec["label"]] = (rec, preds)
    return out


def test_sentiment_goes_clearly_above_chance_and_metrics_match_predictions(runs: dict[str, Any]) -> None:
    rec, preds = runs["tiny-bert/lora-r8/fp32/synthetic-sentiment/s0"]
    assert len(preds) == 200 and {"id", "prediction", "reference", "input"} <= set(preds[0])
    pairs = [(p["reference"], p["prediction"]) for p in preds]
    assert rec["metrics"]["accuracy"] == sum(r == g for r, g in pairs) / len(pairs) >= 0.7  # chance: 0.5
    f1 = []
    for c in (0, 1):
        tp, fp, fn = (
            sum(r == c and g == c for r, g in pairs),
            sum(r != c and g == c for r, g in pairs),
            sum(r == c and g != c for r, g in pairs),
        )
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert rec["metrics"]["macro_f1"] == pytest.approx(sum(f1) / 2) and min(f1) >= 0.6
    assert rec["spec"]["task_options"]["num_labels"] == 2


def test_the_second_run_on_a_data_set_reads_the_tokenised_cache(runs: dict[str, Any]) -> None:
    first, _ = runs["tiny-bert/lora-r4/fp32/synthetic-sentiment/s0"]
    second, _ = runs["tiny-bert/lora-r8/fp32/synthetic-sentiment/s0"]
    # Runs execute in plan order (rank 4, then rank 8), in a fresh data cache.
    assert (first["resolved"]["data"]["cache"], second["resolved"]["data"]["cache"]) == ("miss", "hit")
    assert first["resolved"]["data"]["cache_key"] == second["resolved"]["data"]["cache_key"]


def test_dialogue_summaries_beat_trivial_baselines_and_rouge_matches_predictions(runs: dict[str, Any]) -> None:
    rec, preds = runs["tiny-t5/lora-r8/fp32/synthetic-dialogsum/s0"]
    assert len(preds) == 64
    m = rec["metrics"]
    from rouge_score import rouge_scorer

    refs = [p["reference"] for p in preds]
    scorer = rouge_scorer.RougeScorer(list(m), use_stemmer=True)
    scores = [scorer.score(sentences(p["reference"]), sentences(p["prediction"])) for p in preds]
    assert m == pytest.approx({k: 100 * sum(s[k].fmeasure for s in scores) / len(scores) for k in m}, rel=1e-9)
    # Trivial summaries: the first words of the dialogue, and one fixed well-formed summary.
    lead = rouge(refs, [" ".join(p["input"].split()[:17]) for p in preds])["rougeL"]
    fixed = rouge(refs, ["alice and bob will meet at the park on friday . alice will bring the map ."] * len(preds))
    assert m["rougeL"] > max(lead, fixed["rougeL"]) + 8
    resolved = rec["resolved"]["eval"]
    assert resolved["family"] == "seq2seq"
    assert resolved["generation"] == {"decoding": "greedy", "num_beams": 1, "max_new_tokens": 24, "do_sample": False}


def test_report_shows_prediction_examples(runs: dict[str, Any]) -> None:
    rec, preds = runs["tiny-t5/lora-r8/fp32/synthetic-dialogsum/s0"]
    report = (Path(rec["_dir"]).parents[1] / "report.md").read_text()
    assert "## Prediction examples" in report and preds[0]["reference"][:60] in report
