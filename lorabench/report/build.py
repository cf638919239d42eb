"""Write every output file of a results directory from its records alone.

runs.csv (every field, one row per run), leaderboard.{md,csv} (one table per task),
plots/*.png, report.md and report.html (one self-contained interactive page, see
lorabench/report/page.py); with a baseline, the comparison view too.

Every output is first written to a staging directory inside the results directory and
then renamed into place with SIGTERM/SIGINT held, so an interrupted or failed report
(a full disk, a kill) leaves the previous complete set, never a mix of old and new.
Plots are listed in ``plots/.lorabench-plots.json``; only plots listed there are ever
deleted (a PNG of yours in ``plots/`` is left alone).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lorabench import atomic
from lorabench.errors import UsageError
from lorabench.record_data import Record
from lorabench.report.compare import compare_sets, render
from lorabench.report.escape import csv_safe_frame, md_text
from lorabench.report.leaderboard import leaderboard, runs_frame
from lorabench.report.page import compare_rows as page_compare_rows
from lorabench.report.page import page_data, render_page
from lorabench.report.plots import Plot, make_plots
from lorabench.report.results import load_result_set, run_from_record
from lorabench.report.select import load_select
from lorabench.report.target import load_target, target_notes, with_time_to_target

#: lorabench's own plots in ``plots/``: the only PNGs a later report may delete.
PLOT_MANIFEST = ".lorabench-plots.json"
#: The top-level files a report writes (compare.md only with a baseline).
REPORT_FILES = ("runs.csv", "leaderboard.csv", "leaderboard.md", "compare.md", "report.md", "report.html")

ENV_KEYS = ("device_name", "python", "torch", "transformers", "peft", "bitsandbytes", "git_sha", "git_dirty")


def _env_summary(records: list[Record]) -> list[str]:
    """One line per distinct environment: device, library versions, git sha."""
    envs = {json.dumps({k: r.env.get(k) for k in ENV_KEYS}, sort_keys=True, default=str) for r in records if r.env}
    lines = []
    for e in sorted(envs):
        d = json.loads(e)
        sha = (d.get("git_sha") or "?")[:10] + (" (dirty)" if d.get("git_dirty") else "")
        lines.append(
            f"device: {d.get('device_name')}; python {d.get('python')}, torch {d.get('torch')}, "
            f"transformers {d.get('transformers')}, peft {d.get('peft')}, bitsandbytes {d.get('bitsandbytes')}; "
            f"lorabench git {sha}"
        )
    return lines


def _read_examples(path: Path, k: int) -> list[dict[str, Any]]:
    """The first ``k`` readable rows of a predictions.jsonl; a corrupt line or file is skipped, not fatal.

    Predictions are examples for the eye; the metrics are in the record.
    """
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in itertools.islice(fh, 100):
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
                if len(rows) >= k:
                    break
    except OSError:
        return []
    return rows


def _examples(out_dir: Path, records: list[Record], k: int = 3) -> list[tuple[str, list[dict[str, Any]]]]:
    """The first ``k`` predictions of every summarisation run (the readable ones) and of up to
    4 runs per other task: a list cut at the first N runs alphabetically dropped whole tasks."""
    out = []
    per_task: dict[str, int] = {}
    for rec in sorted(records, key=lambda r: (r.spec["task"], r.label)):
        task = rec.spec["task"]
        summarise = (rec.spec.get("task_options") or {}).get("type") == "summarization"
        if rec.status != "success" or (not summarise and per_task.get(task, 0) >= 4):
            continue
        path = out_dir / "runs" / str(rec.run_id) / "predictions.jsonl"
        if path.is_symlink() or not path.is_file():
            continue
        rows = _read_examples(path, k)
        if rows:
            out.append((str(rec.label), rows))
            per_task[task] = per_task.get(task, 0) + 1
    return out


def _md_code(value: Any, limit: int = 160) -> str:
    """One line of inline code: newlines and backticks would break the Markdown around it."""
    return " ".join(str(value).split()).replace("`", "'")[:limit]


def build_report(
    out_dir: Path,
    records: list[Record],
    run_ids: list[str] | set[str] | None = None,
    baseline: Path | None = None,
    raw_csv: bool = False,
) -> dict[str, Path]:
    """runs.csv, leaderboard.{csv,md}, plots/*.png, report.md and report.html, all or none.

    ``run_ids`` (a plan's ids) restricts every output to those runs; other records in
    the directory are listed under "not in this suite". ``baseline`` (a results
    directory or runs.csv) adds the comparison view. ``raw_csv`` writes CSV text cells
    as they are, without the formula-injection guard (``lorabench.report.escape``).
    The caller holds the directory's lock.
    """
    out_dir = Path(out_dir)
    for old in out_dir.glob(".report-*.tmp"):  # left by a killed report; we hold the lock, none is live
        if re.fullmatch(r"\.report-\d+\.tmp", old.name) and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    stage = atomic.ensure_dir(out_dir, out_dir / f".report-{os.getpid()}.tmp")
    try:
        plots = _build(stage, out_dir, records, run_ids, baseline, raw_csv)
        _commit(stage, out_dir, plots)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report in {out_dir}: {exc.strerror or exc}; the previous one is kept"
        ) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"runs": out_dir / "runs.csv", "leaderboard": out_dir / "leaderboard.md", "report": out_dir / "report.html"}


def _commit(stage: Path, out_dir: Path, plots: list[Plot]) -> None:
    """Move the staged outputs into place: every check first, then the renames with signals held."""
    plots_dir = out_dir / "plots"
    files = [out_dir / name for name in REPORT_FILES if (stage / name).exists()]
    gone = [out_dir / name for name in REPORT_FILES if not (stage / name).exists()]
    new_plots = [plots_dir / p.path.name for p in plots]
    for path in [plots_dir / PLOT_MANIFEST, *files, *gone, *new_plots]:
        atomic.check_no_links(out_dir, path)
    for path in [stage / f.name for f in files] + [p.path for p in plots]:
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())  # on disk before the rename makes it the current version
    old_plots = _manifest(plots_dir)
    names = [p.name for p in new_plots]
    with atomic.signals_held():
        if plots:
            atomic.ensure_dir(out_dir, plots_dir)
            for p in plots:
                os.replace(p.path, plots_dir / p.path.name)
        if plots or old_plots:
            atomic.write_text(plots_dir / PLOT_MANIFEST, json.dumps(names, indent=1) + "\n", out_dir)
        for f in files:
            os.replace(stage / f.name, f)
        for f in gone:  # a rebuild without a baseline must not leave the previous comparison beside it
            f.unlink(missing_ok=True)
        for name in old_plots:
            old = plots_dir / name
            if name not in names and old.is_file() and not old.is_symlink():
                old.unlink()  # a plot of ours that the data no longer supports must not linger


def _manifest(plots_dir: Path) -> list[str]:
    """Names of the plots an earlier report wrote (plain file names only; nothing else is ever deleted)."""
    path = plots_dir / PLOT_MANIFEST
    if path.is_symlink() or not path.is_file():
        return []
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n.endswith(".png") and Path(n).name == n and n[0] != "."]


def _build(
    stage: Path,
    out_dir: Path,
    records: list[Record],
    run_ids: list[str] | set[str] | None,
    baseline: Path | None,
    raw_csv: bool,
) -> list[Plot]:
    """Write every output into ``stage``; returns the plots (staged under ``stage/plots``)."""
    others: list[Record] = []
    if run_ids is not None:
        keep = set(run_ids)
        others = [r for r in records if r.run_id not in keep]
        records = [r for r in records if r.run_id in keep]
    # Time-to-target needs every run of a task (the default target is relative to the best).
    records = with_time_to_target(records, load_target(out_dir))
    runs = runs_frame(records)
    (runs if raw_csv else csv_safe_frame(runs)).to_csv(stage / "runs.csv", index=False)

    select_metric = load_select(out_dir)
    num, board = leaderboard(records, select_metric)
    (num if raw_csv else csv_safe_frame(num)).to_csv(stage / "leaderboard.csv", index=False)
    (stage / "leaderboard.md").write_text(board + target_notes(records), encoding="utf-8")
    plots = make_plots(num, stage / "plots", records, select_metric)
    compare_md = ""
    compare_rows: list[dict[str, Any]] | None = None
    if baseline is not None:
        diffs = compare_sets(load_result_set(baseline).runs, [run_from_record(r) for r in records])
        compare_md = render(diffs, "md")
        compare_rows = page_compare_rows(diffs)
        (stage / "compare.md").write_text(compare_md, encoding="utf-8")
    suite = md_text(records[0].suite) if records else out_dir.name
    failures = [r for r in records if r.status != "success"]
    env = _env_summary(records)
    md = [f"# lorabench report: {suite}", "", f"{len(records)} runs.", "", "## Environment", ""]
    md += [f"- {e}" for e in env] + [
        "",
        "## Leaderboards",
        "",
        board.replace("\n## ", "\n### ").replace("## ", "### ", 1),
    ]
    if compare_md:
        md += ["## Compared with the baseline", "", f"Baseline: `{baseline}`", "", compare_md.replace("## ", "### ")]
    md += ["## Plots", ""]
    for p in plots:
        md += [f"### {p.title}", "", f"![{p.path.stem}](plots/{p.path.name})", "", f"How to read this: {p.how}", ""]
    if failures:
        md += ["## Failed runs", ""]
        md += [md_text(f"- `{r.label}` ({r.run_id}): **{r.status}**: {r.error}") for r in failures] + [""]
    if others:
        md += ["## Not in this suite", "", "Records in this directory that the current plan does not contain:", ""]
        md += [md_text(f"- `{r.label}` ({r.run_id}, {r.status})") for r in others] + [""]
    examples = _examples(out_dir, records)
    if examples:
        md += ["## Prediction examples", ""]
        for label, rows in examples:
            md += [f"**{md_text(label)}**", ""]
            for r in rows:
                line = f"- ref: `{_md_code(r.get('reference'))}`  \n  pred: `{_md_code(r.get('prediction'))}`"
                if r.get("input") is not None:
                    line = f"- input: `{_md_code(r.get('input'))}`  \n  " + line[2:]
                md.append(line)
            md += [""]
    (stage / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    data = page_data(
        out_dir, records, env, compare_rows, None if baseline is None else str(baseline), others, plots, select_metric
    )
    (stage / "report.html").write_text(render_page(data), encoding="utf-8")
    return plots
