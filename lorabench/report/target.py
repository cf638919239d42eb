"""Time-to-target in the report: each task's target, and every record timed to it.

MLPerf's training benchmark reports time-to-quality for one fixed model; here every
method of a task gets it (the curve arithmetic is :mod:`lorabench.quality`'s). The
target of a task is explicit (``select.target`` in the suite; each run then also records
its own ``profile.time_to_target``) or, by default, within 5% of the best run's final
curve value on the task's primary metric: ``0.95 x best`` where higher is better,
``best / 0.95`` where lower is better. The default depends on the other runs, so it is
computed when the report is built, from the records; the result is attached to each
record's ``profile.time_to_target`` as the report reads it (runs.csv, leaderboard,
report.html), and the records on disk are not changed. Nothing here imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lorabench.metrics import METRICS
from lorabench.quality import DEFAULT_SHARE, EXPLICIT_RULE, Target, default_target, time_to_target
from lorabench.record_data import Profile, Record
from lorabench.report.results import run_from_record
from lorabench.report.select import read_select_block


def _primary(rec: Record) -> str | None:

    return run_from_record(rec).primary


def task_targets(records: list[Record], explicit: tuple[str, float] | None = None) -> dict[str, Target]:
    """Per task: the explicit target (``(metric, value)``, the suite's ``select.target``) or the default one.

    Only successful runs with an evaluation curve holding the primary metric count.
    """
    finals: dict[str, tuple[str, list[float]]] = {}
    for rec in records:
        curve = rec.curves.get("eval") or []
        metric = _primary(rec)
        if not rec.ok or not curve or metric is None or metric not in curve[-1]:
            continue
        task = rec.spec["task"]
        finals.setdefault(task, (metric, []))[1].append(float(curve[-1][metric]))
    out: dict[str, Target] = {}
    for task, (metric, values) in finals.items():
        if explicit is not None:
            out[task] = Target(explicit[0], float(explicit[1]), EXPLICIT_RULE)
            continue
        value = default_target(values, METRICS.get(metric).higher_is_better)
        if value is not None:
            rule = f"{DEFAULT_SHARE:.0%} of the best run's final {metric} ({'x 0.95' if METRICS.get(metric).higher_is_better else '/ 0.95'})"
            out[task] = Target(metric, value, rule)
    return out


def with_time_to_target(records: list[Record], explicit: tuple[str, float] | None = None) -> list[Record]:
    """Copies of ``records`` with ``profile.time_to_target`` set wherever the run has a curve and its task a target.

    The records on disk are not changed: the default target depends on every run of the task.
    """
    targets = task_targets(records, explicit)
    out = []
    for rec in records:
        curve = rec.curves.get("eval") or []
        target = targets.get(rec.spec["task"])
        if target is None or not curve or not rec.ok:
            out.append(rec)
            continue
        # Through the wire form, so absent fields stay absent (dataclasses.replace would write them as null).
        profile = Profile.from_dict({**rec.profile.to_dict(), "time_to_target": time_to_target(curve, target)})
        out.append(Record.from_dict({**rec.to_dict(), "profile": profile.to_dict()}))
    return out


def load_target(out_dir: Path) -> tuple[str, float] | None:
    """``(select.metric, select.target)`` of the suite last run into ``out_dir`` (its ``suite.yaml``), else None.

    Read by :func:`lorabench.report.select.read_select_block`: only these keys, and a copy
    that cannot be read gives the default target, never a guess.
    """
    sel = read_select_block(out_dir)
    if sel is None:
        return None
    metric, value = sel.get("metric"), sel.get("target")
    if not isinstance(metric, str) or metric not in METRICS or isinstance(value, bool):
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return metric, float(value)


def target_notes(records: list[Record]) -> str:
    """Markdown saying each task's time-to-target target (appended to leaderboard.md), or ''."""
    seen: dict[str, dict[str, Any]] = {}
    for rec in records:
        ttt = rec.profile.time_to_target
        if isinstance(ttt, dict):
            seen.setdefault(rec.spec["task"], ttt)
    if not seen:
        return ""
    lines = ["", "## Time to target", ""]
    for task, ttt in sorted(seen.items()):
        m = METRICS.get(ttt["metric"])
        sign = ">=" if m.higher_is_better else "<="
        lines.append(f"- {task}: {ttt['metric']} {sign} {m.format(ttt['target'])} ({ttt['rule']}), on the eval curve")
    lines += [
        "",
        "The to-target columns count training up to the first periodic evaluation that reached it (warm-up "
        "included, evaluation excluded); `(k/n reached)` where some seeds never did.",
        "",
    ]
    return "\n".join(lines)
