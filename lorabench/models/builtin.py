"""Build and pretrain the built-in tiny models, deterministically and offline.

Each model directory is a normal Hugging Face directory (config, safetensors,
tokenizer) so it loads through the same ``from_pretrained`` path as a hub model.
The directory name carries a hash of everything that shapes the weights; a file
lock keeps concurrent runs from pretraining the same model twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from lorabench.data.lexicon import vocabulary
from lorabench.models import BUILTIN_MODELS, BuiltinModel
from lorabench.models.objectives import OBJECTIVES
from lorabench.models.pretrain_key import keyed_bytes
from lorabench.paths import cache_root

PRETRAIN_VERSION = 2  # bump when the pretraining recipe changes
N_DOCS = 3000


# Source files whose code shapes a built-in model's weights: the pretraining loop, the
# objectives and the text generators they draw from. Their bytes are part of the cache
# key (as the tokenised-data cache hashes its code), so an edit to any of them builds a
# new model instead of silently reusing one pretrained by the old code.
PRETRAIN_SOURCES = (
    "models/builtin.py",
    "models/objectives.py",
    "data/grammar.py",
    "data/lexicon.py",
    "data/sentiment.py",
    "data/dialogues.py",
)


def _pretrain_code() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in PRETRAIN_SOURCES:
        h.update(rel.encode() + b"\0" + keyed_bytes(rel, (root / rel).read_bytes()))
    return h.hexdigest()


def content_hash(spec: BuiltinModel) -> str:
    blob = json.dumps(
        {
            "spec": dataclasses.asdict(spec),
            "vocab": vocabulary(),
            "recipe": PRETRAIN_VERSION,
            "docs": N_DOCS,
            "code": _pretrain_code(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_dir(name: str) -> Path:
    spec = BUILTIN_MODELS.get(name)
    return cache_root() / "models" / f"{name}-{content_hash(spec)}"


def build_tokenizer() -> Any:
    """A word-level tokenizer over the closed built-in vocabulary.

    Text is lower-cased and punctuation is split off, so real text (reviews, dialogues)
    maps onto the vocabulary where it can; the rest is ``<unk>``. Like BERT's, encodings
    start with ``<bos>`` (the classification token) unless ``add_special_tokens=False``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A",
        pair="<bos> $A <sep> $B",
        special_tokens=[("<bos>", vocab["<bos>"]), ("<sep>", vocab["<sep>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        sep_token="<sep>",
        mask_token="<mask>",
        cls_token="<bos>",
        model_max_length=256,
    )


def build_config(spec: BuiltinModel, tokenizer: Any) -> Any:
    from transformers import AutoConfig

    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if spec.model_type == "t5":
        ids["decoder_start_token_id"] = tokenizer.pad_token_id
    return AutoConfig.for_model(spec.model_type, **ids, **spec.config)


def ensure_builtin(name: str, progress: bool = False) -> Path:
    """Return the directory of built-in model ``name``, pretraining it on first use."""
    target = model_dir(name)
    if BUILTIN_MODELS.get(name).loader is not None:
        # Not a transformers model: its loader builds it from a seed at load time
        # (milliseconds), so there is nothing to pretrain; the directory stays empty.
        target.mkdir(parents=True, exist_ok=True)
        return target
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        info = pretrain(BUILTIN_MODELS.get(name), tmp, progress=progress)
        info["pretrain_s"] = round(time.perf_counter() - t0, 3)
        (tmp / "lorabench_pretrain.json").write_text(json.dumps(info, indent=2))
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def pretrain(spec: BuiltinModel, out: Path, progress: bool = False) -> dict[str, Any]:
    """Pretrain ``spec`` from scratch and save it to ``out``; returns a summary for the record."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(spec.seed)
    tokenizer = build_tokenizer()
    config = build_config(spec, tokenizer)
    objective = OBJECTIVES[spec.objective]
    model = (
        objective.model_class().from_config(config)
        if objective.model_class
        else AutoModelForCausalLM.from_config(config)
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / spec.pretrain_steps))
    )
    data = objective.make_data(spec, tokenizer, N_DOCS)
    gen = torch.Generator().manual_seed(spec.seed)
    losses = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=spec.pretrain_steps, desc=f"pretraining builtin:{spec.name}", leave=False)
    for _step in range(spec.pretrain_steps):
        batch = objective.sample(data, spec.batch_size, gen, tokenizer)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return {
        "name": spec.name,
        "objective": spec.objective,
        "steps": spec.pretrain_steps,
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "params": sum(p.numel() for p in model.parameters()),
        "content_hash": content_hash(spec),
    }
