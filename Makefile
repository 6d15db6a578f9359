# Two commands on a fresh machine (Python 3.11+ and make):
#   make demo   runs the demo web app on an embedded SQLite file
#   make test   runs the checks and the whole test suite (needs the local services)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ormsession demo

lint: $(STAMP)
	$(BIN)/ruff check ormsession tests benchmarks
	$(BIN)/ruff format --check ormsession tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .ci-venv .pytest_cache .mypy_cache .ruff_cache
