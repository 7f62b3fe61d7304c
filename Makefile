# `make test` and `make demo` set everything up on a fresh machine.
# The CPU build of torch is installed first, pinned: an unpinned torch (or a
# range, before torch is installed) makes pip fetch a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# WITH_SCATTER=1 also builds the optional torch-scatter backend (7-8 min).
WITH_SCATTER ?= 0
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: test demo install scatter bench docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install torch==$(TORCH_VERSION)
	touch $@

# The test suite runs the examples (Lightning) and builds the docs, so it
# needs all three extras.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install -e '.[test,examples,docs]'
	touch $@

$(VENV)/.installed-demo: pyproject.toml $(VENV)/.torch
	$(PIP) install -e '.[demo]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -e '.[dev]'
	touch $@

install: $(VENV)/.installed-test

scatter: $(VENV)/.torch
	$(BIN)/python -c "import torch_scatter" 2>/dev/null || \
		$(PIP) install --no-build-isolation 'torch-scatter>=2.1'

ifeq ($(WITH_SCATTER),1)
test: scatter
endif
# The suite runs on every core (pytest-xdist): its slow tests (trainings,
# subprocesses, compiles, Sphinx builds) each use one thread. PYTEST_WORKERS=0
# runs it in one process.
PYTEST_WORKERS ?= auto
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The paper's first experiment (examples/digit_sum_text.py): generate the
# sets, train with Lightning, print the accuracy per set size. It needs only
# the `demo` extra (the `examples` extra less scikit-learn).
demo: $(VENV)/.installed-demo
	$(BIN)/python examples/digit_sum_text.py

docs: $(VENV)/.installed-test
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build
