# signals: make demo | make test | make lint | make bench
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= reports/demo

.PHONY: help venv demo test lint format bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with dev extras

demo: $(STAMP)  ## build a sample database, run every strategy over it, write a report
	$(BIN)/signals data synth --out $(DEMO_DIR) --days 90 --seed 7
	$(BIN)/signals demo --db $(DEMO_DIR)/candles.db --out $(DEMO_DIR)

test: $(STAMP)  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## run the benchmarks and print results (record them in benchmarks/RESULTS.md)
	$(BIN)/python benchmarks/run.py

clean:  ## remove the venv and generated demo output
	rm -rf $(VENV) $(DEMO_DIR)
