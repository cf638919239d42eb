# lorabench: `make bench` (offline smoke suite by default) and `make test`.
# Each target creates .venv/ on first use (an installed torch is respected).
PYTHON ?= python3
VENV   ?= .venv
SUITE  ?= smoke
OUT    ?= results/$(SUITE)
ARGS   ?=
STAMP  := $(VENV)/.lorabench-installed

.PHONY: bench test lint validate benchmarks perf clean-results install lock lock-check

$(STAMP): pyproject.toml scripts/bootstrap.sh requirements.lock
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/bootstrap.sh
	@touch $@

install: $(STAMP)

# Re-resolve every dependency from scratch into requirements.lock (deliberate; run the tests after).
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

# Fail when .venv differs from requirements.lock (a package missing, extra or at another version).
lock-check: $(STAMP)
	$(VENV)/bin/python scripts/check_lock.py

bench: $(STAMP)
	$(VENV)/bin/lorabench run suites/$(SUITE).yaml --out $(OUT) --strict $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

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
