"""One generic registry for methods, models, tasks and metrics.

Entries may be lazy ``"module:attr"`` strings so that listing and validating never
import torch. Registering a name twice is an error; an unknown name suggests the
closest known ones.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lorabench.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object map with lazy ``module:attr`` entries and did-you-mean errors."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        # Called with (name, object) when an entry is registered or its lazy path is first
        # imported: a plugin that does not fit its entry fails there, not halfway into a run.
        self._check = check

    def register(self, name: str, obj: T | str) -> None:
        """Add ``name``; ``obj`` is the object or a lazy ``"module:attr"`` path."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if self._check is not None and not isinstance(obj, str):
            self._check(name, obj)
        self._entries[name] = obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def suggest(self, name: str) -> str:
        """A ``did you mean`` hint for an unknown name (empty when nothing is close)."""
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""

    def unknown_message(self, name: str) -> str:
        known = ", ".join(self.names())
        return f"unknown {self.kind} {name!r}{self.suggest(name)}; known: {known}"

    def get(self, name: str) -> T:
        """Resolve ``name``, importing a lazy entry on first use."""
        if name not in self._entries:
            raise UsageError(self.unknown_message(name))
        obj = self._entries[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            if self._check is not None:
                self._check(name, obj)
            self._entries[name] = obj
        return obj  # type: ignore[return-value]
