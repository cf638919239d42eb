"""``lorabench params``: exact published peft counts from configs alone, on the meta device.

Each configuration below is the checkpoint's own config.json (the fields that shape
parameters), written into a temporary directory. The expected numbers are what peft's
``print_trainable_parameters`` printed for that checkpoint, with the source named;
where no printout could be found the number is derived and that is said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lorabench.accounting.params import count
from lorabench.suite.schema import ModelDef, QuantSettings
from tests.conftest import run_cli

GPT2 = {
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_ctx": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
}
# Original T5: no tie_word_embeddings key, so lm_head is the shared embedding (tied).
T5_BASE = {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_heads": 12,
    "feed_forward_proj": "relu",
    "relative_attention_num_buckets": 32,
}
# T5 v1.1 / FLAN-T5: gated-GELU and an untied lm_head.
FLAN_T5_BASE = {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "num_heads": 12,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}
FLAN_T5_XXL = {
    **FLAN_T5_BASE,
    "d_model": 4096,
    "d_ff": 10240,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "num_heads": 64,
}
MT0_LARGE = {
    "architectures": ["MT5ForConditionalGeneration"],
    "model_type": "mt5",
    "vocab_size": 250112,
    "d_model": 1024,
    "d_kv": 64,
    "d_ff": 2816,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "num_heads": 16,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}
OPT_6_7B = {
    "architectures": ["OPTForCausalLM"],
    "model_type": "opt",
    "vocab_size": 50272,
    "hidden_size": 4096,
    "ffn_dim": 16384,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "max_position_embeddings": 2048,
    "word_embed_proj_dim": 4096,
    "do_layer_norm_before": True,
}
LLAMA_2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
FALCON_7B = {
    "architectures": ["FalconForCausalLM"],
    "model_type": "falcon",
    "vocab_size": 65024,
    "hidden_size": 4544,
    "num_hidden_layers": 32,
    "num_attention_heads": 71,
    "multi_query": True,
    "new_decoder_architecture": False,
    "parallel_attn": True,
    "bias": False,
    "alibi": False,
}
ROBERTA_BASE = {
    "architectures": ["RobertaForMaskedLM"],
    "model_type": "roberta",
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "pad_token_id": 1,
}

# (id, config, count() kwargs, trainable, total, source)
PUBLISHED = [
    (
        "mt0-large-lora-r8",
        MT0_LARGE,
        {"method": "lora", "rank": 8, "alpha": 32},
        2_359_296,
        1_231_940_608,
        "huggingface/peft README, 'Getting started' (bigscience/mt0-large, LoraConfig r=8, SEQ_2_SEQ_LM)",
    ),
    (
        "flan-t5-xxl-lora-r16-qv",
        FLAN_T5_XXL,
        {"method": "lora", "rank": 16, "alpha": 32, "target_modules": ["q", "v"]},
        18_874_368,
        11_154_206_720,
        "Philipp Schmid, 'Efficient Large Language Model training with LoRA and Hugging Face' "
        "(philschmid.de/fine-tune-flan-t5-peft): 0.169% (the '0.16%' users quote)",
    ),
    (
        "flan-t5-base-lora-r8",
        FLAN_T5_BASE,
        {"method": "lora", "rank": 8, "alpha": 32},
        884_736,
        248_462_592,
        "tanganke/peta examples/load_lora_model.py (google/flan-t5-base, r=8): untied lm_head",
    ),
    (
        "t5-base-lora-r8",
        T5_BASE,
        {"method": "lora", "rank": 8, "alpha": 16, "target_modules": ["q", "v"]},
        884_736,
        223_788_288,
        "a published WikiSQL write-up (google-t5/t5-base, LoRA r=8 on q,v): the original T5 ties lm_head",
    ),
    (
        "opt-6.7b-lora-r16-qv",
        OPT_6_7B,
        {"method": "lora", "rank": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"], "precision": "int8"},
        8_388_608,
        6_666_862_592,
        "huggingface/peft examples/int8_training/Finetune_opt_bnb_peft.ipynb (facebook/opt-6.7b in 8-bit)",
    ),
    (
        "llama-2-7b-lora-r8-qv",
        LLAMA_2_7B,
        {"method": "lora", "rank": 8, "target_modules": ["q_proj", "v_proj"]},
        4_194_304,
        6_742_609_920,
        "many LLaMA-7B training logs, e.g. LLaMA-Factory (llmtuner) 'trainable params: 4194304 || all params: "
        "6742609920 || trainable%: 0.0622'",
    ),
    (
        "gpt2-lora-r8",
        GPT2,
        {"method": "lora", "rank": 8},
        294_912,
        124_734_720,
        "tutorials printing peft's line for gpt2 + LoRA on c_attn: '294,912 || all params: 124,734,720 || 0.2364'",
    ),
    (
        "roberta-base-seq-cls-lora-r8",
        ROBERTA_BASE,
        {"method": "lora", "rank": 8, "task_type": "seq-cls", "num_labels": 2},
        887_042,
        125_534_212,
        "a quoted log line 'trainable params: 887,042 || all params: 125,534,212 || trainable%: 0.7066' "
        "(roberta-base, SEQ_CLS, r=8): 294,912 LoRA + 592,130 head; the head also counts in the total twice",
    ),
    (
        "falcon-7b-lora-r16",
        FALCON_7B,
        {"method": "lora", "rank": 16},
        4_718_592,
        6_926_439_296,
        "derived, no printout found: 32 x 16 x (4544 + 4672) on query_key_value; Falcon-7B has "
        "6,921,720,704 parameters",
    ),
]


def _write(tmp_path: Path, name: str, config: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("config", "kwargs", "trainable", "total", "source"),
    [pytest.param(*case[1:], id=case[0]) for case in PUBLISHED],
)
def test_published_counts(
    tmp_path: Path, config: dict[str, Any], kwargs: dict[str, Any], trainable: int, total: int, source: str
) -> None:
    result = count(str(_write(tmp_path, "m", config)), **kwargs)
    assert (result.trainable_params, result.total_params) == (trainable, total), source
    assert result.trainable_pct == pytest.approx(100 * trainable / total)


def test_follows_the_checkpoint_tie_word_embeddings(tmp_path: Path) -> None:
    """FLAN-T5-XXL tied would be 32128 x 4096 smaller: the count follows config.json, not transformers' default."""
    untied = count(str(_write(tmp_path, "untied", FLAN_T5_XXL)), "lora", rank=16, target_modules=["q", "v"])
    tied = count(
        str(_write(tmp_path, "tied", {**FLAN_T5_XXL, "tie_word_embeddings": True})),
        "lora",
        rank=16,
        target_modules=["q", "v"],
    )
    assert untied.total_params - tied.total_params == 32128 * 4096
    assert not untied.tie_word_embeddings and tied.tie_word_embeddings
    assert untied.notes and not tied.notes


