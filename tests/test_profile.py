"""Parameter counting against peft, the training loop's arithmetic, and the memory monitor."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from lorabench.accounting.counting import count_parameters
from lorabench.methods.prepare import upcast_trainable
from lorabench.run.pipeline import RunContext, prepare_base
from lorabench.run.profile import MemoryMonitor
from lorabench.run.train import lr_lambda, train
from lorabench.suite.schema import QuantSettings, TrainSettings
from lorabench.tasks.causal_lm import CausalLM

CFG = GPT2Config(
    n_layer=2,
    n_embd=32,
    n_head=4,
    vocab_size=64,
    n_positions=64,
    bos_token_id=0,
    eos_token_id=0,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(CFG).save_pretrained(path)
    return path


def _lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM"))


def test_counts_match_peft_for_lora_fp32(tiny_dir) -> None:
    model = _lora(AutoModelForCausalLM.from_pretrained(tiny_dir))
    assert count_parameters(model) == model.get_nb_trainable_parameters()
    # GPT-2 ties lm_head to wte: the tied tensor counts once.
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert count_parameters(base)[1] == sum(p.numel() for p in base.parameters())


@pytest.mark.parametrize("precision", ["int8", "nf4"])
def test_counts_match_peft_on_quantised_bases(tiny_dir, precision) -> None:
    from transformers import BitsAndBytesConfig

    q = (
        BitsAndBytesConfig(load_in_8bit=True)
        if precision == "int8"
        else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, quantization_config=q)
    spec = SimpleNamespace(
        precision=precision,
        quantization=QuantSettings(prepare_kbit=True),
        train=TrainSettings(steps=4, grad_checkpointing=False),
    )
    model = _lora(prepare_base(model, spec))
    trainable, total = count_parameters(model)
    assert (trainable, total) == model.get_nb_trainable_parameters()
    fp32 = _lora(AutoModelForCausalLM.from_pretrained(tiny_dir))
    # 4-bit weights are counted at their unpacked size, so totals equal the fp32 model's.
    assert total == count_parameters(fp32)[1]
    assert trainable == count_parameters(fp32)[0]


def test_upcast_keeps_trainables_in_fp32(tiny_dir) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    for n, p in model.named_parameters():
        p.requires_grad_("h.1." in n)
    upcast_trainable(model)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert all(d == torch.float32 for n, d in dtypes.items() if "h.1." in n)
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if "h.1." not in n)


def test_lr_schedules() -> None:
    lin = lr_lambda("linear", 2, 10)
    assert [lin(0), lin(1)] == [0.5, 1.0]
    assert lin(2) == 1.0 and lin(10) == 0.0
    cos = lr_lambda("cosine", 0, 10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0, abs=1e-12)
    assert lr_lambda("constant", 0, 10)(7) == 1.0


def _train_cfg(**kw):
    cfg = dict(
        steps=1,
        epochs=None,
        batch_size=8,
        grad_accum=1,
        lr=1e-2,
        weight_decay=0.0,
        optimizer="sgd",
        schedule="constant",
        lr_warmup_steps=0,
        max_seq_len=16,
        warmup_steps=0,
        grad_checkpointing=False,
        max_grad_norm=None,
        log_every=1,
    )
    cfg.update(kw)
    return TrainSettings(**cfg)


def test_gradient_accumulation_equals_the_large_batch(tiny_dir) -> None:
    """Packed blocks have equal token counts, so accum 2 × batch 4 is exactly batch 8."""
    torch.manual_seed(0)
    rows = [{"input_ids": ids, "labels": list(ids)} for ids in torch.randint(1, 64, (32, 16)).tolist()]
    task = CausalLM("t", {})
    tok = SimpleNamespace(pad_token_id=0)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    base.config.loss_type = "ForCausalLM"
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    ctx = RunContext(device="cpu", amp_dtype=None, seed=3)
    sa = train(a, task, rows, tok, _train_cfg(batch_size=8, grad_accum=1), ctx)
    sb = train(b, task, rows, tok, _train_cfg(batch_size=4, grad_accum=2), ctx)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, msg=n)
    assert sa.curve[0][1] == pytest.approx(sb.curve[0][1], rel=1e-5)
    assert sa.tokens == sb.tokens == 8 * 16 and sa.samples == sb.samples == 8


def _train_tiny(tiny_dir, **kw):
    """Train the tiny GPT-2 on 16 random rows of 16 tokens; ``kw``: train settings, then train()'s own."""
    rows = [{"input_ids": ids, "labels": list(ids)} for ids in torch.randint(1, 64, (16, 16)).tolist()]
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    extra = {k: kw.pop(k) for k in ("evaluate", "eval_every", "energy") if k in kw}
    return train(
        model,
        CausalLM("t", {}),
        rows,
        SimpleNamespace(pad_token_id=0),
        _train_cfg(**kw),
        RunContext("cpu", None, 0),
        **extra,
    )


def test_warmup_steps_are_not_counted(tiny_dir) -> None:
    stats = _train_tiny(tiny_dir, steps=5, warmup_steps=2, batch_size=4)
    assert stats.timed_steps == 3
    assert stats.tokens == 3 * 4 * 16 and stats.samples == 12
    assert len(stats.curve) == 5


