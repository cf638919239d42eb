"""Task metrics against independent reference computations, in-process on tiny random models.

Perplexity is checked against a straightforward per-window loop written as in the Hugging
Face perplexity guide; accuracy and macro-F1 against a direct count over predictions
recomputed one example at a time; ROUGE against ``rouge_score`` on the saved predictions.
"""

from __future__ import annotations

import contextlib
import math
import re
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lorabench.models import BUILTIN_MODELS
from lorabench.models.builtin import build_config, build_tokenizer
from lorabench.suite.schema import EvalSettings, GenerationSettings
from lorabench.tasks import TASK_TYPES
from lorabench.tasks.scoring import macro_f1
from tests.test_data import task_options

CTX = SimpleNamespace(device="cpu", autocast=contextlib.nullcontext)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


def random_model(name: str, auto: str, tokenizer: Any, **config: Any) -> Any:
    """A built-in architecture with seeded random weights (no pretraining needed)."""
    import transformers

    torch.manual_seed(0)
    cfg = build_config(BUILTIN_MODELS.get(name), tokenizer)
    for k, v in config.items():
        setattr(cfg, k, v)
    return getattr(transformers, auto).from_config(cfg).eval()


@pytest.fixture(scope="module")
def gpt2(tokenizer: Any) -> Any:
    return random_model("tiny-gpt2", "AutoModelForCausalLM", tokenizer)


def reference_nll(model: Any, ids: list[int], max_len: int, stride: int) -> tuple[float, int, int]:
    """The HF guide's loop, one window at a time, no batching or padding: (nll sum, tokens, correct)."""
    nll, count, correct, prev_end = 0.0, 0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_len, len(ids))
        window = ids[begin:end]
        new = end - prev_end  # only tokens no earlier window scored
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([window])).logits[0].double(), -1)
        for j in range(max(1, len(window) - new), len(window)):
            nll -= float(logp[j - 1, window[j]])
            correct += int(logp[j - 1].argmax()) == window[j]
            count += 1
        prev_end = end
        if end == len(ids):
            break
    return nll, count, correct


def lm_eval(task_yaml: str, tokenizer: Any, model: Any, max_len: int) -> tuple[Any, Any]:
    task = TASK_TYPES.get("causal-lm")("lm", task_options(task_yaml))
    data = task.prepare(tokenizer, max_len)
    return task, task.evaluate(model, tokenizer, data, EvalSettings(batch_size=3), CTX)


