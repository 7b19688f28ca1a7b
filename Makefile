# The two commands a new user needs: `make run` and `make test`. Both build their own virtual
# environment from pyproject.toml; nothing else has to be installed but Python 3.11+ and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SIM_PORT ?= 8100

.PHONY: run test lint typecheck unit bench bench-baseline load check ruletests clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.dev-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(VENV)/.run-deps

## Start the upstream API simulator (demo/upstream.json) and the service on the demo rules,
## pointed at it: availability travels the real HTTP path through the four adapters.
run: $(VENV)/.run-deps
	$(BIN)/python -m engine demo --host $(HOST) --port $(PORT) --simulator-port $(SIM_PORT)

# The short benchmark run CI makes (about 15 s): every benchmark, few rounds.
BENCH_SHORT := --benchmark-min-rounds=5 --benchmark-max-time=0.05 --benchmark-warmup=off \
	--benchmark-columns=min,median,mean,ops,rounds --benchmark-sort=min

## Everything CI checks: lint, types, the rule files and their tests, the tests, and a short
## benchmark run compared with benchmarks/baseline.json (a run that looks slower is run once
## more; the best of the two decides).
test: lint typecheck check ruletests unit
	$(BIN)/python -m pytest benchmarks $(BENCH_SHORT) --benchmark-json=$(VENV)/benchmark.json
	$(BIN)/python -m benchmarks.compare $(VENV)/benchmark.json || { \
		echo "slower than the baseline: running the benchmarks again to tell noise from a regression"; \
		$(BIN)/python -m pytest benchmarks $(BENCH_SHORT) --benchmark-json=$(VENV)/benchmark-2.json \
		&& $(BIN)/python -m benchmarks.compare $(VENV)/benchmark.json $(VENV)/benchmark-2.json; }

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check engine tests benchmarks
	$(BIN)/ruff format --check engine tests benchmarks

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy

check: $(VENV)/.run-deps
	$(BIN)/python -m engine check rules

## The merchandisers' rule tests (rules/tests/): each cart decided and compared with what it expects.
ruletests: $(VENV)/.run-deps
	$(BIN)/python -m engine test rules

unit: $(VENV)/.dev-deps
	$(BIN)/python -m pytest

## The full benchmark suite (calibrated rounds, about 30 s), compared with the baseline.
bench: $(VENV)/.dev-deps
	$(BIN)/python -m pytest benchmarks --benchmark-columns=min,median,mean,ops,rounds \
		--benchmark-sort=min --benchmark-json=$(VENV)/benchmark-full.json
	$(BIN)/python -m benchmarks.compare $(VENV)/benchmark-full.json

## Re-record benchmarks/baseline.json: the best of three short runs, on a quiet machine.
bench-baseline: $(VENV)/.dev-deps
	for i in 1 2 3; do $(BIN)/python -m pytest benchmarks $(BENCH_SHORT) -q \
		--benchmark-json=$(VENV)/baseline-$$i.json || exit 1; done
	$(BIN)/python -m benchmarks.compare --update $(VENV)/baseline-1.json \
		$(VENV)/baseline-2.json $(VENV)/baseline-3.json

## Load test over HTTP on 127.0.0.1: the service (simulator, warm cache, demo rules, API key)
## beside a null Litestar endpoint on the same server: maximum rate (wrk when installed), then
## p50-p99.9 at half of it. About a minute; the results also go to $(VENV)/load.json.
load: $(VENV)/.run-deps
	$(BIN)/python -m benchmarks.load --json $(VENV)/load.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks
