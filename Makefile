# digits-zoo: `make demo` runs the main job, `make test` the suite; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: setup demo test lint

setup: $(STAMP)

# Rebuilt whenever the lock or the project's metadata changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/digits-zoo baselines --run-dir $(RUN_DIR)
	@echo
	@echo "Next: $(BIN)/digits-zoo leaderboard $(RUN_DIR)"

test: setup
	$(BIN)/ruff format --check zoo search tests benchmarks
	$(BIN)/ruff check zoo search tests benchmarks
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff format zoo search tests benchmarks
	$(BIN)/ruff check --fix zoo search tests benchmarks