@pytest.mark.parametrize("stride", [None, 5])
def test_perplexity_equals_exp_mean_nll_of_an_independent_loop(tokenizer: Any, gpt2: Any, stride: int | None) -> None:
    max_len = 16
    opts = "{type: causal-lm, data: {synthetic: facts}, n_train: 20, n_eval: 3" + (
        f", stride: {stride}}}" if stride else "}"
    )
    task, result = lm_eval(opts, tokenizer, gpt2, max_len)
    # The eval token stream, rebuilt independently: every text, then EOS.
    texts = task._texts("eval", 3)
    ids = [
        t for text in texts for t in [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    ]
    nll, count, correct = reference_nll(gpt2, ids, max_len, stride or max_len)
    m = result.metrics
    assert result.tokens == count == sum(p["n_tokens"] for p in result.predictions)
    torch.testing.assert_close(m["eval_loss"], nll / count, rtol=1e-5, atol=0)
    torch.testing.assert_close(m["perplexity"], math.exp(nll / count), rtol=1e-5, atol=0)
    assert m["token_accuracy"] == correct / count
    if stride:
        assert count == len(ids) - 1  # every token but the first is scored exactly once


def test_stride_agrees_with_no_stride_when_the_window_covers_the_text(tokenizer: Any, gpt2: Any) -> None:
    base = "{type: causal-lm, data: {synthetic: facts}, n_train: 20, n_eval: 2"
    _, plain = lm_eval(base + "}", tokenizer, gpt2, 256)
    _, strided = lm_eval(base + ", stride: 7}", tokenizer, gpt2, 256)
    assert plain.tokens == strided.tokens > 20
    for k in ("perplexity", "eval_loss", "token_accuracy"):
        torch.testing.assert_close(strided.metrics[k], plain.metrics[k])


class BagOfWords(torch.nn.Module):
    """A non-transformers classifier: only ``forward(...) -> .loss, .logits`` is assumed."""

    def __init__(self, vocab: int, labels: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = torch.nn.EmbeddingBag(vocab, labels, mode="sum")

    def forward(self, input_ids: Any, attention_mask: Any, labels: Any = None) -> Any:
        logits = self.emb(input_ids, per_sample_weights=attention_mask.float())
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits)


@pytest.mark.parametrize("kind", ["tiny-bert", "bag-of-words"])
def test_accuracy_and_macro_f1_agree_with_a_direct_computation(tokenizer: Any, kind: str) -> None:
    task = TASK_TYPES.get("classification")(
        "s", task_options("{type: classification, data: {synthetic: sentiment}, n_train: 20, n_eval: 37}")
    )
    data = task.prepare(tokenizer, 32)
    if kind == "tiny-bert":
        model = random_model("tiny-bert", "AutoModelForSequenceClassification", tokenizer, num_labels=2)
    else:
        model = BagOfWords(len(tokenizer), 2)
    task.check_model(model)
    result = task.evaluate(model, tokenizer, data, EvalSettings(batch_size=8), CTX)
    # One example at a time, unpadded: padding must not change a prediction.
    with torch.no_grad():
        direct = [
            int(
                model(
                    input_ids=torch.tensor([r["input_ids"]]), attention_mask=torch.ones(1, len(r["input_ids"])).long()
                ).logits.argmax(-1)
            )
            for r in data.eval
        ]
    assert [p["prediction"] for p in result.predictions] == direct
    refs = [p["reference"] for p in result.predictions]
    assert refs == [r["label"] for r in data.eval]
    assert result.metrics["accuracy"] == sum(a == b for a, b in zip(refs, direct)) / len(refs)
    f1s = []
    for c in sorted(set(refs) | set(direct)):
        tp = sum(r == c and p == c for r, p in zip(refs, direct))
        precision = tp / max(1, sum(p == c for p in direct))
        recall = tp / max(1, sum(r == c for r in refs))
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    torch.testing.assert_close(result.metrics["macro_f1"], sum(f1s) / len(f1s))


def test_macro_f1_known_values() -> None:
    torch.testing.assert_close(macro_f1([0, 0, 1, 1], [0, 1, 1, 1]), (2 / 3 + 4 / 5) / 2)
    assert macro_f1([0, 1, 2], [0, 1, 1]) == pytest.approx((1 + 2 / 3 + 0) / 3)  # class 2 never predicted


class LeadSummariser:
    """A stub with ``generate``: seq2seq returns the first prompt tokens, decoder-only appends them."""

    def __init__(self, n: int, append: bool) -> None:
        self.n, self.append = n, append

    def generate(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            real = [t for t, m in zip(ids, mask) if m][1 : self.n + 1]  # skip <bos>
            rows.append((ids if self.append else [0]) + real)
        return torch.tensor(rows)


def sentences(text: str) -> str:
    return re.sub(r" ([.!?]) ", r" \1\n", text)  # the test's own sentence splitter


@pytest.mark.parametrize("family", ["seq2seq", "causal-lm"])
def test_rouge_equals_rouge_score_on_the_saved_predictions(tokenizer: Any, family: str) -> None:
    from rouge_score import rouge_scorer

    task = TASK_TYPES.get("summarization")(
        "d",
        task_options(
            "{type: summarization, data: {synthetic: dialogues}, prompt: '{input} <sep>', "
            f"architecture: {family}, n_train: 5, n_eval: 12}}"
        ),
    )
    assert task.resolve_family(lambda: False) == family
    data = task.prepare(tokenizer, 64)
    gen = GenerationSettings(max_new_tokens=20, num_beams=1)
    result = task.evaluate(
        LeadSummariser(20, family == "causal-lm"), tokenizer, data, EvalSettings(batch_size=5, generation=gen), CTX
    )
    assert result.info["generation"] == {"decoding": "greedy", "num_beams": 1, "max_new_tokens": 20, "do_sample": False}
    preds = result.predictions
    assert [p["reference"] for p in preds] == [r["target"] for r in data.eval]
    # The lead of the dialogue, and nothing of the prompt's padding or template.
    assert preds[0]["prediction"] == " ".join(data.eval[0]["input"].split()[:20])
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    expected = dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), 0.0)
    for p in preds:
        s = scorer.score(sentences(p["reference"]), sentences(p["prediction"]))
        for k in expected:
            expected[k] += 100 * s[k].fmeasure / len(preds)
    for k, v in expected.items():
        torch.testing.assert_close(result.metrics[k], v)
    assert 10 < result.metrics["rouge1"] < 90  # overlapping, so the comparison means something


def test_summarisation_training_rows(tokenizer: Any) -> None:
    from lorabench.tasks.summarization import encode_prompt

    opts = task_options(
        "{type: summarization, data: {synthetic: dialogues}, prompt: '{input} <sep>', n_train: 4, n_eval: 2}"
    )
    seq2seq = TASK_TYPES.get("summarization")("d", opts)
    seq2seq.family = "seq2seq"
    causal = TASK_TYPES.get("summarization")("d", opts)
    causal.family = "causal-lm"
    s_rows = seq2seq.prepare(tokenizer, 24).train
    c_rows = causal.prepare(tokenizer, 48).train
    eos, sep = tokenizer.eos_token_id, tokenizer.sep_token_id
    for s, c in zip(s_rows, c_rows):
        assert (
            s["labels"][-1] == eos and len(s["input_ids"]) <= 24 and s["input_ids"][-1] == sep
        )  # cut input, not template
        assert len(c["input_ids"]) == len(c["labels"]) <= 48
        n_prompt = c["labels"].count(-100)
        assert c["input_ids"][n_prompt - 1] == sep and c["labels"][n_prompt:] == c["input_ids"][n_prompt:]
        assert c["labels"][-1] == eos and c["labels"][n_prompt:-1] == s["labels"][:-1]
    ids = encode_prompt(tokenizer, "{input} <sep>", "alice : hi bob ! " * 30, 10)
    assert len(ids) == 10 and ids[0] == tokenizer.bos_token_id and ids[-1] == sep
