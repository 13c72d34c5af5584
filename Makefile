# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench docs clean

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

lint: $(VENV)/.test-deps
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

test: $(VENV)/.test-deps lint
	$(PY) -m pytest -n 2 -q tests gradchain --nbmake notebooks

# The documentation site, notebooks executed, warnings as errors: docs/_build/html/index.html.
docs: $(VENV)/.test-deps
	$(PY) -m sphinx -b html -W --keep-going docs docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis .mypy_cache .import_linter_cache
