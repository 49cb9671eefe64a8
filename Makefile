# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup test pytest bats bench bundle demo soak clean

help:
	@echo "make demo   run the orchestrator on the built-in example project"
	@echo "make test   run every test (mypy, pytest and bats)"
	@echo "make bench  print benchmark figures"
	@echo "make soak   long reliability run (not part of CI)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

test: typecheck pytest bats

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bats: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/bats --recursive bats/

# The template's release history (one tag per v* tag of this repository) that wheels carry;
# the wheel build makes it by itself, this target is for editable installs and a look inside.
bundle: $(STAMP)
	$(BIN)/python tools/template_bundle.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

demo: $(STAMP)
	$(BIN)/orchestrate-kit demo

soak: $(STAMP)
	SOAK_ROUNDS=50 $(BIN)/pytest tests/reliability -m soak

clean:
	rm -rf $(VENV) build dist .pytest_cache
