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
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: aether supervising the bundled demo agent (no API key): watch it checkpoint and relaunch
demo: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cd $(DEMO_DIR) && ../$(BIN)/aether run \
		--objective "Index the aether package into a Markdown report" \
		--context-window 4000 -- \
		../$(BIN)/python -m aether_cli.demo_agent ../aether_cli --report report.md --delay 0.15
	@echo
	cd $(DEMO_DIR) && ../$(BIN)/aether status
	cd $(DEMO_DIR) && ../$(BIN)/aether checkpoints
	@echo
	@echo "The report: $(DEMO_DIR)/report.md   The memory: $(DEMO_DIR)/.memory/"

## test: the whole suite, slow end-to-end tests included
test: $(STAMP)
	$(BIN)/python -m pytest

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
