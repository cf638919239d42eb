"""Safe YAML reading that keeps the line of every mapping key and list item.

Only PyYAML's safe composer runs, so a suite can never construct Python objects;
alias expansion is bounded so a "billion laughs" file fails cleanly.
"""

from __future__ import annotations

from typing import Any

import yaml

from lorabench.errors import Issue, SuiteError

MAX_NODES = 100_000
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class LDict(dict):
    """A mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class LList(list):
    """A list that remembers its own line and each item's line (1-based)."""

    line: int = 0
    item_lines: list[int]


def line_of(value: Any, default: int | None = None) -> int | None:
    return getattr(value, "line", default) or default


def load_yaml(text: str, file: str) -> Any:
    """Parse ``text`` into plain values wrapped with line information."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError([Issue(file, line, f"YAML syntax error: {problem}")]) from None
    if root is None:
        raise SuiteError([Issue(file, None, "file is empty; expected a mapping")])
    constructor = yaml.SafeLoader("")
    budget = [MAX_NODES]
    issues: list[Issue] = []

    def convert(node: yaml.Node) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise SuiteError([Issue(file, node.start_mark.line + 1, "too many YAML nodes (alias bomb?)")])
        line = node.start_mark.line + 1
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            issues.append(Issue(file, line, f"unsupported YAML value (tag {node.tag!r} is not allowed)"))
            return None
        if isinstance(node, yaml.MappingNode):
            out = LDict()
            out.line, out.key_lines = line, {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    issues.append(Issue(file, knode.start_mark.line + 1, "YAML merge keys (<<) are not supported"))
                    continue
                key = convert(knode)
                if not isinstance(key, str):
                    issues.append(Issue(file, knode.start_mark.line + 1, f"keys must be strings, got {key!r}"))
                    continue
                if key in out:
                    issues.append(Issue(file, knode.start_mark.line + 1, f"duplicate key {key!r}"))
                    continue
                out[key] = convert(vnode)
                out.key_lines[key] = knode.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = LList()
            seq.line, seq.item_lines = line, []
            for item in node.value:
                seq.append(convert(item))
                seq.item_lines.append(item.start_mark.line + 1)
            return seq
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            issues.append(Issue(file, line, f"unsupported YAML value ({getattr(exc, 'problem', exc)})"))
            return None

    value = convert(root)
    if issues:
        raise SuiteError(issues)
    return value
