#!/usr/bin/env bash
# Create .venv/ with lorabench installed (editable, with dev tools), respecting a torch
# that is already installed: it is reused and pinned, never replaced by a download.
# Every other package comes from requirements.lock at its pinned version, installed with
# --no-deps so nothing can pull another torch or CUDA wheels; `make lock` refreshes it.
#   PYTHON=python3.11 scripts/bootstrap.sh      TORCH_SPEC="torch==2.13.0" scripts/bootstrap.sh
#   LORABENCH_UNLOCKED=1 scripts/bootstrap.sh   (resolve the newest versions instead of the lock)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
LOCK=${LOCK:-requirements.lock}

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "bootstrap: $PY is missing or older than Python 3.10" >&2; exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
  if "$PY" -c 'import torch' 2>/dev/null; then
    # The interpreter already has torch (a CPU or CUDA build chosen by the user):
    # let the venv see it instead of pulling another one.
    echo "bootstrap: reusing torch $("$PY" -c 'import torch; print(torch.__version__)') from $PY"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip >/dev/null 2>&1 || true

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "bootstrap: installing $TORCH_SPEC"
  "${PIP[@]}" install -q "$TORCH_SPEC"
fi
TORCH_VERSION=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')
# Pin the torch we have so no dependency resolution can swap it for another build.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" > "$constraints"
if [ "${LORABENCH_UNLOCKED:-0}" = 1 ] || [ ! -f "$LOCK" ]; then
  echo "bootstrap: installing lorabench and the newest matching dependencies, no lock (torch $TORCH_VERSION kept)"
  "${PIP[@]}" install -q -c "$constraints" -e ".[dev]"
else
  echo "bootstrap: installing the $(grep -cv '^#' "$LOCK") packages pinned in $LOCK (torch $TORCH_VERSION kept)"
  "${PIP[@]}" install -q --no-deps -r "$LOCK"
  "${PIP[@]}" install -q --no-deps -e .
  # --no-deps trusts the lock; pip check proves it is complete for this torch. With a
  # reused system torch, pip check also sees the interpreter's other packages, whose
  # conflicts are not ours: then it only warns.
  if ! "${PIP[@]}" check; then
    if grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
      echo "bootstrap: warning: pip check reports conflicts (above), possibly among $PY's own packages" >&2
    else
      echo "bootstrap: the installed packages do not satisfy each other (above); refresh the lock with 'make lock'" >&2
      exit 1
    fi
  fi
  "$VENV/bin/python" scripts/check_lock.py --lock "$LOCK"
fi
"$VENV/bin/python" -c 'import torch, transformers, peft; print(f"bootstrap: ok: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'