def test_memory_monitor_sees_a_large_allocation() -> None:
    mon = MemoryMonitor("cpu", interval_s=0.005)
    try:
        with mon.track() as idle_phase:
            pass
        with mon.track() as busy_phase:
            block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
        idle, busy = idle_phase.memory.rss, busy_phase.memory.rss
        del block
    finally:
        mon.close()
    assert busy - idle > 50
    assert mon.notes and "cpu" in mon.notes[0]


def test_step_clock_counts_laps_and_skips_the_gaps_between_segments() -> None:
    from lorabench.run.profile import StepClock

    clock = StepClock("cpu")
    clock.start()
    clock.lap()
    clock.lap()
    clock.start()  # e.g. after a periodic evaluation: not a step
    clock.lap()
    times = clock.seconds()
    assert len(times) == 3 and all(t >= 0 for t in times)


class _FakeEvent:
    """A stand-in for torch.cuda.Event whose clock is a counter, to run the CUDA path on CPU."""

    now = 0.0
    syncs = 0

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing, "elapsed_time needs enable_timing=True"
        self.t: float | None = None

    def record(self) -> None:
        _FakeEvent.now += 1.0
        self.t = _FakeEvent.now

    def synchronize(self) -> None:
        _FakeEvent.syncs += 1

    def elapsed_time(self, other: _FakeEvent) -> float:  # milliseconds, as CUDA's
        assert self.t is not None and other.t is not None
        return (other.t - self.t) * 1000.0


def test_step_clock_on_cuda_records_events_and_syncs_once(monkeypatch) -> None:
    """The CUDA path, run on a CPU machine: events at each boundary, a single sync at the end."""
    from lorabench.run.profile import StepClock

    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: pytest.fail("StepClock must not sync per step"))
    _FakeEvent.now, _FakeEvent.syncs = 0.0, 0
    clock = StepClock("cuda")
    clock.start()  # t=1
    clock.lap()  # t=2
    clock.lap()  # t=3
    _FakeEvent.now += 10  # an evaluation in between
    clock.start()  # t=14
    clock.lap()  # t=15
    assert _FakeEvent.syncs == 0
    assert clock.seconds() == [1.0, 1.0, 1.0]
    assert _FakeEvent.syncs == 1


def test_periodic_evaluation_is_not_a_step(tiny_dir) -> None:
    stats = _train_tiny(tiny_dir, steps=6, warmup_steps=1, batch_size=4, evaluate=lambda: {"x": 1.0}, eval_every=2)
    assert len(stats.step_s) == stats.timed_steps == 5
    assert len(stats.eval_curve) == 3


def test_host_cpu_sees_another_process_and_this_one() -> None:
    """A busy loop in a child shows up as others' CPU share; one in this process as our own."""
    import subprocess
    import sys
    import time

    from lorabench.run.profile import HostCPU

    host = HostCPU()
    subprocess.run(
        [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"], check=True
    )
    others = host.finish()
    host = HostCPU()
    t = time.perf_counter()
    while time.perf_counter() - t < 1.0:
        pass
    ours = host.finish()
    cpus = others["cpus"]
    # One core busy out of `cpus` is a share of 1/cpus (less the child's start-up, plus any neighbours).
    assert others["other_cpu_share"] > 0.5 / cpus
    assert ours["own_cpu_share"] > 0.5 / cpus
    assert 0 <= ours["other_cpu_share"] <= 1 and others["loadavg_1m"] is not None


class _FakeMeter:
    """An energy counter that reads the given joules, one value per read (the first is the start)."""

    def __init__(self, readings: list[float]) -> None:
        self.readings = list(readings)
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = self.readings.pop(0)

    def joules(self) -> float:
        return self.readings.pop(0) - self.t0


def test_eval_points_carry_the_training_cost_so_far_evaluation_excluded(tiny_dir) -> None:
    """Time-to-target reads these: 4 rows x 16 tokens a step, warm-up steps counted; eval energy subtracted."""
    # Counter reads: start 100; eval at step 2: before 105, after 107; eval at step 5: before 112, after 115; end 115.
    meter = _FakeMeter([100, 105, 107, 112, 115, 115])
    stats = _train_tiny(
        tiny_dir,
        steps=6,
        warmup_steps=2,
        batch_size=4,
        evaluate=lambda: {"perplexity": 1.0},
        eval_every=3,
        energy=meter,
    )
    first, second = stats.eval_curve
    assert (first["step"], first["train_tokens"], first["train_j"]) == (2, 3 * 64, 5.0)
    assert (second["step"], second["train_tokens"], second["train_j"]) == (5, 6 * 64, 10.0)  # 12 J less 2 J of eval
    assert 0 < first["train_s"] < second["train_s"] <= stats.train_s + 1e-6
    assert stats.energy_j == pytest.approx(10.0)  # 15 J less the 5 J the two evaluations drew
    assert stats.tokens == 4 * 64  # throughput still counts only the timed steps