def test_every_method_counts_on_meta_like_on_real_weights(tmp_path: Path) -> None:
    """Meta-device counts equal counts on a real (tiny) model for every method and head."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from lorabench.accounting.counting import count_parameters
    from lorabench.accounting.params import method_options
    from lorabench.methods import METHODS
    from lorabench.methods.base import MethodContext

    cfg = {"model_type": "gpt2", "vocab_size": 64, "n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 32}
    path = _write(tmp_path, "gpt2", cfg)
    for family, task_type, auto in (
        ("causal-lm", "causal-lm", AutoModelForCausalLM),
        ("classification", "seq-cls", AutoModelForSequenceClassification),
    ):
        for name in METHODS:
            cls = METHODS.get(name)
            if cls.invalid_reason("fp32", "gpt2"):
                continue  # LoHa/LoKr cannot wrap GPT-2's Conv1D
            meta = count(str(path), name, task_type=task_type)
            config = AutoConfig.for_model(**cfg)
            ctx = MethodContext(meta.rank, method_options(cls, None, None), family, "fp32", "gpt2", None)
            torch.manual_seed(0)
            real = cls().apply(auto.from_config(config), ctx)
            assert (meta.trainable_params, meta.total_params) == count_parameters(real), (name, family)


def test_nf4_counts_equal_a_loaded_nf4_model(tmp_path: Path) -> None:
    """peft's 4-bit convention: a real bitsandbytes nf4 model counts as its fp32 config does."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from lorabench.accounting.counting import count_parameters
    from lorabench.methods.base import MethodContext
    from lorabench.methods.lora import LoRA, LoraOptions
    from lorabench.models.builtin import build_tokenizer
    from lorabench.models.loading import load_model

    tok = build_tokenizer()
    config = AutoConfig.for_model(
        "llama",
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        tie_word_embeddings=False,
    )
    path = tmp_path / "llama"
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    quant = QuantSettings(compute_dtype="fp32", double_quant=True, prepare_kbit=True)
    model, _, _ = load_model(ModelDef(path=str(path)), "causal-lm", "nf4", quant, "cpu")
    assert any(p.__class__.__name__ == "Params4bit" for p in model.parameters())
    model = LoRA().apply(model, MethodContext(8, LoraOptions(), "causal-lm", "nf4", "llama", None))
    meta = count(str(path), "lora", rank=8, precision="nf4")
    assert (meta.trainable_params, meta.total_params) == count_parameters(model)


