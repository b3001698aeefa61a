# liqsim: two commands do all set-up on a fresh machine (Python 3.11, make, Node 20).
#   make run    - create the venv, install, run the default simulation
#   make test   - create the venv, install Python and npm packages, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
SCENARIO ?= scenarios/default.toml
SEED ?= 1
OUT ?= runs/default-seed$(SEED)

.PHONY: run demo viz test soak lint contracts bench bench-backends results clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ray,viz]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

run: $(STAMP)
	$(VENV)/bin/liqsim run $(SCENARIO) --seed $(SEED) --out $(OUT) --force

demo: $(STAMP)
	$(VENV)/bin/liqsim demo

# The dashboard on the default scenario (docs/dashboard.md): prints its URL, Ctrl-C stops it.
viz: $(STAMP)
	$(VENV)/bin/liqsim viz $(SCENARIO)

test: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

# The Hypothesis stateful test of the contracts with its soak profile (>= 10,000 steps; prints
# steps/s). `make test` runs the same test with its short CI profile.
soak: $(STAMP)
	LIQSIM_SOAK=1 $(VENV)/bin/pytest -q -s tests/test_invariants.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

contracts: $(NODE_STAMP)
	node contracts/compile.mjs

# The experiments behind the README's results, on the anvil backend (resumable: a rerun reuses
# finished runs), and docs/results.md written from them (75-90 minutes on 2 cores).
results: $(STAMP) $(NODE_STAMP)
	$(PY) -m sim.experiments.results --out runs/results

bench: $(STAMP)
	$(PY) benchmarks/block_market.py

# The default run on py-evm and on anvil: times, ratio, 1,000-seed sweep projection, equivalence.
bench-backends: $(STAMP) $(NODE_STAMP)
	$(PY) benchmarks/backends.py

clean:
	rm -rf $(VENV) node_modules
