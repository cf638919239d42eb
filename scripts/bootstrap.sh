#!/usr/bin/env bash
# Create .venv/ with lorabench installed (editable, with dev tools), respecting a torch
# that is already installed: it is reused and pinned, never replaced by a download.
# Every other package comes from requirements.lock at its pinned version, installed with
# --no-deps so nothing can pull another torch or CUDA wheels; `make lock` refreshes it.
#   PYTHON=python3.11 scripts/bootstrap.sh      TORCH_SPEC="torch==2.13.0" scripts/bootstrap.sh
#   LORABENCH_UNLOCKED=1 scripts/bootstrap.sh   (resolve the newest versions instead of the lock)
#   WHEELS=.whl scripts/bootstrap.sh            (no registry: see below)
#   EXTRAS=ray scripts/bootstrap.sh             (optional extras too, each from its own lock,
#                                               requirements-NAME.lock, also with --no-deps)
# With WHEELS=DIR (a machine with no package registry, e.g. a GPU image with torch and most
# of the stack preinstalled) nothing is downloaded: every installed package is kept, at
# whatever version the machine has, and only what lorabench[test] still lacks is installed
# from DIR's wheels, at the lock's versions (scripts/collect_wheels.sh fills DIR). The
# packages that differ from the lock are listed as a warning and in $VENV/lock-drift.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
LOCK=${LOCK:-requirements.lock}
WHEELS=${WHEELS:-}
# Optional extras (`make install EXTRAS=ray`), comma- or space-separated.
EXTRAS=$(echo "${EXTRAS:-}" | tr ',' ' ' | xargs)
EXTRA_LOCKS=()
for extra in $EXTRAS; do
  extra_lock="${LOCK%.lock}-$extra.lock"
  if [ ! -f "$extra_lock" ]; then
    echo "bootstrap: EXTRAS=$extra has no lock ($extra_lock); the locked extras: $(ls "${LOCK%.lock}"-*.lock 2>/dev/null | xargs)" >&2
    exit 2
  fi
  EXTRA_LOCKS+=("$extra_lock")
done
EXTRAS_CSV=$(echo "$EXTRAS" | tr ' ' ',')
# Where the venv sees the interpreter's packages when that interpreter is itself a venv.
BASE_PTH=_lorabench_base_site.pth

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "bootstrap: $PY is missing or older than Python 3.10" >&2; exit 2
fi
if [ -n "$WHEELS" ]; then
  if [ -n "$EXTRAS" ]; then
    echo "bootstrap: EXTRAS=$EXTRAS_CSV is not carried as wheels (scripts/collect_wheels.sh collects lorabench[test]); install it apart" >&2
    exit 2
  fi
  if [ ! -d "$WHEELS" ]; then
    echo "bootstrap: WHEELS=$WHEELS is not a directory (scripts/collect_wheels.sh fills one, on a machine with a registry)" >&2
    exit 2
  fi
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "bootstrap: WHEELS=$WHEELS installs with no registry around the interpreter's torch, but $PY has no torch" >&2
    exit 2
  fi
fi

make_venv() {
  # Debian and Ubuntu may ship Python without ensurepip: then the venv goes without its own
  # pip and uses the interpreter's (visible through the shared site-packages).
  if ! "$PY" -m venv "$@" "$VENV"; then
    echo "bootstrap: retrying without pip in the venv (above: no ensurepip?); $PY's own pip installs into it" >&2
    rm -rf "$VENV" && "$PY" -m venv --without-pip "$@" "$VENV"
  fi
}

if [ ! -x "$VENV/bin/python" ]; then
  if "$PY" -c 'import torch' 2>/dev/null; then
    # The interpreter already has torch (a CPU or CUDA build chosen by the user):
    # let the venv see it instead of pulling another one.
    echo "bootstrap: reusing torch $("$PY" -c 'import torch; print(torch.__version__)') from $PY"
    if "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
      # $PY is itself a venv: --system-site-packages would show its base interpreter's
      # packages, not its own, so a .pth file adds its site-packages (after the venv's).
      make_venv
      site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
      "$PY" -c 'import site; print("\n".join(site.getsitepackages()))' > "$site/$BASE_PTH"
    else
      make_venv --system-site-packages
    fi
  else
    "$PY" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
