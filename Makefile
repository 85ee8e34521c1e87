# Quick start: `make demo` and `make test` both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: atlas-deep atlas-multiclass install demo test bench bench-census atlas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned here (a CPU wheel is available locally); the package declares a range.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/resland reproduce --quick

# -v names each test as it starts (the first ones run `reproduce --quick`, about 2 minutes, before
# any result shows); --durations lists the slowest at the end.
test: $(STAMP)
	$(BIN)/python -m pytest -v --durations=10

# The peers of bench_curvature.py (`.[bench]`); torch stays pinned on the same command line
# (backpack-for-pytorch pulls torchvision, which would otherwise upgrade torch to a CUDA build).
bench: $(STAMP)
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[bench]'
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_curvature.py

bench-census: $(STAMP)
	$(BIN)/python benchmarks/bench_census.py

# The landscape atlas (docs/atlas.md): runs atlas/atlas.toml, resuming from the committed
# atlas/runs.parquet, and writes atlas/runs.parquet and atlas/index.html. On a cluster:
# make atlas ATLAS_ARGS="--executor dask --scheduler tcp://HOST:8786"
atlas: $(STAMP)
	$(BIN)/resland atlas $(ATLAS_ARGS)

atlas-deep: $(STAMP)
	$(BIN)/resland atlas --part deep $(ATLAS_ARGS)

atlas-multiclass: $(STAMP)
	$(BIN)/resland atlas --part multiclass $(ATLAS_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
