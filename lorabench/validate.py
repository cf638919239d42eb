"""Validate stage: a suite file → a checked :class:`Suite` and its run specs, before any work.

Three layers of checks, all reported together as one :class:`SuiteError` (exit 2):

1. the schema (:func:`lorabench.suite.schema.parse_schema`): YAML, keys, types, ranges;
2. the planner (:func:`lorabench.plan.expand`): names, method × precision × model rules;
3. preflight (:mod:`lorabench.preflight`): files on disk, model position limits, and
   whether hub models can be had at all.

It sits above both the schema and the planner, so neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorabench.errors import Issue, SuiteError
from lorabench.plan import expand
from lorabench.spec import RunSpec
from lorabench.suite.schema import Suite, parse_schema, read_suite


def _sorted(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[int | None, str]] = set()
    out = []
    for i in sorted(issues, key=lambda i: i.line or 0):
        if (i.line, i.message) not in seen:
            seen.add((i.line, i.message))
            out.append(i)
    return out


def parse_suite(text: str, file: str, default_name: str = "suite") -> Suite:
    """Parse suite ``text`` and check it against the schema and the registries (no files, no torch)."""
    suite, issues = parse_schema(text, file, default_name)
    try:
        if suite.blocks:
            expand(suite)
    except SuiteError as exc:
        issues = issues + exc.issues
    if issues:
        raise SuiteError(_sorted(issues))
    return suite


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file (a path, or a bare name looked up in ``suites/``)."""
    text, file, stem = read_suite(path)
    return parse_suite(text, file, default_name=stem)


@dataclass
class Checked:
    """A suite that passed every check, its runs, and what preflight found about the machine."""

    suite: Suite
    specs: list[RunSpec]
    # Hub models that cannot be had here (offline or unreachable, not in the HF cache):
    # path → the error each of their runs records, without spending a process.
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_suite(path: str | Path, *, for_run: bool = False) -> Checked:
    """Everything :func:`load_suite` checks, plus preflight against this machine's files and caches.

    ``for_run``: paths that use an unset environment variable are errors (the runs could
    not read them); for ``validate`` they are notes, so shipped suites that point at
    ``$LORABENCH_DATA`` still validate where that data is absent.
    """
    from lorabench.preflight import preflight

    suite = load_suite(path)
    specs = expand(suite)
    found = preflight(suite, specs, env_required=for_run)
    if found.issues:
        raise SuiteError(_sorted(found.issues))
    return Checked(suite, specs, found.unavailable, found.notes)
