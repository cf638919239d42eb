"""Forgetting (issue 18, item 3): the reference measures, the sign of the change, the base cache, the suite key.

The measures are checked on stub models whose answers are known by hand: uniform logits
over V tokens have perplexity exactly V; one-hot token states make mean-pooled halves of
a one-word text identical to each other and orthogonal to every other text's.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_TRAIN, run_cli

from lorabench.data.rows import DataError
from lorabench.data.sources import DataSource
from lorabench.plan import expand
from lorabench.suite.schema import EvalSettings
from lorabench.tasks import forgetting
from lorabench.validate import load_suite

CTX = SimpleNamespace(device="cpu", autocast=lambda: torch.autocast("cpu", enabled=False))


def test_retrieval_accuracy_counts_rows_whose_nearest_second_half_is_their_own() -> None:
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])
    # Row 2's own second half points away; its nearest is row 0's: 2 of 3 found.
    second = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.0]])
    assert forgetting.retrieval_accuracy(first, second) == pytest.approx(2 / 3)


def test_change_is_positive_when_the_reference_got_worse() -> None:
    assert forgetting.change("causal-lm", base=7.0, after=9.5) == pytest.approx(2.5)  # perplexity rose
    assert forgetting.change("causal-lm", base=7.0, after=6.0) == pytest.approx(-1.0)
    assert forgetting.change("classification", base=0.8, after=0.5) == pytest.approx(0.3)  # retrieval fell
    with pytest.raises(DataError, match="causal-lm, classification"):
        forgetting.measure_name("seq2seq")


def test_split_halves_cuts_at_the_middle_word_and_skips_short_texts() -> None:
    assert forgetting.split_halves(["a b c d e", "too short"]) == [("a b", "c d e")]


class _Tok:
    """Whitespace tokenizer over a fixed word list (id 0 is padding)."""

    pad_token_id = 0
    eos_token_id = None

    def __init__(self, words: list[str]) -> None:
        self.ids = {w: i + 1 for i, w in enumerate(words)}

    def __call__(self, texts: list[str], **_: object) -> dict[str, list[list[int]]]:
        return {"input_ids": [[self.ids[w] for w in t.split()] for t in texts]}

    def decode(self, ids: list[int]) -> str:
        return " ".join(str(i) for i in ids)


class _OneHot(torch.nn.Module):
    """Hidden state of token t is the one-hot vector e_t; logits are uniform over ``vocab`` tokens."""

    def __init__(self, vocab: int, collapsed: bool = False) -> None:
        super().__init__()
        self.vocab, self.collapsed = vocab, collapsed

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False):
        states = torch.nn.functional.one_hot(input_ids, self.vocab).float()
        if self.collapsed:
            states = torch.ones_like(states)
        logits = torch.zeros(*input_ids.shape, self.vocab)
        return SimpleNamespace(logits=logits, hidden_states=(states,) if output_hidden_states else None)


def _reference(tmp_path: Path, texts: list[str]) -> forgetting.ForgettingOptions:
    path = tmp_path / "ref.txt"
    path.write_text("\n".join(texts) + "\n")
    data = DataSource(eval_file=str(path), train_file=str(path), format="text", text_rows="lines")
    return forgetting.ForgettingOptions(data=data, text_column="text", n_eval=None, data_seed=0)


def test_pair_retrieval_on_one_hot_states_finds_every_pair_and_a_collapsed_encoder_one(tmp_path: Path) -> None:
    words = ["red", "green", "blue"]
    opts = _reference(tmp_path, [f"{w} {w} {w} {w}" for w in words])
    tok, cfg = _Tok(words), EvalSettings(batch_size=2)
    score = forgetting.measure(_OneHot(4), tok, "classification", opts, "t", 16, cfg, CTX)
    assert score == pytest.approx(1.0)
    # All states equal: every first half ties with every second half, argmax takes row 0: 1 of 3.
    collapsed = forgetting.measure(_OneHot(4, collapsed=True), tok, "classification", opts, "t", 16, cfg, CTX)
    assert collapsed == pytest.approx(1 / 3)


def test_reference_perplexity_of_uniform_logits_is_the_vocabulary_size(tmp_path: Path) -> None:
    words = ["red", "green", "blue"]
    opts = _reference(tmp_path, ["red green blue red", "blue blue green"])
    ppl = forgetting.measure(_OneHot(4), _Tok(words), "causal-lm", opts, "t", 8, EvalSettings(batch_size=4), CTX)
    assert ppl == pytest.approx(4.0)


def test_pair_retrieval_needs_two_texts_of_four_words(tmp_path: Path) -> None:
    opts = _reference(tmp_path, ["red red red red", "blue"])
    with pytest.raises(DataError, match="fewer than 2 texts"):
        forgetting.measure(_OneHot(4), _Tok(["red", "blue"]), "classification", opts, "t", 8, EvalSettings(), CTX)


def test_the_base_score_is_computed_once_then_read_from_the_json_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LORABENCH_CACHE", str(tmp_path / "cache"))
    calls: list[int] = []

    def compute() -> float:
        calls.append(1)
        return 7.25

    assert forgetting.base_score("k1", "perplexity", compute, "ref") == (7.25, "miss")
    assert forgetting.base_score("k1", "perplexity", compute, "ref") == (7.25, "hit")
    assert len(calls) == 1
    entry = tmp_path / "cache" / "forgetting" / "k1.json"
    assert json.loads(entry.read_text())["base"] == 7.25  # JSON, never a pickle
    # A damaged entry, or one of another measure, is recomputed, never trusted.
    entry.write_text('{"version": 1, "measure": "perplexity", "base": "NaN"}')
    assert forgetting.base_score("k1", "perplexity", compute, "ref") == (7.25, "miss")
    assert forgetting.base_score("k1", "pair_retrieval", compute, "ref") == (7.25, "miss")
    assert len(calls) == 3
    assert sorted(p.name for p in (tmp_path / "cache" / "forgetting").iterdir()) == [".k1.lock", "k1.json"]


SUITE = """
name: forget
matrix:
  model: [builtin:tiny-gpt2]
  method: [full, lora]
  task: [lm]
