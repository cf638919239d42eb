"""Building a method must not change the process environment.

peft's BOFT sets ``CC``/``CXX=gcc`` to build a CUDA extension and does not restore them when
the build fails (on every CPU-only machine). A later torch.compile in the same process, or
in any process it starts, then links its C++ kernels with ``gcc`` and no libstdc++, and
fails at load with ``undefined symbol: _ZTTNSt7__cxx1119basic_ostringstream...``: that is
how one BOFT case in tests/test_peft_zoo.py failed a compiled run in tests/test_perf.py.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from lorabench.methods.base import environ_kept


def test_environ_kept_restores_set_changed_and_removed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_KEEP_A", "a")
    monkeypatch.delenv("LB_KEEP_B", raising=False)
    before = dict(os.environ)
    with pytest.raises(RuntimeError), environ_kept():
        os.environ["LB_KEEP_A"] = "changed"
        os.environ["LB_KEEP_B"] = "added"
        os.environ["CXX"] = "gcc"
        raise RuntimeError("a library failed half-way")
    assert dict(os.environ) == before


def test_boft_through_lorabench_leaves_cc_and_cxx_alone(tmp_path: Path) -> None:
    from lorabench.methods.peft_zoo import CASES
    from tests.peft_zoo_cases import apply, base

    case = CASES["BOFT"]["classification"]
    net = base("classification")  # loading may set torch's own variables (TORCHINDUCTOR_CACHE_DIR)
    before = dict(os.environ)
    model = apply("BOFT", "classification", case.config, net)
    assert os.environ.get("CXX") == before.get("CXX") and os.environ.get("CC") == before.get("CC")
    assert dict(os.environ) == before
    # The reload path builds the layers again (and peft tries the extension again).
    from lorabench.methods.base import MethodContext
    from lorabench.methods.peft_type import PeftTypeOptions, method_for

    model.save_pretrained(str(tmp_path))
    opts = PeftTypeOptions("BOFT", dict(case.config))
    ctx = MethodContext(
        rank=None,
        options=opts,
        task_family="classification",
        precision="fp32",
        model_type=model.config.model_type,
        target_modules=None,
    )
    net = base("classification")
    before = dict(os.environ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method_for("peft:BOFT", opts)().load(net, ctx, tmp_path)
    assert dict(os.environ) == before
