# signals: make demo | make test | make lint | make bench
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= reports/demo
# test files run in this many processes (a file's tests stay together: they share fixtures),
# the longest files first (tests/conftest.py SLOWEST_FILES; xdist's own reorder is off)
TEST_JOBS ?= 2

.PHONY: help venv demo test lint format bench clean lab reoptimise chromium postgresql mariadb system-deps

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# signals-checkout.pth puts the checkout on the import path: setuptools' editable finder alone let a
# folder named like one of our packages (strategies/, research/) in the working directory hide it
# (a namespace package wins over a meta-path finder; tests/test_cli_argv.py)
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'signals-checkout.pth').write_text('$(CURDIR)\\n')"
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with dev extras

DEMO_DB := $(DEMO_DIR)/candles.db

demo: $(STAMP)  ## sample database -> signals -> backtest -> sweep -> walk-forward -> gate -> live + paper
	@echo "== 1. a synthetic 90-day market (1m..1d candles + analysis.db), seed 7"
	$(BIN)/signals data synth --out $(DEMO_DIR) --days 90 --seed 7
	$(BIN)/signals data check --db $(DEMO_DB)
	@echo "== 2. every strategy on every timeframe it declares: counts and the last signals"
	$(BIN)/signals demo --db $(DEMO_DB) --out $(DEMO_DIR)
	@echo "== 3. a backtest under Bybit perpetual costs, with signal quality"
	$(BIN)/signals backtest -s scalping --db $(DEMO_DB) -t 5m --costs bybit-perp --quality \
		--trades-out $(DEMO_DIR)/trades.csv --quality-plot $(DEMO_DIR)/quality.html \
		--report $(DEMO_DIR)/backtest.html
	@echo "== 4. a parameter sweep (parameters as columns; vectorbt's simulation kernel per column)"
	$(BIN)/signals sweep -s ema_cross --db $(DEMO_DB) -t 15m --grid fast=5:30:5 \
		--grid slow=40:200:20 --top 5 --min-trades 10 --heatmap fast,slow --out $(DEMO_DIR)/sweep \
		--report $(DEMO_DIR)/sweep.html
	@echo "== 5. walk-forward with optuna, judged out of sample; frozen file + HTML report"
	$(BIN)/signals walkforward -s ema_cross --db $(DEMO_DB) -t 15m --folds 4 --trials 25 \
		--seed 7 --out $(DEMO_DIR)/walkforward
	@echo "== 6. the promotion gate (it may refuse: that is the point)"
	-$(BIN)/signals promote $(DEMO_DIR)/walkforward/frozen.json --to $(DEMO_DIR)/promoted.json
	@echo "== 7. a day replayed through signals live into signals paper, compared with the backtest"
	$(BIN)/signals demo-live --db $(DEMO_DB) --out $(DEMO_DIR)/live --hours 24
	@echo "== done: reports in $(DEMO_DIR)/ (backtest.html, sweep.html, walkforward/report.html, live/paper.html)"

# system packages some tests need (headless Chromium, PostgreSQL and MariaDB servers): installed when
# missing; where that cannot be done here, the tests that need them skip and say why
system-deps:
	-@$(MAKE) --no-print-directory chromium postgresql mariadb >/dev/null 2>&1 || \
		echo "note: chromium/postgresql/mariadb could not be installed; tests that need them will skip"

test: $(STAMP) system-deps  ## lint and type-check, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)  ## ruff check + format check + mypy (signals/, live/, paper/; see pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## sweeps vs vectorbt/backtesting.py, live latency, walk-forward, checks, Dask sweep, backtest report -> benchmarks/RESULTS.md
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/live_latency.py --write-results
	$(BIN)/python benchmarks/walkforward_bench.py --write-results
	$(BIN)/python benchmarks/walkforward_shared_bench.py --write-results
	$(BIN)/python benchmarks/checks_bench.py --write-results
	$(BIN)/python benchmarks/dask_sweep_bench.py --write-results
	$(BIN)/python benchmarks/backtest_report_bench.py --write-results

lab: $(STAMP)  ## JupyterLab on notebooks/ with the project's kernel and a sample db (LAB_ARGS=...)
	$(BIN)/python -m ipykernel install --sys-prefix --name signals --display-name "Python (signals)"
	test -f $(DEMO_DIR)/candles.db || $(BIN)/signals data synth --out $(DEMO_DIR) --days 90 --seed 7
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS) $$([ "$$(id -u)" = 0 ] && echo --allow-root)

REOPTIMISE_ARGS ?= --promote-to reports/live/frozen.json -s ema_cross -t 1h --db $(DEMO_DIR)/candles.db
reoptimise: $(STAMP)  ## re-optimise into reports/<quarter>/ (REOPTIMISE_ARGS="..." for the options)
	$(BIN)/signals reoptimise $(REOPTIMISE_ARGS)

chromium:  ## install Debian's chromium when missing (headless report rendering in the tests)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

postgresql:  ## install Debian's PostgreSQL when missing (the shared walk-forward tests start one)
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update && apt-get install -y postgresql)

mariadb:  ## install Debian's MariaDB server when missing (the MySQL walk-forward tests start one)
	command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || \
		(apt-get update && apt-get install -y --no-install-recommends mariadb-server)

clean:  ## remove the venv and generated demo output
	rm -rf $(VENV) $(DEMO_DIR)