tasks:
  lm:
    type: causal-lm
    data: {synthetic: facts}
    n_train: 64
    n_eval: 16
%s
"""


def test_a_suite_without_the_key_keeps_its_task_options_and_run_ids(write_suite) -> None:
    plain = expand(load_suite(write_suite(SUITE % "" + TINY_TRAIN, "plain")))
    ref = "    forgetting: {data: {synthetic: prose}, n_eval: 8}"
    with_ref = expand(load_suite(write_suite(SUITE % ref + TINY_TRAIN, "ref")))
    assert all("forgetting" not in s.to_dict()["task_options"] for s in plain)
    assert all(s.to_dict()["task_options"]["forgetting"]["data"]["synthetic"] == "prose" for s in with_ref)
    assert {s.run_id for s in plain}.isdisjoint({s.run_id for s in with_ref})


def test_an_unknown_reference_key_is_a_suite_error_with_its_name(write_suite) -> None:
    bad = "    forgetting: {data: {synthetic: prose}, n_evl: 8}"
    res = run_cli("validate", str(write_suite(SUITE % bad + TINY_TRAIN)))
    assert res.returncode == 2 and "n_evl" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_full_fine_tuning_forgets_prose_more_than_lora(write_suite, tmp_path: Path) -> None:
    """tiny-gpt2 is pretrained on `prose`; fine-tuned on `facts`, full FT loses more of it than LoRA."""
    ref = "    forgetting: {data: {synthetic: prose}, n_eval: 16}"
    suite = write_suite(SUITE % ref + TINY_TRAIN.replace("steps: 6", "steps: 12"))
    out = tmp_path / "out"
    res = run_cli("run", str(suite), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    recs = {r["spec"]["method"]: r for r in map(json.loads, map(Path.read_text, out.glob("runs/*/record.json")))}
    full, lora = recs["full"], recs["lora"]
    for rec in (full, lora):
        ref_info = rec["resolved"]["forgetting"]
        assert rec["metrics"]["forgetting_perplexity"] == pytest.approx(ref_info["after"] - ref_info["base"])
    assert full["resolved"]["forgetting"]["base"] == lora["resolved"]["forgetting"]["base"]
    assert {full["resolved"]["forgetting"]["base_cache"], lora["resolved"]["forgetting"]["base_cache"]} <= {
        "hit",
        "miss",
    }
    assert full["metrics"]["forgetting_perplexity"] > 0
    assert full["metrics"]["forgetting_perplexity"] > lora["metrics"]["forgetting_perplexity"]
    assert "forgetting_perplexity" in (out / "leaderboard.md").read_text()
