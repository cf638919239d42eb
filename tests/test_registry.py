from __future__ import annotations

import pytest

from lorabench.errors import UsageError
from lorabench.metrics import METRICS
from lorabench.registry import Registry


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)


def test_unknown_name_suggests_close_matches() -> None:
    reg: Registry[int] = Registry("method")
    reg.register("lora", 1)
    reg.register("dora", 2)
    with pytest.raises(UsageError, match=r"unknown method 'lorra' \(did you mean 'lora'"):
        reg.get("lorra")


def test_lazy_entries_import_on_first_get() -> None:
    reg: Registry[object] = Registry("x")
    reg.register("join", "os.path:join")
    import os.path

    assert reg.get("join") is os.path.join


def test_metric_directions_come_from_the_registry() -> None:
    assert METRICS.get("perplexity").higher_is_better is False
    assert METRICS.get("token_accuracy").higher_is_better is True
    assert METRICS.get("perplexity").better(3.0, 4.0)
    assert not METRICS.get("accuracy").better(0.5, 0.6)
