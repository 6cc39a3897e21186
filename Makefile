# The README's two commands: `make run` and `make test`. Each does its own
# set-up on a fresh machine: a virtualenv with Loom installed, the front-end
# libraries from the npm registry and, for the browser tests, Debian's
# chromium with a CJK font.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test bench bench-quick setup browser clean

run: setup
	$(BIN)/loom serve --host $(HOST) --port $(PORT)

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks: Loom against its baselines in the same run (tests/benchmarks/).
# They print a table and write bench-results.jsonl; a missed goal is a
# figure, never a failure. BENCH_ARGS picks modules, e.g. BENCH_ARGS="api lists".
BENCH_ARGS ?=

bench: setup
	$(BIN)/python tests/benchmarks/run.py $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python tests/benchmarks/run.py --quick $(BENCH_ARGS)

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Playwright cannot download its own browser here: the tests drive
# Debian's chromium, and Chinese needs a font to render in screenshots.
browser:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi wqy; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei; \
		else \
			echo "chromium or a CJK font is missing: run 'sudo apt-get install chromium fonts-wqy-microhei' (browser tests will be skipped)"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis
