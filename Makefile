# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup test pytest bats bench bundle demo soak clean dist publish claude-cli chromium ray-env

help:
	@echo "make demo   run the orchestrator on the built-in example project"
	@echo "make test   run every test (mypy, pytest and bats)"
	@echo "make bench  print benchmark figures"
	@echo "make soak   long reliability run (not part of CI)"
	@echo "make dist   build and check the sdist and wheel into dist/ (make publish uploads a release)"

setup: $(STAMP) ray-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# Ray for the cluster tests (tests/ray/), in the test venv only: tried until it installs; where pip
# cannot install it (no wheel for this Python or platform) those tests skip and say why.
RAY_STAMP := $(VENV)/.installed-ray

ray-env: $(STAMP)
	@if [ -f $(RAY_STAMP) ] && [ $(RAY_STAMP) -nt pyproject.toml ]; then :; \
	elif $(BIN)/python -m pip install --quiet -e '.[ray]'; then touch $(RAY_STAMP); \
	else echo "ray-env: could not install ray[default]: the Ray cluster tests will be skipped"; fi

test: claude-cli chromium typecheck pytest bats

# The real Claude Code CLI, pinned, for the contract test (tests/contract/): installed from the npm
# registry into the project's cache once per version and reused. Without npm the test skips and says so.
CLAUDE_CLI_VERSION := 2.1.197
CLAUDE_CLI_DIR     := .cache/claude-cli
CLAUDE_CLI_STAMP   := $(CLAUDE_CLI_DIR)/.installed-$(CLAUDE_CLI_VERSION)

claude-cli:
	@if [ -f $(CLAUDE_CLI_STAMP) ]; then :; \
	elif ! command -v npm >/dev/null 2>&1; then \
		echo "claude-cli: npm not found: the contract test with the real Claude Code CLI will be skipped"; \
	else \
		rm -rf $(CLAUDE_CLI_DIR) && mkdir -p $(CLAUDE_CLI_DIR) && \
		npm install --prefix $(CLAUDE_CLI_DIR) --no-save --no-audit --no-fund --loglevel=error \
			@anthropic-ai/claude-code@$(CLAUDE_CLI_VERSION) && touch $(CLAUDE_CLI_STAMP); \
	fi

# Debian's Chromium, for the run report's test in a real headless browser (tests/report/): installed
# with apt when it is missing and this is root with apt-get; otherwise that test skips and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "chromium: not installed, and installing it needs root and apt-get: the report's browser test will be skipped"; \
	else \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
		|| echo "chromium: apt-get could not install it: the report's browser test will be skipped"; \
	fi
RUNTIME_DIR = template/.claude/orchestrator
RUNTIME_TYPED = $(RUNTIME_DIR)/_orchestrate_kit $(RUNTIME_DIR)/orchestrate.py $(RUNTIME_DIR)/task_copilot_client.py \
	$(RUNTIME_DIR)/check_streams_data.py

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --python-version 3.9 $(RUNTIME_TYPED)

# The suite runs on TEST_WORKERS pytest-xdist workers: most tests wait on real processes, so more
# workers than cores pays; tests sharing the Ray cluster run on one worker (tests/conftest.py).
TEST_WORKERS ?= 4

pytest: $(STAMP) claude-cli chromium ray-env
	$(BIN)/pytest -m '' -n $(TEST_WORKERS) --dist loadgroup  # every test: the soak rounds and the wheel builds too

bats: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/bats --recursive bats/

# The template's release history (one tag per v* tag of this repository) that wheels carry;
# the wheel build makes it by itself, this target is for editable installs and a look inside.
bundle: $(STAMP)
	$(BIN)/python tools/template_bundle.py

# The release path (docs/INSTALL.md, "Releasing"): build the sdist and the wheel (which carry the
# template and its history bundle), check them with twine, install the wheel into a fresh venv
# and run it. The version comes from git: X.Y.Z only at the tag vX.Y.Z of a clean checkout.
CHECK_VENV := build/check-venv

dist: $(STAMP)
	rm -rf dist $(CHECK_VENV)
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_VENV)/bin/python -m pip install --quiet dist/*.whl
	@version="$$($(CHECK_VENV)/bin/orchestrate-kit --version)"; \
	  expected="orchestrate-kit $$($(BIN)/python tools/package_version.py)"; \
	  echo "installed wheel says: $$version"; \
	  [ "$$version" = "$$expected" ] || { echo "make dist: expected $$expected" >&2; exit 1; }
	rm -rf $(CHECK_VENV)
	@ls -l dist

# Refuses a dev version: tag the release first (git tag vX.Y.Z).
publish: dist
	$(BIN)/python tools/package_version.py --release
	$(BIN)/twine upload dist/*

bench: $(STAMP)
	$(BIN)/python bench/run.py

demo: $(STAMP)
	$(BIN)/orchestrate-kit demo

soak: $(STAMP)
	SOAK_ROUNDS=50 $(BIN)/pytest tests/reliability -m soak

clean:
	rm -rf $(VENV) build dist .pytest_cache