def test_seventy_billion_shape_counts_without_memory(tmp_path: Path) -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    }
    result = count(str(_write(tmp_path, "llama70b", config)), "lora", rank=8)
    # Llama-2-70B: 68,976,648,192 parameters; LoRA r=8 on q_proj (8192->8192) and v_proj (8192->1024).
    assert result.total_params == 68_976_648_192 + result.trainable_params
    assert result.trainable_params == 80 * 8 * ((8192 + 8192) + (8192 + 1024))


def test_cli_json_and_hub_error(tmp_path: Path) -> None:
    """The real entry point: --json on success; a hub id with no Hub access exits 2 with the reason."""
    path = _write(tmp_path, "flan", FLAN_T5_XXL)
    out = run_cli("params", str(path), "--method", "lora", "--rank", "16", "--target-modules", "q,v", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["trainable_params"], data["total_params"]) == (18_874_368, 11_154_206_720)
    assert round(data["trainable_pct"], 2) == 0.17
    hub = run_cli("params", "google/flan-t5-xxl", "--method", "lora")
    assert hub.returncode == 2 and "HF_HUB_OFFLINE" in hub.stderr and "Traceback" not in hub.stderr


def test_cli_text_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lorabench.cli import main

    path = str(_write(tmp_path, "flan", FLAN_T5_XXL))
    assert main(["params", path, "--method", "lora", "--rank", "16", "--target-modules", "q,v"]) == 0
    assert "trainable params: 18,874,368 || all params: 11,154,206,720 || trainable%: 0.1692" in capsys.readouterr().out
    path = str(_write(tmp_path, "t5", T5_BASE))
    for argv, message in [
        (["--method", "full", "--precision", "nf4"], "full at nf4"),
        (["--method", "ia3", "--rank", "4"], "has no rank"),
        (["--method", "ia3", "--alpha", "4"], "has no `alpha` option"),
        (["--method", "lora", "--task-type", "causal-lm"], "cannot be built as causal-lm"),
        (["--method", "lora", "--target-modules", "nope"], "lora cannot be applied"),
        (["--method", "bitfit"], "no bias parameters"),
    ]:
        assert main(["params", path, *argv]) == 2
        assert message in capsys.readouterr().err


LOADED_BNB = (
    "import sys\n"
    "from lorabench.cli import main\n"
    "sys.argv = ['lorabench', *sys.argv[1:]]\n"
    "rc = main()\n"
    "print('bitsandbytes loaded:', sys.modules.get('bitsandbytes') is not None)\n"
    "raise SystemExit(rc)\n"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "loaded"),
    [
        (["params", "builtin:tiny-gpt2", "--method", "lora", "--precision", "nf4"], False),
        (["estimate", "builtin:tiny-gpt2", "--method", "lora", "--precision", "nf4"], False),
        (["estimate", "builtin:tiny-gpt2", "--method", "lora", "--precision", "nf4", "--trace"], True),
    ],
    ids=["params", "estimate", "estimate-kbit-trace"],
)
def test_config_only_commands_import_bitsandbytes_only_for_a_kbit_trace(argv: list[str], loaded: bool) -> None:
    """bitsandbytes (1 s of imports) only where a command builds its layers; the answer is the same either way."""
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    if argv[0] == "estimate":
        argv = [*argv, "--batch-size", "1", "--seq-len", "32"]
    proc = subprocess.run(
        [sys.executable, "-c", LOADED_BNB, *argv], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert f"bitsandbytes loaded: {loaded}" in proc.stdout
    if loaded:
        assert "traced" in proc.stdout and "not traced" not in proc.stdout
    else:  # the same answer as from a process that imported bitsandbytes first
        with_bnb = subprocess.run(
            [sys.executable, "-c", LOADED_BNB.replace("import sys\n", "import sys, bitsandbytes\n"), *argv],
            cwd=REPO,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert with_bnb.stdout.replace("loaded: True", "loaded: False") == proc.stdout
