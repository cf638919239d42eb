"""Pretraining objectives for built-in models: what data they see, how it is batched, which class.

* ``clm``: next-token prediction on grammar prose (decoder-only models).
* ``mlm``: BERT's masked-token and next-sentence prediction on a mixed corpus (encoders
  for classification; next-sentence prediction trains the pooler a classification head reads).
* ``span``: denoising for encoder-decoders: spans of the input are replaced by ``<mask>``
  and the decoder rewrites the whole text (BART-style text infilling with T5's sentinel
  idea reduced to one mask token, since the built-in vocabulary is closed).

The mixed corpus holds unlabelled text of every built-in domain (prose, review
sentences, dialogues and summaries as separate documents), as a web corpus would; no
label or dialogue→summary pairing is ever shown, so fine-tuning still has to learn it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorabench.data.batching import pad_batch
from lorabench.data.dialogues import dialogues
from lorabench.data.grammar import documents
from lorabench.data.sentiment import opinion_text

MLM_RATE = 0.15  # BERT's masking rate and 80/10/10 split
SPAN_RATE = 0.3  # share of tokens hidden by span corruption
SPAN_MEAN = 3.0


@dataclass(frozen=True)
class Objective:
    make_data: Callable[..., Any]
    sample: Callable[..., dict[str, Any]]
    model_class: Callable[[], Any] | None = None  # None: AutoModelForCausalLM


def mixed_corpus(n_docs: int, seed: int) -> list[tuple[str, str]]:
    """(domain, document) pairs from every built-in generator, deterministic in ``seed``."""
    n = n_docs // 3
    docs = [("prose", d) for d in documents("prose", n, seed)]
    docs += [("reviews", d) for d in opinion_text(n, seed + 1)]
    for d in dialogues(n - n // 2, seed + 2):
        docs += [("dialogues", d["dialogue"]), ("summaries", d["summary"])]
    return docs


def mixed_documents(n_docs: int, seed: int) -> list[str]:
    """The documents of :func:`mixed_corpus`, without their domain."""
    return [doc for _, doc in mixed_corpus(n_docs, seed)]


def _clm_data(spec: Any, tokenizer: Any, n_docs: int) -> Any:
    """Pack prose documents into fixed-length blocks for next-token pretraining."""
    import torch

    ids: list[int] = []
    for doc in documents("prose", n_docs, seed=spec.seed):
        ids.extend(tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id])
    n = len(ids) // spec.seq_len
    return torch.tensor(ids[: n * spec.seq_len]).view(n, spec.seq_len)


def _clm_sample(data: Any, batch_size: int, gen: Any, tokenizer: Any) -> dict[str, Any]:
    import torch

    idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
    x = data[idx]
    return {"input_ids": x, "labels": x}


def _mlm_data(spec: Any, tokenizer: Any, n_docs: int) -> Any:
    """Sentence pairs for next-sentence prediction: each document split at the sentence end
    nearest its middle, grouped by domain so that a random B comes from the same domain."""
    corpus = mixed_corpus(n_docs, spec.seed)
    encoded = tokenizer([doc for _, doc in corpus], add_special_tokens=False)["input_ids"]
    period = tokenizer.convert_tokens_to_ids(".")
    half = (spec.seq_len - 2) // 2
    by_domain: dict[str, list[tuple[list[int], list[int]]]] = {}
    for (domain, _), ids in zip(corpus, encoded):
        ends = [i + 1 for i, t in enumerate(ids[:-1]) if t == period]
        if len(ids) < 4:
            continue
        cut = min(ends, key=lambda e: abs(e - len(ids) / 2)) if ends else len(ids) // 2
        by_domain.setdefault(domain, []).append((ids[:cut][-half:], ids[cut:][:half]))
    return list(by_domain.values())


def _mlm_sample(data: Any, batch_size: int, gen: Any, tokenizer: Any) -> dict[str, Any]:
    """BERT's recipe: ``<bos> A <sep> B``, where B follows A half of the time, and 15% of the
    words are masked: 80% ``<mask>``, 10% a random word, 10% unchanged.

    Next-sentence prediction trains the pooled ``<bos>`` vector that classification heads
    read. Its random B comes from the same domain, so telling them apart takes content
    (a review's second half shares its opinion), not the domain's vocabulary.
    """
    import torch

    rows, is_random = [], []
    for _ in range(batch_size):
        pairs = data[int(torch.randint(0, len(data), (), generator=gen))]
        a, b = pairs[int(torch.randint(0, len(pairs), (), generator=gen))]
        swap = bool(torch.rand((), generator=gen) < 0.5)
        if swap:
            b = pairs[int(torch.randint(0, len(pairs), (), generator=gen))][1]
        ids = [tokenizer.bos_token_id, *a, tokenizer.sep_token_id, *b]
        rows.append({"input_ids": ids, "token_type_ids": [0] * (len(a) + 2) + [1] * len(b)})
        is_random.append(int(swap))  # transformers: 0 = B continues A, 1 = B is random
    batch = pad_batch(rows, tokenizer.pad_token_id)
    x = batch["input_ids"]
    special = torch.tensor(tokenizer.all_special_ids)
    chosen = (torch.rand(x.shape, generator=gen) < MLM_RATE) & ~torch.isin(x, special)
    batch["labels"] = torch.where(chosen, x, torch.full_like(x, -100))
    r = torch.rand(x.shape, generator=gen)
    x[chosen & (r < 0.8)] = tokenizer.mask_token_id
    noise = chosen & (r >= 0.8) & (r < 0.9)
    x[noise] = torch.randint(len(special), len(tokenizer), (int(noise.sum()),), generator=gen)
    batch["next_sentence_label"] = torch.tensor(is_random)
    return batch


def _span_data(spec: Any, tokenizer: Any, n_docs: int) -> Any:
    docs = tokenizer(mixed_documents(n_docs, spec.seed), add_special_tokens=False)["input_ids"]
    return [d[: spec.seq_len - 1] for d in docs if d]


def corrupt(ids: list[int], draws: list[float], lengths: list[int], mask_id: int) -> list[int]:
    """Replace random spans of ``ids`` by one ``mask_id`` each (``draws``/``lengths`` per position)."""
    out: list[int] = []
    i = 0
    start_p = SPAN_RATE / SPAN_MEAN
    while i < len(ids):
        if draws[i] < start_p:
            out.append(mask_id)
            i += lengths[i]
        else:
            out.append(ids[i])
            i += 1
    return out


def _span_sample(data: Any, batch_size: int, gen: Any, tokenizer: Any) -> dict[str, Any]:
    import torch

    rows = []
    for j in torch.randint(0, len(data), (batch_size,), generator=gen).tolist():
        ids = data[j]
        draws = torch.rand(len(ids), generator=gen).tolist()
        lengths = torch.randint(1, int(2 * SPAN_MEAN), (len(ids),), generator=gen).tolist()
        source = [tokenizer.bos_token_id, *corrupt(ids, draws, lengths, tokenizer.mask_token_id)]
        rows.append({"input_ids": source, "labels": [*ids, tokenizer.eos_token_id]})
    return pad_batch(rows, tokenizer.pad_token_id)


def _auto(name: str) -> Callable[[], Any]:
    def get() -> Any:
        import transformers

        return getattr(transformers, name)

    return get


OBJECTIVES: dict[str, Objective] = {
    "clm": Objective(_clm_data, _clm_sample),
    "mlm": Objective(_mlm_data, _mlm_sample, _auto("AutoModelForPreTraining")),
    "span": Objective(_span_data, _span_sample, _auto("AutoModelForSeq2SeqLM")),
}
