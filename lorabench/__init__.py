"""lorabench: cost and quality of fine-tuning methods, measured in isolated runs.

Importing this package must stay cheap (no torch): the CLI's ``--help``,
``validate`` and ``list`` paths depend on it.
"""

__version__ = "0.1.0"
