# digits-zoo: `make demo` runs the main job, `make test` the suite; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo
DEMO_TRIALS ?= 6
# Minutes of search trials: the search stops at DEMO_TRIALS or here, whichever comes first.
DEMO_MINUTES ?= 1
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: setup demo test lint notebooks

setup: $(STAMP)

# Rebuilt whenever the lock or the project's metadata changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The main job: baselines, a short search, the leaderboard, the winner exported and checked.
demo: setup
	$(BIN)/digits-zoo baselines --run-dir $(RUN_DIR)
	$(BIN)/digits-zoo search --run-dir $(RUN_DIR) --tuner bayesian --max-trials $(DEMO_TRIALS) --budget-minutes $(DEMO_MINUTES)
	$(BIN)/digits-zoo export $(RUN_DIR)
	$(BIN)/python -c "from digits_zoo.runs import load_run; import numpy as np; d = load_run('$(RUN_DIR)').dataset; np.savetxt('$(RUN_DIR)/test_split.csv', np.column_stack([d.x_test, d.y_test]), fmt='%d', delimiter=',')"
	$(BIN)/digits-zoo evaluate $(RUN_DIR)/export/$$($(BIN)/python -c "from digits_zoo.leaderboard import read_leaderboard as r; print(next(x['model'] for x in r('$(RUN_DIR)') if x['kind'] == 'keras'))") --data $(RUN_DIR)/test_split.csv
	$(BIN)/digits-zoo report $(RUN_DIR)
	@echo
	@echo "Files: $(RUN_DIR)/leaderboard.csv, $(RUN_DIR)/trials.csv, $(RUN_DIR)/export/, $(RUN_DIR)/report/index.html, TensorBoard logs in $(RUN_DIR)/logs"
	@echo "Next: $(BIN)/digits-zoo leaderboard $(RUN_DIR)  |  $(BIN)/digits-zoo predict $(RUN_DIR)/export/<model> your_digit.png"

# The study notebooks, executed in place on the full budget (their outputs are committed).
notebooks: setup
	$(BIN)/python notebooks/run.py

test: setup
	$(BIN)/ruff format --check zoo search digits_zoo tests benchmarks notebooks
	$(BIN)/ruff check zoo search digits_zoo tests benchmarks notebooks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff format zoo search digits_zoo tests benchmarks notebooks
	$(BIN)/ruff check --fix zoo search digits_zoo tests benchmarks notebooks
