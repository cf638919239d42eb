"""Suite stage: YAML file → typed, validated, frozen :class:`Suite` (no torch)."""

from lorabench.suite.schema import Suite, load_suite

__all__ = ["Suite", "load_suite"]
