"""Write every output file of a results directory from its records alone.

runs.csv (every field, one row per run), leaderboard.{md,csv} (one table per task),
plots/*.png, report.md and report.html (one self-contained interactive page, see
lorabench/report/page.py); with a baseline, the comparison view too.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from lorabench.report.leaderboard import leaderboard, runs_frame
from lorabench.report.page import compare_rows as page_compare_rows
from lorabench.report.page import page_data, render_page
from lorabench.report.plots import make_plots

ENV_KEYS = ("device_name", "python", "torch", "transformers", "peft", "bitsandbytes", "git_sha", "git_dirty")


def _env_summary(records: list[dict[str, Any]]) -> list[str]:
    """One line per distinct environment: device, library versions, git sha."""
    envs = {
        json.dumps({k: r.get("env", {}).get(k) for k in ENV_KEYS}, sort_keys=True, default=str)
        for r in records
        if r.get("env")
    }
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


def _examples(out_dir: Path, records: list[dict[str, Any]], k: int = 3) -> list[tuple[str, list[dict[str, Any]]]]:
    """The first ``k`` predictions of every summarisation run (the readable ones) and of up to
    4 runs per other task: a list cut at the first N runs alphabetically dropped whole tasks."""
    out = []
    per_task: dict[str, int] = {}
    for rec in sorted(records, key=lambda r: (r["spec"]["task"], r["label"])):
        task = rec["spec"]["task"]
        summarise = (rec["spec"].get("task_options") or {}).get("type") == "summarization"
        if rec["status"] != "success" or (not summarise and per_task.get(task, 0) >= 4):
            continue
        path = out_dir / "runs" / rec["run_id"] / "predictions.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as fh:
            out.append((rec["label"], [json.loads(line) for line in itertools.islice(fh, k)]))
        per_task[task] = per_task.get(task, 0) + 1
    return out


def _md_code(value: Any, limit: int = 160) -> str:
    """One line of inline code: newlines and backticks would break the Markdown around it."""
    return " ".join(str(value).split()).replace("`", "'")[:limit]


def build_report(
    out_dir: Path,
    records: list[dict[str, Any]],
    run_ids: list[str] | set[str] | None = None,
    baseline: Path | None = None,
) -> dict[str, Path]:
    """runs.csv, leaderboard.{csv,md}, plots/*.png, report.md and report.html.

    ``run_ids`` (a plan's ids) restricts every output to those runs; other records in
    the directory are listed under "not in this suite". ``baseline`` (a results
    directory or runs.csv) adds the comparison view.
    """
    out_dir = Path(out_dir)
    others: list[dict[str, Any]] = []
    if run_ids is not None:
        keep = set(run_ids)
        others = [r for r in records if r["run_id"] not in keep]
        records = [r for r in records if r["run_id"] in keep]
    runs_frame(records).to_csv(out_dir / "runs.csv", index=False)
    num, board = leaderboard(records)
    num.to_csv(out_dir / "leaderboard.csv", index=False)
    (out_dir / "leaderboard.md").write_text(board, encoding="utf-8")
    plots = make_plots(num, out_dir / "plots", records)
    compare_md = ""
    compare_rows: list[dict[str, Any]] | None = None
    if baseline is not None:
        from lorabench.report.compare import compare_sets, render
        from lorabench.report.results import load_result_set, run_from_record

        diffs = compare_sets(load_result_set(baseline).runs, [run_from_record(r) for r in records])
        compare_md = render(diffs, "md")
        compare_rows = page_compare_rows(diffs)
        (out_dir / "compare.md").write_text(compare_md, encoding="utf-8")
    else:
        # A rebuild without a baseline must not leave the previous build's comparison beside it.
        (out_dir / "compare.md").unlink(missing_ok=True)
    suite = records[0]["suite"] if records else out_dir.name
    failures = [r for r in records if r["status"] != "success"]
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
        md += [f"- `{r['label']}` ({r['run_id']}): **{r['status']}**: {r['error']}" for r in failures] + [""]
    if others:
        md += ["## Not in this suite", "", "Records in this directory that the current plan does not contain:", ""]
        md += [f"- `{r['label']}` ({r['run_id']}, {r['status']})" for r in others] + [""]
    examples = _examples(out_dir, records)
    if examples:
        md += ["## Prediction examples", ""]
        for label, rows in examples:
            md += [f"**{label}**", ""]
            for r in rows:
                line = f"- ref: `{_md_code(r.get('reference'))}`  \n  pred: `{_md_code(r.get('prediction'))}`"
                if r.get("input") is not None:
                    line = f"- input: `{_md_code(r.get('input'))}`  \n  " + line[2:]
                md.append(line)
            md += [""]
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    data = page_data(out_dir, records, env, compare_rows, None if baseline is None else str(baseline), others, plots)
    (out_dir / "report.html").write_text(render_page(data), encoding="utf-8")
    return {"runs": out_dir / "runs.csv", "leaderboard": out_dir / "leaderboard.md", "report": out_dir / "report.html"}
