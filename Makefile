# defi-contagion: `make demo` runs the whole job on the embedded devnet; `make test` runs the tests.
# Each target sets up what it needs first (idempotent: a second run skips what is done).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PY_STAMP  := $(VENV)/.setup-stamp
NPM_STAMP := node_modules/.setup-stamp

.PHONY: setup demo test test-fast lint bench clean

setup: $(PY_STAMP) $(NPM_STAMP)

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is needed (found " + sys.version.split()[0] + ")")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

# --ignore-scripts: the anvil binary ships inside its per-platform npm package; nothing is fetched
$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm is needed (install Node.js >= 18)"; exit 2; }
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

demo: setup
	$(VENV)/bin/contagion demo --out graphs/demo

test: setup
	$(VENV)/bin/ruff check analyzer protocols tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests

# the fast subset (no test marked slow), for the edit-test loop
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow" tests

# the type checker's settings (and the one relaxation, for web3's strict types) are in pyproject.toml
lint: setup
	$(VENV)/bin/ruff check analyzer protocols tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) node_modules .cache .pytest_cache
