# Touchstream: `make run` and `make test` do all the set-up on a fresh machine (Python 3.11 + make).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Touchstream with its dev tools

run: $(STAMP) ## the whole platform on the embedded broker and database, with sample data
	$(BIN)/touchstream run

test: $(STAMP) ## unit, integration and end-to-end tests (starts its own broker and database)
	$(BIN)/pytest

bench: $(STAMP) ## python -m bench: benchmarks beside their limits (QUICK=1: about 6 minutes)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy events projections services bench

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schemas: $(STAMP) ## regenerate schemas/ from the event models
	$(BIN)/python -m events.schemas

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .touchstream

.PHONY: help install run test bench lint fmt schemas clean
