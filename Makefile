# lorabench: `make bench` (offline smoke suite by default) and `make test`.
# Each target creates .venv/ on first use (an installed torch is respected).
PYTHON ?= python3
VENV   ?= .venv
SUITE  ?= smoke
OUT    ?= results/$(SUITE)
ARGS   ?=
# Optional extras, each from its own lock (requirements-NAME.lock): `make install EXTRAS=ray`.
EXTRAS ?=
comma  := ,
empty  :=
space  := $(empty) $(empty)
EXTRAS_LIST := $(strip $(subst $(comma),$(space),$(EXTRAS)))
BASE_STAMP  := $(VENV)/.lorabench-installed
# One stamp per set of extras: `make install EXTRAS=ray` over a venv made without it still runs.
STAMP  := $(BASE_STAMP)$(if $(EXTRAS_LIST),-$(subst $(space),-,$(EXTRAS_LIST)))
# A directory of wheels for a machine with no package registry (`make install WHEELS=.whl`;
# `make wheels` fills .whl/ on a machine that has one). Empty: install from the registry.
WHEELS ?=
# The committed smoke baseline that `make check` gates against (refresh: `make baseline`).
BASELINE ?= results/baselines/smoke-cpu

.PHONY: bench test lint validate benchmarks perf clean-results install lock lock-extras lock-check baseline check compare report wheels test-drift example-fair

$(STAMP): pyproject.toml scripts/bootstrap.sh requirements.lock $(EXTRAS_LIST:%=requirements-%.lock)
	PYTHON=$(PYTHON) VENV=$(VENV) WHEELS=$(WHEELS) EXTRAS="$(EXTRAS_LIST)" bash scripts/bootstrap.sh
	@touch $@ $(BASE_STAMP)

install: $(STAMP)

# The wheels `make install WHEELS=.whl` needs on the GPU image (scripts/gpu-image.txt, or
# IMAGE=its `pip list --format=freeze`): the locked packages it lacks, for CPython 3.12.
wheels: $(STAMP)
	PYTHON=$(VENV)/bin/python WHEELS=.whl bash scripts/collect_wheels.sh

# Re-resolve every dependency from scratch into requirements.lock and each extra's
# requirements-NAME.lock (deliberate; run the tests after). lock-extras: the extras only.
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

lock-extras: $(BASE_STAMP)
	PYTHON=$(VENV)/bin/python bash scripts/lock.sh --extras-only

# Fail when .venv differs from requirements.lock (a package missing, extra or at another version),
# or from an extra's lock: all of EXTRAS' required, any other extra all or nothing.
lock-check: $(STAMP)
	$(VENV)/bin/python scripts/check_lock.py $(if $(EXTRAS_LIST),--extra $(subst $(space),$(comma),$(EXTRAS_LIST)))

bench: $(STAMP)
	$(VENV)/bin/lorabench run suites/$(SUITE).yaml --out $(OUT) --strict $(ARGS)

# The real-weights fairness example (issue 18): MiniLM-L6 on IMDb, 5 methods x 3 rates x 3 seeds,
# rate chosen on validation. Needs LORABENCH_DATA (imdb/imdb_2500.csv, wikitext-2-raw/wiki.test.raw).
example-fair: $(STAMP)
	@test -n "$(LORABENCH_DATA)" || { echo "set LORABENCH_DATA to a directory holding imdb/ and wikitext-2-raw/"; exit 2; }
	$(VENV)/bin/lorabench run suites/examples/real_fair.yaml --out results/examples-real-fair $(ARGS)

# Regression gate: $(OUT) (default results/smoke, from `make bench`) against the baseline.
check: $(STAMP)
	$(VENV)/bin/lorabench check --baseline $(BASELINE) --current $(OUT) $(ARGS)

compare: $(STAMP)
	$(VENV)/bin/lorabench compare $(BASELINE) $(OUT) $(ARGS)

# Rebuild $(OUT)'s leaderboard, plots and report.html, with the comparison to the baseline.
report: $(STAMP)
	$(VENV)/bin/lorabench report $(OUT) --baseline $(BASELINE)

# Refresh the committed baseline deliberately: after a change meant to move the smoke
# numbers (training, data, methods, a torch upgrade). Commit it with the reason.
baseline: $(STAMP)
	rm -rf results/_baseline-run
	$(VENV)/bin/lorabench run suites/smoke.yaml --out results/_baseline-run --strict --no-progress
	$(VENV)/bin/python -m lorabench.report.baseline results/_baseline-run $(BASELINE)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

# The tests against the GPU image's library versions (scripts/gpu-image.txt; torch stays the
# machine's), in a second venv: an API drift shows up here before GPU time is spent on it.
DRIFT_VENV  ?= .venv-drift
DRIFT_TESTS ?= -m "not slow"
$(DRIFT_VENV)/.lorabench-installed: pyproject.toml scripts/bootstrap.sh scripts/drift_venv.sh requirements.lock scripts/gpu-image.txt
	rm -rf $(DRIFT_VENV)
	PYTHON=$(PYTHON) VENV=$(DRIFT_VENV) bash scripts/drift_venv.sh
	@touch $@

test-drift: $(DRIFT_VENV)/.lorabench-installed
	$(DRIFT_VENV)/bin/python -m pytest -q $(DRIFT_TESTS) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lorabench tests benchmarks
	$(VENV)/bin/ruff format --check lorabench tests benchmarks

validate: $(STAMP)
	@for f in suites/*.yaml suites/examples/*.yaml; do [ -f "$$f" ] && $(VENV)/bin/lorabench validate $$f || exit $$?; done

benchmarks: $(STAMP)
	$(VENV)/bin/python benchmarks/isolation_overhead.py

# Harness overhead: lorabench's training loop vs a bare PyTorch loop (overhead_ratio).
perf: $(STAMP)
	$(VENV)/bin/python benchmarks/perf_overhead.py $(ARGS)

clean-results:
	rm -rf results/smoke
