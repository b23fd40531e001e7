# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install demo demo-redis test lint typecheck pytest docs bench lock clean

# Every tool and library at the version the suite last passed with (constraints.txt),
# so a release upstream cannot fail a fresh clone's `make test` (sentry-sdk 3.0 did).
# `make install CONSTRAINTS=` takes the latest instead; `make lock` pins them.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS))
EXTRAS := .[all,dev,docs,bench]

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip $(PIN)
	$(BIN)/python -m pip install --quiet -e '$(EXTRAS)' $(PIN)
	touch $(STAMP)

install: $(STAMP)

lock:  ## pin the latest releases in constraints.txt (a fresh venv); then run make test
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet --upgrade pip
	build/lock-venv/bin/python -m pip install --quiet -e '$(EXTRAS)'
	{ echo "# What make install installs: written by make lock, from the latest releases."; \
	  build/lock-venv/bin/python -m pip freeze --all --exclude-editable; } > constraints.txt
	rm -rf build/lock-venv

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
