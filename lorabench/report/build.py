"""Write every output file of a results directory from its records alone.

runs.csv (every field, one row per run), leaderboard.{md,csv} (one table per task),
plots/*.png, report.md and a self-contained, escaped report.html; with a baseline, the
comparison view too.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from pathlib import Path
from typing import Any

from lorabench.report.leaderboard import leaderboard, runs_frame
from lorabench.report.plots import Plot, make_plots

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
    out = []
    for rec in records:
        if rec["status"] != "success":
            continue
        path = out_dir / "runs" / rec["run_id"] / "predictions.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as fh:
            out.append((rec["label"], [json.loads(line) for line in itertools.islice(fh, k)]))
        if len(out) >= 12:
            break
    return out


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
    compare_md = compare_html = ""
    if baseline is not None:
        from lorabench.report.compare import compare_sets, render
        from lorabench.report.results import load_result_set, run_from_record

        diffs = compare_sets(load_result_set(baseline).runs, [run_from_record(r) for r in records])
        compare_md = render(diffs, "md")
        compare_html = _md_tables_to_html(compare_md)
        (out_dir / "compare.md").write_text(compare_md, encoding="utf-8")
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
            md += [
                f"- ref: `{str(r.get('reference'))[:160]}`  \n  pred: `{str(r.get('prediction'))[:160]}`" for r in rows
            ]
            md += [""]
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    _write_html(out_dir, suite, env, board, compare_html, plots, failures, others, examples, baseline)
    return {"runs": out_dir / "runs.csv", "leaderboard": out_dir / "leaderboard.md", "report": out_dir / "report.html"}


def _md_tables_to_html(md: str) -> str:
    """Our own Markdown (headings, GitHub tables, paragraphs) as escaped HTML; no Markdown library needed."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        head, body = table[0], [r for r in table[1:] if not set("".join(r)) <= set("-: ")]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>")
        for r in body:
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
        out.append("</tbody></table>")
        table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h3>{html.escape(line[3:])}</h3>")
        elif line.strip():
            text = html.escape(line).replace("**", "")
            out.append(f"<p>{text}</p>")
    flush()
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1600px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1em}
td,th{padding:3px 6px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f4f4f4;white-space:normal;overflow-wrap:break-word;vertical-align:bottom;max-width:8em}td:nth-child(-n+4),th:nth-child(-n+4){text-align:left}
.wrap{overflow-x:auto}figure{margin:1em 0 2em}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:14px;color:#444;max-width:900px}code{background:#f4f4f4;padding:0 3px}
.env{font-size:13px;color:#444}"""


def _write_html(
    out_dir: Path,
    suite: str,
    env: list[str],
    board: str,
    compare_html: str,
    plots: list[Plot],
    failures: list[dict[str, Any]],
    others: list[dict[str, Any]],
    examples: list[tuple[str, list[dict[str, Any]]]],
    baseline: Path | None,
) -> None:
    esc = html.escape
    imgs = "".join(
        f'<figure><h3>{esc(p.title)}</h3><img alt="{esc(p.path.stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.path.read_bytes()).decode()}">'
        f"<figcaption><b>How to read this:</b> {esc(p.how)}</figcaption></figure>"
        for p in plots
    )
    parts = [
        f'<!doctype html><html><head><meta charset="utf-8"><title>lorabench: {esc(suite)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>lorabench report: {esc(suite)}</h1>",
        "<h2>Environment</h2><ul class=env>" + "".join(f"<li>{esc(e)}</li>" for e in env) + "</ul>",
        f'<h2>Leaderboards</h2><div class="wrap">{_md_tables_to_html(board)}</div>',
    ]
    if compare_html:
        parts.append(f"<h2>Compared with the baseline</h2><p>Baseline: <code>{esc(str(baseline))}</code></p>")
        parts.append(f'<div class="wrap">{compare_html}</div>')
    parts.append(f"<h2>Plots</h2>{imgs}")
    if failures:
        items = "".join(
            f"<li><code>{esc(r['label'])}</code>: <b>{esc(r['status'])}</b>: {esc(str(r['error']))}</li>"
            for r in failures
        )
        parts.append(f"<h2>Failed runs</h2><ul>{items}</ul>")
    if others:
        items = "".join(
            f"<li><code>{esc(r['label'])}</code> ({esc(r['run_id'])}, {esc(r['status'])})</li>" for r in others
        )
        parts.append(f"<h2>Not in this suite</h2><ul>{items}</ul>")
    if examples:
        parts.append("<h2>Prediction examples</h2>")
        for label, rows in examples:
            items = "".join(
                f"<li>ref: <code>{esc(str(r.get('reference'))[:160])}</code><br>"
                f"pred: <code>{esc(str(r.get('prediction'))[:160])}</code></li>"
                for r in rows
            )
            parts.append(f"<p><b>{esc(label)}</b></p><ul>{items}</ul>")
    parts.append("</body></html>")
    (out_dir / "report.html").write_text("\n".join(parts) + "\n", encoding="utf-8")
