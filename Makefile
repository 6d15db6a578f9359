# Two commands on a fresh machine (Python 3.11+ and make):
#   make demo   runs the demo web app on an embedded SQLite file (installs the core only)
#   make test   runs the checks and the whole test suite (installs .[dev]; needs the local services)
# and `make docs` builds the documentation site into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per install set: the demo's is the minimal one, the test suite's the full one.
CORE_STAMP := $(VENV)/.installed-core
DOCS_STAMP := $(VENV)/.installed-docs
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck docs bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo is a WSGI app on the standard library's server and SQLite: the core is all it needs.
$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@ $(CORE_STAMP)

# .[dev] builds mysqlclient and MariaDB Connector/Python against libmariadb's headers.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	bash scripts/install-build-deps
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(CORE_STAMP) $(DOCS_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/ormsession demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check ormsession tests benchmarks
	$(BIN)/ruff format --check ormsession tests benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .ci-venv .pytest_cache .mypy_cache .ruff_cache site
