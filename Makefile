# The two commands of the README. Each creates the virtual environment .venv (or reuses it while
# requirements.txt and pyproject.toml are unchanged), then runs:
#   make demo   build release/ from source/, autograde a small demo class, print the scores
#   make test   every test: unit tests, nbval on source/, the nbgrader pipeline
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test release

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m grader demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# rebuild release/ from source/ after editing a source notebook
release: $(VENV)/.installed
	$(BIN)/python -m grader release
