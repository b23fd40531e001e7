# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install demo demo-redis test lint typecheck pytest docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev,docs,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## serve the reference app with in-memory stores (no Redis needed)
	HARDENKIT_REDIS_URL= $(BIN)/uvicorn examples.reference_app.app:app --host $(HOST) --port $(PORT) --no-server-header --no-proxy-headers

demo-redis: $(STAMP)  ## serve the reference app against HARDENKIT_REDIS_URL
	@test -n "$$HARDENKIT_REDIS_URL" || { echo "set HARDENKIT_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"; exit 2; }
	$(BIN)/uvicorn examples.reference_app.app:app --host $(HOST) --port $(PORT) --no-server-header --no-proxy-headers

test: $(STAMP) lint typecheck pytest docs  ## lint, type check, the whole suite, the docs build

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers (pytest-xdist): the unit tests spread over both, the end-to-end tests run
# one at a time on one of them (tests/conftest.py). Coverage follows every process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=15
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

bench: $(STAMP)  ## every performance target, as ratios against peers measured in the same run
	@command -v wrk >/dev/null || echo "wrk not found: throughput is loaded by Python clients (apt-get install wrk)"
	$(BIN)/python -m benchmarks --output benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) build .coverage .coverage.* .mypy_cache .pytest_cache .ruff_cache .hypothesis
