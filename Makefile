# stream-gateway developer commands. `make help` lists them.
# Everything runs inside .venv, which the first target that needs it creates.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[operator,test,lint]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its test and lint tools

run: $(STAMP)  ## run the gateway with an embedded NATS and the default route, on loopback (ARGS=... for more flags)
	$(BIN)/streamgw serve --host 127.0.0.1 $(ARGS)

lint: $(STAMP)  ## ruff, mypy --strict and import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP)  ## lint, then the whole test suite (real nats-server, gateway, kubectl, helm)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(ARGS)

unit: $(STAMP)  ## only the fast pure tests
	$(BIN)/pytest tests/unit $(ARGS)

bench: $(STAMP)  ## gateway vs naive bridge under identical load (bench/RESULTS.md); figures, never pass/fail
	$(BIN)/python -m bench $(ARGS)

bench-core: $(STAMP)  ## in-process micro-benchmarks of the protocol core (python -m tests.bench)
	$(BIN)/python -m tests.bench $(ARGS)

fmt: $(STAMP)  ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info

.PHONY: help install run lint test unit bench fmt clean
