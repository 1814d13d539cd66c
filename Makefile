# Two entry points for a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,docs,text,persist,distributed,parquet,boost

.PHONY: install system-deps demo test lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The editable install sees source edits without reinstalling: install again only when
# pyproject.toml (dependencies, entry points) or the extras change. The stamp's name holds the
# extras, so `make test EXTRAS=...` with other extras installs them.
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

install: $(STAMP)

# Install the local CPU build of torch first: an unpinned torch would pull CUDA wheels.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/moensemble compare

lint: install
	$(BIN)/ruff check moensemble tests examples benchmarks scripts

docs: install
	$(BIN)/mkdocs build --strict --site-dir build/site

# The distributed-search tests start a private PostgreSQL server on loopback; install
# Debian's server when it is absent and we may (outside CI those tests skip without it).
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null); } || \
	  echo "note: no PostgreSQL server found; its tests will be skipped"

test: system-deps install lint docs
	$(BIN)/python -m pytest -n 2 --durations=15

clean:
	rm -rf $(VENV) build site .pytest_cache
