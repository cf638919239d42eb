"""Accounting without training: parameter counts, FLOPs per token and memory estimates.

Below ``run/``: a run, the CLI (``lorabench params``/``estimate``) and the estimate
tracer all count with these modules, and nothing here imports ``run/``.
"""
