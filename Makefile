# The two commands a new user types: `make run` and `make test`. Everything else is for contributors.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help run test lint bench clean

help:
	@echo "make run    set up .venv, build the demo on first run, serve the API on 127.0.0.1:8000"
	@echo "make test   set up .venv with the dev extras and run the test suite"
	@echo "make lint   ruff and mypy"
	@echo "make bench  print the online store's, the API's and the training figures against same-run baselines, the policy goal and a 10-minute soak"
	@echo "make clean  remove .venv and the local data under .nba/"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nba-copilot needs Python 3.11 or newer: run make with PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes; the stamp files record what was installed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/nba run

# One worker per core (at most 4: each worker builds the session's world and models once); a module's tests stay
# on one worker, so its fixtures are built once. `pytest` alone still runs serially.
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadscope

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.online_store
	$(BIN)/python -m bench.event_stream
	$(BIN)/python -m bench.training_frame
	$(BIN)/python -m bench.training_scale
	$(BIN)/python -m bench.feature_server
	$(BIN)/python -m bench.decision_server
	$(BIN)/python -m bench.scale_out
	$(BIN)/python -m bench.auth
	$(BIN)/python -m bench.policy
	$(BIN)/python -m bench.off_policy
	$(BIN)/python -m bench.shadow
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .nba
