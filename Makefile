# One-command setup and checks. `make install` is idempotent: it rebuilds the
# virtual environment only when pyproject.toml changed since the last install.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install demo up down test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The embedded service (SQLite, a broker on SQLite, MLflow server, API, Celery worker):
# `demo` brings it up and trains CosFace vs LEAP-CF through the REST API; it stays up.
demo: install
	$(VENV)/bin/python -m leap_cli.stack demo

up: install
	$(VENV)/bin/python -m leap_cli.stack up

down:
	@test -x $(VENV)/bin/python && $(VENV)/bin/python -m leap_cli.stack down || true

# The suite runs shuffled (pytest-randomly) with a fixed seed, printed in its header, so a
# test that needs another to have run first fails here, reproducibly; TEST_SEED=<n> picks
# another order, TEST_SEED=none keeps the files' order.
TEST_SEED ?= 20261203
TEST_ORDER = $(if $(filter none,$(TEST_SEED)),-p no:randomly,-p randomly --randomly-seed=$(TEST_SEED))

test: install
	$(VENV)/bin/python -m pytest -q --durations=20 $(TEST_ORDER)

# Everything that needs no PostgreSQL or Redis: the library, training, sweeps, data.
test-fast: install
	$(VENV)/bin/python -m pytest -q -m "not server and not process and not cuda" $(TEST_ORDER)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/python benchmarks/leap_overhead.py
	$(VENV)/bin/python benchmarks/train_step.py
	$(VENV)/bin/python benchmarks/eval_speed.py
	$(VENV)/bin/python benchmarks/data_speed.py
	$(VENV)/bin/python benchmarks/api_load.py

clean: down
	rm -rf $(VENV) .leap .pytest_cache
