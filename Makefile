# Two entry points for a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,docs,text,persist,distributed

.PHONY: install demo test lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Install the local CPU build of torch first: an unpinned torch would pull CUDA wheels.
install: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"

demo: install
	$(BIN)/moensemble compare

lint: install
	$(BIN)/ruff check moensemble tests examples benchmarks scripts

docs: install
	$(BIN)/mkdocs build --strict --site-dir build/site

test: install lint docs
	$(BIN)/python -m pytest -n 2 --durations=15

clean:
	rm -rf $(VENV) build site .pytest_cache
