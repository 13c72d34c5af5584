# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench bench-gpu docs test-oldest clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.test-deps: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test]'
	touch $@

$(VENV)/.demo-deps: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[examples]'
	touch $@

$(VENV)/.bench-deps: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[bench]'
	touch $@

demo: $(VENV)/.demo-deps
	$(PY) -m gradchain demo

bench: $(VENV)/.bench-deps
	$(PY) -m gradchain bench --out benchmarks/results

# The GPU set alone (bench-gpu.*), in the current Python: on a GPU machine where jax with
# CUDA, flax and optax are installed, nothing else (no venv, no install).
bench-gpu:
	PYTHONPATH=. $(PYTHON) -m gradchain bench --gpu --out benchmarks/results

lint: $(VENV)/.test-deps
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

# Compiled programs are kept on disk (.venv/jax-cache) for every process of the run,
# notebooks and subprocesses included: many tests compile one program in fresh closures.
# The benchmark harness turns the cache off around the compilations it times.
TEST_ENV := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/$(VENV)/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0

test: $(VENV)/.test-deps lint
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist worksteal -q --durations=10 --nbmake notebooks tests gradchain

# The documentation site, notebooks executed, warnings as errors: docs/_build/html/index.html.
docs: $(VENV)/.test-deps
	$(PY) -m sphinx -b html -W --keep-going docs docs/_build/html

# The suite against the lowest jax, jaxlib, chex, flax, optax and orbax that
# pyproject.toml admits (pinned by tools/lowest_pins.py), in a venv of its own.
OLDEST := .venv-oldest
$(OLDEST)/.deps: pyproject.toml tools/lowest_pins.py
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --upgrade pip
	$(OLDEST)/bin/python tools/lowest_pins.py > $(OLDEST)/constraints.txt
	$(OLDEST)/bin/python -m pip install -c $(OLDEST)/constraints.txt -e '.[test]'
	touch $@

test-oldest: $(OLDEST)/.deps
	$(OLDEST)/bin/python -m pip list 2>/dev/null | grep -E '^(jax|jaxlib|chex|flax|optax|orbax-checkpoint) '
	$(OLDEST)/bin/python -m pytest -n 2 -q tests gradchain --ignore=tests/test_docs.py

clean:
	rm -rf $(VENV) $(OLDEST) build *.egg-info .pytest_cache .ruff_cache .hypothesis .mypy_cache .import_linter_cache
