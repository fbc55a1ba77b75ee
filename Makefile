# Quick start: `make demo` and `make test` on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on disk; an open range would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test lint typecheck demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml studies/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q "$(TORCH_PIN)" -e ".[all]"
	$(PY) -m pip install -q --no-deps -e studies  # the studies (docs/evidence.md); their dependencies are in [all]
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# The habits of the code base (pyproject.toml, [tool.ruff] and [tool.mypy]).
LINTED := src studies/src tests benchmarks
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(VENV)/bin/iidfusion demo

bench: $(STAMP)
	$(PY) benchmarks/bench_ot.py
	$(VENV)/bin/iidfusion bench wasserstein
	$(VENV)/bin/iidfusion bench train

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info studies/src/*.egg-info studies/build .pytest_cache
