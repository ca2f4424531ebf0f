# Every dev command lives here, so the README cannot drift from what runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := .demo

.PHONY: all demo test test-fast lint format clean

all: test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,report]'
	touch $(STAMP)

## demo: aether supervising the bundled demo agent (no API key): watch it checkpoint and relaunch
demo: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cd $(DEMO_DIR) && ../$(BIN)/aether run \
		--objective "Index the aether package into a Markdown report" \
		--context-window 4000 -- \
		../$(BIN)/python -m aether_cli.demo_agent ../aether_cli --report report.md --delay 0.15
	@echo
	@echo "The report: $(DEMO_DIR)/report.md   The memory: $(DEMO_DIR)/.memory/"
	@echo "More: cd $(DEMO_DIR) && ../$(BIN)/aether status   (or: aether checkpoints, aether show, aether report)"

## test: the whole suite, slow end-to-end tests included (the HTML report is rendered in headless Chromium)
test: $(STAMP) chromium
	$(BIN)/python -m pytest

# Debian's chromium renders `aether report --html` in tests/test_report_html.py; installed when missing.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update && apt-get install -y --no-install-recommends chromium; }

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	$(BIN)/ruff check aether_cli tests
	$(BIN)/mypy aether_cli --ignore-missing-imports

format: $(STAMP)
	$(BIN)/ruff format aether_cli tests

clean:
	rm -rf $(VENV) $(DEMO_DIR) dist build .pytest_cache .ruff_cache

## e2e-real: the real Claude Code and Codex CLIs (from npm, kept in .cache/npm) against local fake model servers
NPM_PREFIX := .cache/npm
CLAUDE_CODE_VERSION ?= 2.1.332
CODEX_VERSION ?= 0.169.0
NPM_STAMP := $(NPM_PREFIX)/.installed-$(CLAUDE_CODE_VERSION)-$(CODEX_VERSION)

.PHONY: e2e-real

$(NPM_STAMP):
	mkdir -p $(NPM_PREFIX)
	npm install --prefix $(NPM_PREFIX) --no-audit --no-fund \
		@anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) @openai/codex@$(CODEX_VERSION)
	touch $(NPM_STAMP)

# The checks are named check_*.py so the default test run never collects them.
e2e-real: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m pytest tests/e2e_real -p no:cacheprovider -o python_files='check_*.py' -v

## bench: measure aether's costs side by side (a few minutes); writes bench/results.md and results.json
.PHONY: bench bench-quick
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run --out bench

## bench-quick: the same bench at small sizes (well under a minute); results go to a temp folder
bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

## stress: the long durability runs: 1,000 random SIGKILLs with a resume after each, 5,000 examples per property
.PHONY: stress stress-durability stress-supervision
stress: stress-durability stress-supervision
# 100 random SIGKILLs of aether itself: no process of the run may be left.
stress-supervision: $(STAMP)
	AETHER_STRESS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_supervision.py -k "sigkill or grandchild"
stress-durability: $(STAMP)
	AETHER_STRESS=1 $(BIN)/python -m pytest -s -p no:cacheprovider \
		tests/test_durability.py tests/test_paths_property.py tests/test_parser_property.py \
		tests/test_secrets_corpus.py
