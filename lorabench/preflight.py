"""Preflight: what a valid suite needs from this machine, checked before any run starts.

- **Local paths.** Data files (``file``, ``train_file``, ``eval_file``, ``val_file``) must exist. A
  relative path is resolved against the working directory lorabench runs in (as every
  path on its command line is, and as the runs themselves open it); ``~`` and ``$VARS``
  are expanded, and ``..`` is allowed and resolved like any other path component. Error
  messages show the path as written and as resolved.
- **Position limits.** A point whose longest sequence (``max_seq_len``, plus
  ``max_new_tokens`` when a decoder-only model generates, plus the virtual tokens of
  prompt or prefix tuning) exceeds the model's ``max_position_embeddings``/``n_positions``
  would train and then crash with an ``IndexError``; it is refused here instead. Known
  from built-in specs, local ``config.json`` and configs in the HF cache; T5-style models
  (relative positions) have no limit.
- **Hub models offline.** A hub id whose files are not in the local HF cache, while
  ``HF_HUB_OFFLINE`` is set or the Hub's endpoint does not answer, cannot load: it is found
  once per model, here, instead of once per run after a minute of retries.

- **GPU memory** (only when asked: ``execution.gpu_memory`` or ``validate --gpu-memory``).
  Each point's training step is traced on fake tensors as a CUDA run and checked against
  the budget by ``lorabench fit``'s rule; the trace runs in a child process
  (``python -m lorabench.preflight``) that sees no GPU.

Nothing here imports torch or transformers (the GPU memory check does, in its child
process); huggingface_hub only when a hub id is used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from lorabench import quiet
from lorabench.accounting.estimate import CUDA_CONTEXT_BYTES
from lorabench.accounting.fit import FRAGMENTATION, budget_bytes, fits
from lorabench.errors import Issue, UsageError
from lorabench.models.ref import ModelKind, ModelRef
from lorabench.spec import RunSpec
from lorabench.suite.schema import Suite
from lorabench.suite.yamlnodes import LDict
from lorabench.vocab import MiB

DATA_PATH_KEYS = ("file", "train_file", "eval_file", "val_file")
FILE_FORMATS = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".raw")
# Models whose positions are relative (a bias per distance bucket), not a fixed table.
RELATIVE_POSITION_TYPES = ("t5", "mt5", "umt5", "longt5")
PROBE_TIMEOUT_S = 1.0  # one TCP connect to the Hub's endpoint, once per suite


@dataclass
class Found:
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def preflight(suite: Suite, specs: list[RunSpec], *, env_required: bool = True) -> Found:
    """Check ``specs`` of ``suite`` against this machine: files, position limits, hub models."""
    found = Found()
    _check_data_paths(suite, specs, found, env_required)
    configs = _model_configs(suite, specs, found)
    _check_lengths(suite, specs, configs, found)
    return found


# --- data files -------------------------------------------------------------------


def _data_line(suite: Suite, task: str, key: str) -> int | None:
    raw = suite.tasks.get(task)
    if isinstance(raw, LDict):
        data = raw.get("data")
        if isinstance(data, LDict):
            return data.key_lines.get(key, data.line)
        return raw.key_lines.get("data", raw.line)
    return suite.lines.get("tasks")


def resolve_data_path(path: str) -> tuple[str | None, str | None]:
    """(absolute path, None), or (None, the unset variable) for a path that uses one."""
    expanded = os.path.expanduser(os.path.expandvars(path))
    if "$" in expanded:
        start = expanded.index("$")
        name = expanded[start:].split("/")[0].strip("${}")
        return None, name
    return os.path.abspath(expanded), None


def _check_data_paths(suite: Suite, specs: list[RunSpec], found: Found, env_required: bool) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.task in seen:
            continue
        seen.add(spec.task)
        source = spec.task_options.data
        for key in DATA_PATH_KEYS:
            written = getattr(source, key)  # the DataSource fields that name a file
            if not written:
                continue
            line = _data_line(suite, spec.task, key)
            where = f"tasks.{spec.task}.data.{key}"
            resolved, unset = resolve_data_path(written)
            if resolved is None:
                message = f"{where}: {written!r} uses ${unset}, which is not set"
                if env_required:
                    found.issues.append(Issue(suite.file, line, f"{message}; set it to run this suite"))
                else:
                    found.notes.append(f"{suite.file}:{line}: {message}: the file is not checked")
                continue
            shown = written if resolved == written else f"{written!r} (resolved to {resolved})"
            if os.path.isdir(resolved):
                found.issues.append(Issue(suite.file, line, f"{where}: {shown} is a directory, expected a file"))
            elif not os.path.isfile(resolved):
                cwd = "" if os.path.isabs(os.path.expanduser(written)) else f", relative to {os.getcwd()}"
                found.issues.append(Issue(suite.file, line, f"{where}: data file not found: {shown}{cwd}"))
            elif source.format == "auto" and os.path.splitext(resolved)[1].lower() not in FILE_FORMATS:
                found.issues.append(
                    Issue(
                        suite.file,
                        line,
                        f"{where}: cannot tell the format of {written!r} from its extension; set `format` "
                        f"(csv, tsv, json, jsonl, text)",
                    )
                )


# --- model configs and hub availability --------------------------------------------


def _model_configs(suite: Suite, specs: list[RunSpec], found: Found) -> dict[str, dict[str, Any] | None]:
    """config.json of each model where it is known without downloading (None: unknown)."""
    from lorabench.models import BUILTIN_MODELS

    configs: dict[str, dict[str, Any] | None] = {}
    hub: dict[str, RunSpec] = {}
    for spec in specs:
        path = spec.model.path
        if path in configs or path in hub:
            continue
        ref = ModelRef.parse(path)
        if ref.kind is ModelKind.BUILTIN:
            b = BUILTIN_MODELS.get(ref.name)
            configs[path] = {"model_type": b.model_type, **b.config}
        elif ref.kind is not ModelKind.HUB:
            try:
                known = ref.known_dir()
            except UsageError as exc:  # an unknown config:/packaged: name, or a package not installed
                found.issues.append(Issue(suite.file, _model_line(suite, spec), str(exc)))
                continue
            configs[path] = _read_json(os.path.join(str(known), "config.json"))
            if ref.kind is ModelKind.LOCAL and os.path.isdir(known) and not _has_tokenizer_files(str(known)):
                found.issues.append(
                    Issue(
                        suite.file,
                        _model_line(suite, spec),
                        f"model {path!r} has no tokenizer files (tokenizer.json, tokenizer_config.json, "
                        "vocab.json/merges.txt, vocab.txt, a sentencepiece *.model): transformers would build an "
                        "empty tokenizer and every text would be zero tokens. Copy them from the model it was "
                        "saved from.",
                    )
                )
        else:
            hub[path] = spec
    if hub:
        configs.update(_hub_configs(suite, hub, found))
    return configs


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "merges.txt")


def _has_tokenizer_files(directory: str) -> bool:
    """Whether a local model directory has anything a tokenizer loads from (the run checks it works)."""
    names = set(os.listdir(directory))
    return bool(names & set(TOKENIZER_FILES)) or any(n.endswith((".model", ".tiktoken")) for n in names)


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set to a true value (huggingface_hub's own parsing)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_unreachable() -> str | None:
    """Why the Hub endpoint cannot be reached (one TCP connect, :data:`PROBE_TIMEOUT_S`), or None.

    Behind an HTTP(S) proxy a direct connect says nothing, so the Hub is assumed reachable.
    """
    from huggingface_hub import constants

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"{constants.ENDPOINT} did not answer ({type(exc).__name__}: {exc})"
    return None


def _hub_configs(suite: Suite, hub: dict[str, RunSpec], found: Found) -> dict[str, dict[str, Any] | None]:
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    out: dict[str, dict[str, Any] | None] = {}
    missing: list[str] = []
    for path, spec in hub.items():
        revision = spec.model.revision
        try:
            cached = try_to_load_from_cache(path, "config.json", revision=revision)
        except HFValidationError:
            line = _model_line(suite, spec)
            found.issues.append(
                Issue(suite.file, line, f"model {path!r}: not a local directory, and not a valid hub id")
            )
            continue
        if isinstance(cached, str):
            out[path] = _read_json(cached)
            if spec.model.weights != "random" and not _weights_cached(path, revision):
                missing.append(path)  # the config alone does not load a pretrained model
        else:
            out[path] = None
            missing.append(path)
    if not missing:
        return out
    if hub_offline():
        why = "HF_HUB_OFFLINE is set"
    else:
        reason = hub_unreachable()
        if reason is None:
            return out  # the runs will download them
        why = f"the Hugging Face Hub could not be reached: {reason}"
    for path in missing:
        what = "its weights are" if out.get(path) is not None else "it is"
        found.unavailable[path] = (
            f"cannot load model {path!r}: it is not a local directory, {why}, and {what} not in the HF cache "
            f"({constants.HF_HUB_CACHE}). Download it where the Hub is reachable (the cache is reused), or point "
            "the suite at a local directory with config.json."
        )
    return out


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _weights_cached(path: str, revision: str | None) -> bool:
    """Whether the HF cache holds the model's weights (one file, or the index of a sharded checkpoint)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(path, f, revision=revision), str) for f in WEIGHT_FILES)


def _model_line(suite: Suite, spec: RunSpec) -> int | None:
    for block, line in suite.blocks:
        if spec.model.name in block.model or spec.model.path in block.model:
            return line
    return suite.lines.get("models") or suite.lines.get("matrix")


# --- position limits -----------------------------------------------------------------


def position_limit(config: dict[str, Any] | None) -> tuple[int, str] | None:
    """(positions, the config key) of an absolute-position model; None when unknown or unlimited."""
    if not config or config.get("model_type") in RELATIVE_POSITION_TYPES or "relative_attention_num_buckets" in config:
        return None
    for key in ("max_position_embeddings", "n_positions"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None


def _decoder_only(config: dict[str, Any], task_options: Any) -> bool:
    arch = task_options.architecture  # summarization's option (the only caller's task)
    if arch != "auto":
        return arch == "causal-lm"
    return not (config.get("is_encoder_decoder") or config.get("model_type") in RELATIVE_POSITION_TYPES)


def needed_positions(spec: RunSpec, config: dict[str, Any]) -> list[tuple[str, int]]:
    """The parts of the longest sequence ``spec`` feeds the model, as (what, tokens)."""
    parts = [("train.max_seq_len", spec.train.max_seq_len)]
    if spec.task_options.type == "summarization" and _decoder_only(config, spec.task_options):
        parts.append(("eval.generation.max_new_tokens", spec.eval.generation.max_new_tokens))
    virtual = spec.method_cls.extra_positions(spec.method_options)
    if virtual > 0:
        parts.append((f"methods.{spec.method}.num_virtual_tokens", virtual))
    return parts


def positions_error(spec: RunSpec, config: dict[str, Any] | None) -> str | None:
    """Why ``spec`` needs more positions than ``config`` has (None when it fits or there is no limit).

    Validation calls it with configs known without downloading; a run calls it again once
    its model is loaded, so a hub model that was not cached at validate time fails before
    training rather than in ``generate``.
    """
    limit = position_limit(config)
    if limit is None or config is None:
        return None
    parts = needed_positions(spec, config)
    total = sum(n for _, n in parts)
    if total <= limit[0]:
        return None
    sums = " + ".join(f"{what} {n}" for what, n in parts)
    return (
        f"{spec.method} on {spec.model.name} for task {spec.task!r}: {sums} = {total} tokens, more than "
        f"the model's {limit[0]} positions ({limit[1]} in its config); lower {' or '.join(w for w, _ in parts)}"
    )


def _check_lengths(suite: Suite, specs: list[RunSpec], configs: dict[str, dict[str, Any] | None], found: Found) -> None:
    reported: set[tuple[str, str, str, int | None]] = set()
    for spec in specs:
        message = positions_error(spec, configs.get(spec.model.path))
        if message is None:
            continue
        line = _point_line(suite, spec)
        key = (spec.model.path, spec.task, spec.method, line)
        if key not in reported:
            reported.add(key)
            found.issues.append(Issue(suite.file, line, message))


def _point_line(suite: Suite, spec: RunSpec) -> int | None:
    name = spec.model.name
    for block, line in suite.blocks:
        models = {m.split("/")[-1].removeprefix("builtin:") for m in block.model} | set(block.model)
        if name in models and spec.method in block.method and spec.task in block.task:
            return line
    return suite.lines.get("train")


# -- GPU memory: which points fit execution.gpu_memory (or validate --gpu-memory) ------------
@dataclass
class FitVerdict:
    """One point against the budget: ``fits`` is None where no prediction could be made."""

    run_id: str
    label: str
    peak_bytes: int | None
    method: str | None  # "trace" | "analytic"
    fits: bool | None
    notes: list[str] = field(default_factory=list)


def _family(spec: RunSpec) -> str:
    from lorabench.models.loading import is_encoder_decoder  # torch
    from lorabench.tasks import TASK_TYPES  # torch

    task = TASK_TYPES.get(spec.task_options.type)(spec.task, spec.task_options)
    return task.resolve_family(lambda: is_encoder_decoder(spec.model))


def fit_verdicts(spec_dicts: list[dict[str, Any]], gpu_memory: str | None = None) -> list[dict[str, Any]]:
    """Each spec's traced CUDA peak against ``gpu_memory`` or its own ``execution.gpu_memory``.

    Seeds share one trace. ``compute_dtype: auto`` is planned as bf16, what a run
    resolves it to on any GPU with bf16 (Ampere and later). Runs in :func:`plan_fits`'s
    child process: the trace imports torch, transformers and bitsandbytes.
    """
    from lorabench.accounting.predict import Prediction, predict_spec  # torch

    memo: dict[str, Any] = {}
    out = []
    for d in spec_dicts:
        spec = RunSpec.from_dict(d)
        key = json.dumps({k: v for k, v in d.items() if k not in ("seed", "suite")}, sort_keys=True, default=str)
        pred = memo.get(key)
        if pred is None:
            cd = spec.quantization.compute_dtype
            try:
                family = _family(spec)
            except Exception as exc:  # a model whose config cannot be read here: no verdict, and why
                pred = Prediction(None, None, 0.0, [f"no memory prediction: {type(exc).__name__}: {exc}"])
            else:
                pred = predict_spec(spec, family, "cuda", "bf16" if cd == "auto" else cd)
            memo[key] = pred
        budget = budget_bytes(gpu_memory or spec.execution.gpu_memory or "0")
        fit_ok = None if pred.peak_bytes is None else fits(pred.peak_bytes, budget)
        verdict = FitVerdict(spec.run_id, spec.label, pred.peak_bytes, pred.method, fit_ok, list(pred.notes))
        out.append(dataclasses.asdict(verdict))
    return out


def plan_fits(specs: list[RunSpec], gpu_memory: str | None = None, timeout_s: float = 3600.0) -> list[FitVerdict]:
    """:func:`fit_verdicts` in a child process that cannot see a GPU.

    The trace imports bitsandbytes, which creates a CUDA context at import on a GPU
    machine: in the driver that context would hold device memory for the whole suite
    (and ``validate`` would no longer be torch-free). The child is a plain interpreter
    with ``CUDA_VISIBLE_DEVICES`` empty; fake tensors need no device.
    """
    payload = json.dumps({"specs": [s.to_dict() for s in specs], "gpu_memory": gpu_memory}, default=str)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "lorabench.preflight"],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        raise UsageError(f"the memory check before the runs failed: {tail}")
    return [FitVerdict(**v) for v in json.loads(proc.stdout)]


def oom_message(v: FitVerdict, gpu_memory: str) -> str:
    """Why a point is predicted not to fit, with the figures behind the verdict."""
    peak = v.peak_bytes or 0
    need = peak * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES
    return (
        f"predicted to need {need / 2**30:.1f} GiB ({v.method}: {peak / 2**30:.1f} GiB allocated, "
        f"+{FRAGMENTATION:.0%} fragmentation, +{CUDA_CONTEXT_BYTES // MiB} MiB CUDA context) "
        f"> {budget_bytes(gpu_memory) / 2**30:.1f} GiB (gpu_memory {gpu_memory})"
    )


def main() -> None:
    """``python -m lorabench.preflight``: specs and a budget (JSON) on stdin, verdicts (JSON) on stdout."""
    quiet.install()
    request = json.loads(sys.stdin.read())
    out, sys.stdout = sys.stdout, sys.stderr  # a library's print must not corrupt the answer
    try:
        verdicts = fit_verdicts(request["specs"], request["gpu_memory"])
    finally:
        sys.stdout = out
    json.dump(verdicts, out)


if __name__ == "__main__":
    main()
