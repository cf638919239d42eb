"""Safe YAML reading that keeps the line of every mapping key and list item.

Only PyYAML's safe composer runs, so a suite can never construct Python objects;
alias expansion is bounded so a "billion laughs" file fails cleanly.
"""

from __future__ import annotations

from typing import Any

import yaml

from lorabench.errors import Issue, SuiteError

MAX_NODES = 100_000
# A suite is a few levels deep; PyYAML's composer recurses once per level, so a file
# nested thousands deep would otherwise end in a RecursionError instead of a message.
MAX_DEPTH = 50
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


def decode(data: bytes, file: str) -> str:
    """Suite bytes → text: UTF-8 only (a UTF-8 BOM is allowed); anything else is an :class:`Issue`.

    UTF-16/32 files and stray binary are refused with the line where the problem starts,
    rather than being guessed at: a suite that reads differently on another machine is
    worse than one that does not read at all.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(data) >= 2 and (data[0] == 0) != (data[1] == 0)):
        raise SuiteError([Issue(file, 1, "file is UTF-16 or UTF-32 encoded; save it as UTF-8")])
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise SuiteError([Issue(file, line, "file contains a NUL byte; is it a binary file? Suites are UTF-8 text")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SuiteError(
            [Issue(file, line, f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8")]
        ) from None
    return text.removeprefix("\ufeff")


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` before composing (the parser itself is iterative)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise SuiteError(
                    [Issue(file, line, f"nested deeper than {MAX_DEPTH} levels; a suite never needs that")]
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _yaml_issue(exc: yaml.YAMLError, text: str, file: str) -> Issue:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line: int | None = mark.line + 1
    elif isinstance(exc, yaml.reader.ReaderError):  # a non-printable character: it has a position, no mark
        line = text[: exc.position].count("\n") + 1
    else:
        line = None
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"unacceptable character {exc.character!r}: {problem}"
    return Issue(file, line, f"YAML syntax error: {problem}")


def load_yaml(text: str, file: str) -> Any:
    """Parse ``text`` into plain values wrapped with line information."""
    try:
        _check_depth(text, file)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise SuiteError([_yaml_issue(exc, text, file)]) from None
    except RecursionError:  # a last resort: _check_depth should have caught it
        raise SuiteError([Issue(file, None, "YAML nested too deeply")]) from None
    if root is None:
        raise SuiteError([Issue(file, None, "file is empty; expected a mapping")])
    constructor = yaml.SafeLoader("")
    budget = [MAX_NODES]
    issues: list[Issue] = []

    # Collections on the path from the root to the node being converted: an alias to one
    # of them (`matrix: &m [*m]`) is a cycle, which expands forever.
    open_nodes: set[int] = set()

    def convert(node: yaml.Node) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise SuiteError([Issue(file, node.start_mark.line + 1, "too many YAML nodes (alias bomb?)")])
        line = node.start_mark.line + 1
        if id(node) in open_nodes:
            issues.append(Issue(file, line, "recursive YAML alias: an anchor refers to itself"))
            return None
        if len(open_nodes) >= MAX_DEPTH:
            raise SuiteError([Issue(file, line, f"nested deeper than {MAX_DEPTH} levels (through aliases)")])
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            open_nodes.add(id(node))
            try:
                return _collection(node, line)
            finally:
                open_nodes.discard(id(node))
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            issues.append(Issue(file, line, f"unsupported YAML value ({getattr(exc, 'problem', exc)})"))
            return None

    def _collection(node: yaml.Node, line: int) -> Any:
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
        raise AssertionError("unreachable: only collections get here")  # pragma: no cover

    value = convert(root)
    if issues:
        raise SuiteError(issues)
    return value
