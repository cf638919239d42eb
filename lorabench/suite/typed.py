"""A small typed-schema builder: YAML values (with lines) → frozen dataclasses.

Every problem is collected with ``file:line`` and the expected type instead of
stopping at the first one. Unknown keys are errors with a did-you-mean hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

from lorabench.errors import Issue
from lorabench.suite.yamlnodes import LDict, LList, line_of

MISSING = object()
# Larger ints cannot be a step count, a seed or a size; they also overflow torch and JSON readers.
MAX_INT = 2**63 - 1


class FieldErrors(ValueError):
    """Every out-of-range field of one dataclass, so each is reported at its own line."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(message for _, message in self.errors))


_OPS = {">": lambda v, b: v > b, ">=": lambda v, b: v >= b, "<": lambda v, b: v < b, "<=": lambda v, b: v <= b}


def check_ranges(obj: Any, rules: dict[str, str]) -> list[tuple[str, str]]:
    """(field, message) for each field of ``obj`` outside its rule, e.g. ``{"lr": "> 0"}``.

    A rule is one or more ``op bound`` terms joined by `` and ``; None values are not
    checked (they mean "not set"). Meant for ``__post_init__``: raise :class:`FieldErrors`
    with the result when it is not empty.
    """
    errors = []
    for name, rule in rules.items():
        value = getattr(obj, name)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        for term in rule.split(" and "):
            op, bound = term.split()
            ok = ok and _OPS[op](value, float(bound))
        if not ok:
            errors.append((name, f"`{name}` should be {rule}, got {value!r}"))
    return errors


def check_fields(obj: Any, rules: dict[str, str], extra: list[tuple[str, str]] | None = None) -> None:
    """``__post_init__``'s one line: raise :class:`FieldErrors` for every field outside its rule.

    Method and task options declare their ranges this way, as the schema does, so each
    error is reported at its own key's line. ``extra``: (field, message) pairs a rule
    cannot state (one field against another).
    """
    errors = check_ranges(obj, rules) + list(extra or [])
    if errors:
        raise FieldErrors(errors)


class Collector:
    """Accumulates :class:`Issue` objects for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[Issue] = []

    def error(self, line: int | None, message: str) -> None:
        self.issues.append(Issue(self.file, line, message))


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, col: Collector, where: str, line: int | None) -> Any:
    """Convert ``value`` to type ``tp``; on mismatch record an issue and return MISSING."""
    origin = get_origin(tp)
    bad = MISSING

    def fail(extra: str = "") -> Any:
        col.error(line, f"{where}: expected {_type_name(tp)}, got {value!r}{extra}")
        return bad

    if tp is Any:
        return value
    if origin is Literal:
        return value if value in get_args(tp) else fail()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        # The plain value, not the member: specs and records hold JSON strings.
        values = [m.value for m in tp]
        return values[values.index(value)] if isinstance(value, str) and value in values else fail()
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            return None if type(None) in args else fail()
        for arg in args:
            if arg is type(None):
                continue
            sub = Collector(col.file)
            out = convert(arg, value, sub, where, line)
            if not sub.issues:
                return out
        # Report the most specific failure when only one non-null branch exists.
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:
            return convert(non_null[0], value, col, where, line)
        return fail()
    if tp is bool:
        return value if isinstance(value, bool) else fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value if abs(value) <= MAX_INT else fail(f" (larger than {MAX_INT})")
        return fail()
    if tp is float:
        if isinstance(value, bool):
            return fail()
        try:
            # YAML 1.1 reads "1e-3" as a string; an int too large for a float overflows.
            number = float(value) if isinstance(value, (int, float, str)) else None
        except (ValueError, OverflowError):
            number = None
        if number is None:
            return fail()
        return number if math.isfinite(number) else fail(" (not a finite number)")
    if tp is str:
        return value if isinstance(value, str) else fail()
    if origin in (list, tuple):
        (item_tp, *_rest) = get_args(tp)
        # A tuple is a list already converted once (a RunSpec's options are rebuilt in the run).
        if not isinstance(value, (list, tuple)):
            value_list, lines = [value], [line]  # a scalar where a list is expected: promote
        else:
            value_list = value
            lines = getattr(value, "item_lines", [line] * len(value))
        if not value_list:
            return fail(" (empty list)")
        out = [convert(item_tp, v, col, f"{where}[{i}]", ln) for i, (v, ln) in enumerate(zip(value_list, lines))]
        if any(o is MISSING for o in out):
            return bad
        return tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            return fail()
        _key_tp, val_tp = get_args(tp)
        out_d = {}
        for k, v in value.items():
            kl = getattr(value, "key_lines", {}).get(k, line)
            out_d[k] = convert(val_tp, v, col, f"{where}.{k}", kl)
        return bad if any(v is MISSING for v in out_d.values()) else out_d
    if dataclasses.is_dataclass(tp):
        return build(tp, value, col, where, line)
    raise TypeError(f"unsupported schema type {tp!r}")  # a bug in lorabench, not in the suite


def build(cls: Any, raw: Any, col: Collector, where: str, line: int | None = None) -> Any:
    """Build dataclass ``cls`` from mapping ``raw``, collecting every problem in ``col``."""
    line = line_of(raw, line)
    if raw is None:
        raw = LDict()
    if not isinstance(raw, dict):
        col.error(line, f"{where}: expected a mapping, got {raw!r}")
        return MISSING
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    key_lines = getattr(raw, "key_lines", {})
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(fields)
            col.error(key_lines.get(key, line), f"{where}: unknown key {key!r}{hint}; allowed: {allowed}")
    kwargs: dict[str, Any] = {}
    ok = True
    for name, f in fields.items():
        if name in raw:
            val = convert(hints[name], raw[name], col, f"{where}.{name}", key_lines.get(name, line))
            if val is MISSING:
                ok = False
            else:
                kwargs[name] = val
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            col.error(line, f"{where}: missing required key {name!r} ({_type_name(hints[name])})")
            ok = False
    if not ok:
        return MISSING
    try:
        obj = cls(**kwargs)
    except FieldErrors as exc:  # every bad field, each at its own line
        for key, message in exc.errors:
            col.error(key_lines.get(key, line), f"{where}.{key}: {message}")
        return MISSING
    except ValueError as exc:  # __post_init__ checks put the bad value in the message
        named = [k for k in re.findall(r"`(\w+)`", str(exc)) if k in key_lines]
        col.error(key_lines[named[0]] if named else line, f"{where}: {exc}")
        return MISSING
    return obj


def key_line(raw: Any, key: str) -> int | None:
    """Line of ``key`` in a located mapping, else the mapping's own line."""
    if isinstance(raw, LDict):
        return raw.key_lines.get(key, raw.line)
    if isinstance(raw, LList):
        return raw.line
    return None
