# The two commands of the README. Each creates the virtual environment .venv (or reuses it while
# requirements.txt and pyproject.toml are unchanged), then runs:
#   make demo   build release/ from source/, autograde a small demo class (python -m grader autograde), print the scores
#   make test   every test: unit tests, nbval on source/, the nbgrader pipeline
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# The names data set: a read-only copy beside the checkout (../shared/data/names.txt, as on the course's
# machines and CI) is used when there is one; otherwise grader looks in data/ and then downloads it.
SHARED_NAMES := $(abspath ../shared/data/names.txt)
ifneq ($(wildcard $(SHARED_NAMES)),)
export BACKPROP_NINJA_NAMES ?= $(SHARED_NAMES)
endif

.PHONY: demo test release

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

# with bubblewrap: the class command (sandboxed, parallel, with broken and hostile students); without: plain nbgrader
demo: $(VENV)/.installed
	$(BIN)/python -m grader demo $(if $(shell command -v bwrap),--class-command,)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# rebuild release/ from source/ after editing a source notebook
release: $(VENV)/.installed
	$(BIN)/python -m grader release
