# The two commands of the README. Each creates the virtual environment .venv (or reuses it while
# requirements.txt and pyproject.toml are unchanged), then runs:
#   make demo   build release/ from source/, autograde a small demo class (python -m grader autograde), print the scores
#   make test   every test: unit tests, nbval on source/, the nbgrader pipeline, browser tests, and
#               strict nbval on the answer keys in notebooks/ (outputs compared)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# The names data set: a read-only copy beside the checkout (../shared/data/names.txt, as on the course's
# machines and CI) is used when there is one; otherwise grader looks in data/ and then downloads it.
SHARED_NAMES := $(abspath ../shared/data/names.txt)
ifneq ($(wildcard $(SHARED_NAMES)),)
export BACKPROP_NINJA_NAMES ?= $(SHARED_NAMES)
endif

.PHONY: demo test test-fast lint release keys

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

# with bubblewrap: the class command (sandboxed, parallel, with broken and hostile students); without: plain nbgrader
demo: $(VENV)/.installed
	$(BIN)/python -m grader demo $(if $(shell command -v bwrap),--class-command,)

# Two pytest sessions: nbval's lax mode (source/, errors only) and its strict mode (notebooks/, outputs
# compared after notebooks/nbval-sanitize.cfg) cannot share one. Both run the notebooks in grading mode
# (conftest.py): Exercise 4 trains 5,000 steps, while its answer key shows the full 200,000-step run; the
# sanitize file masks what depends on the run's length, and says so.
# The strict session runs twice, with torch on 1 thread and on 2: a key whose text depended on the
# thread count (float32 sums in another order) would fail one of them.
# Each session prints its 25 slowest tests and writes a JUnit XML report to build/ (where CI's time goes:
# docs/maintainers.md keeps the table).
STRICT := -o addopts=-ra --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval-sanitize.cfg notebooks
# The first session runs on WORKERS processes (pytest-xdist; conftest.py keeps each module on one worker).
WORKERS ?= 2
test: $(VENV)/.installed lint
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --durations=25 --junitxml=build/junit-tests.xml
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(STRICT) --durations=25 --junitxml=build/junit-keys-1-thread.xml
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest $(STRICT) --durations=25 --junitxml=build/junit-keys-2-threads.xml

# the quick loop while developing: the tests not marked slow (no nbgrader run, sandbox, browser or training)
test-fast: $(VENV)/.installed lint
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile -m "not slow" tests

# ruff, pinned in requirements.txt: the whole tree lints and is formatted (notebooks excluded: pyproject.toml)
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# after editing a source notebook: rebuild release/ and the answer keys in notebooks/ from source/
release: $(VENV)/.installed
	$(BIN)/python -m grader release
	$(BIN)/python -m grader keys

# only the answer keys (e.g. `make keys NAMES=02_fused_cross_entropy`)
keys: $(VENV)/.installed
	$(BIN)/python -m grader keys $(NAMES)
