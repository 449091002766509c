# One-command setup and checks. `make install` is idempotent: it rebuilds the
# virtual environment only when pyproject.toml changed since the last install.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: install
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(VENV)/bin/python benchmarks/leap_overhead.py

clean:
	rm -rf $(VENV) .leap .pytest_cache