[ -n "$WHEELS" ] || "${PIP[@]}" install -q --upgrade pip >/dev/null 2>&1 || true

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "bootstrap: installing $TORCH_SPEC"
  "${PIP[@]}" install -q "$TORCH_SPEC"
fi
TORCH_VERSION=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')
# Pin the torch we have so no dependency resolution can swap it for another build.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" > "$constraints"
# The interpreter's own packages are visible to the venv: their conflicts are not ours.
shares_site() {
  grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg" \
    || [ -f "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/$BASE_PTH" ]
}
if [ -n "$WHEELS" ]; then
  # Lock pins only for what is not installed at all: an installed package at another
  # version is kept (nothing could replace it here), and pip prefers installed packages.
  "$VENV/bin/python" scripts/check_lock.py --lock "$LOCK" --missing > "$constraints.missing"
  trap 'rm -f "$constraints" "$constraints.missing"' EXIT
  echo "bootstrap: offline, from $WHEELS: keeping the installed packages (torch $TORCH_VERSION), adding what lorabench[test] lacks"
  if ! "${PIP[@]}" install -q --no-index --find-links "$WHEELS" -c "$constraints" -c "$constraints.missing" -e ".[test]"; then
    echo "bootstrap: pip could not install from $WHEELS (above). A missing wheel or a version conflict: on a" >&2
    echo "bootstrap: machine with a registry, IMAGE=FILE scripts/collect_wheels.sh, FILE being this machine's" >&2
    echo "bootstrap: \`$PY -m pip list --format=freeze\`, collects the wheels for exactly this machine" >&2
    exit 1
  fi
  if ! "${PIP[@]}" check; then
    echo "bootstrap: warning: pip check reports conflicts (above), possibly among $PY's own packages" >&2
  fi
  "$VENV/bin/python" scripts/check_lock.py --lock "$LOCK" --drift-ok 2>&1 | tee "$VENV/lock-drift.txt" >&2
elif [ "${LORABENCH_UNLOCKED:-0}" = 1 ] || [ ! -f "$LOCK" ]; then
  rm -f "$VENV/lock-drift.txt"
  echo "bootstrap: installing lorabench and the newest matching dependencies, no lock (torch $TORCH_VERSION kept)"
  "${PIP[@]}" install -q -c "$constraints" -e ".[dev${EXTRAS_CSV:+,$EXTRAS_CSV}]"
else
  echo "bootstrap: installing the $(grep -cv '^#' "$LOCK") packages pinned in $LOCK (torch $TORCH_VERSION kept)"
  for extra_lock in "${EXTRA_LOCKS[@]}"; do
    echo "bootstrap: and the $(grep -cv '^#' "$extra_lock") packages pinned in $extra_lock"
  done
  rm -f "$VENV/lock-drift.txt"
  if ! "${PIP[@]}" install -q --no-deps -r "$LOCK" "${EXTRA_LOCKS[@]/#/-r}"; then
    [ -d .whl ] && echo "bootstrap: no package registry here? With the wheels in .whl/: make install WHEELS=.whl" >&2
    exit 1
  fi
  "${PIP[@]}" install -q --no-deps -e .
  # --no-deps trusts the lock; pip check proves it is complete for this torch. With a
  # reused system torch, pip check also sees the interpreter's other packages, whose
  # conflicts are not ours: then it only warns.
  if ! "${PIP[@]}" check; then
    if shares_site; then
      echo "bootstrap: warning: pip check reports conflicts (above), possibly among $PY's own packages" >&2
    else
      echo "bootstrap: the installed packages do not satisfy each other (above); refresh the lock with 'make lock'" >&2
      exit 1
    fi
  fi
  "$VENV/bin/python" scripts/check_lock.py --lock "$LOCK" ${EXTRAS_CSV:+--extra "$EXTRAS_CSV"}
fi
"$VENV/bin/python" -c 'import torch, transformers, peft; print(f"bootstrap: ok: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'
