"""Keep bitsandbytes out of a config-only command that does not need it.

peft imports bitsandbytes whenever it is installed (``peft.helpers``, each tuner's
``bnb.py``), and bitsandbytes wraps its CPU kernels in ``torch.compile`` at import, which
pulls in torch's compiler stack: about 1.2 s of the ~5 s that ``lorabench params`` spends
importing, for a count built on the meta device with plain ``nn.Linear`` layers. Only a
traced estimate at a k-bit precision builds real bitsandbytes layers.

Hiding it is process-wide and permanent (peft caches ``is_bnb_available()`` and defines its
bitsandbytes layer classes at import), so it is done only in a process that ends with the
command: the CLI's own process, never a caller's (tests call ``cli.main`` in-process).
"""

from __future__ import annotations

import sys


def hide_bitsandbytes() -> bool:
    """Make ``bitsandbytes`` look absent to what imports next (peft); whether it was hidden.

    A ``None`` entry in ``sys.modules`` is the import system's own "absent" mark:
    ``importlib.util.find_spec`` answers None and ``import`` raises ImportError, which is
    exactly what peft checks. Too late (no effect, False) once peft or bitsandbytes is imported.
    """
    if "bitsandbytes" in sys.modules or "peft" in sys.modules:
        return False
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]
    return True
