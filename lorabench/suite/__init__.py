"""Suite stage: YAML file → typed, frozen :class:`Suite` (no torch).

Reading a suite *and* checking it against the registries is :func:`lorabench.validate.load_suite`.
"""

from lorabench.suite.schema import Suite, parse_schema, read_suite

__all__ = ["Suite", "parse_schema", "read_suite"]
