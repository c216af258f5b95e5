# dataselect: `make demo` runs the pipeline on the built-in example, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch; a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[embed,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dataselect example demo/data --limit 2000
	$(BIN)/dataselect run configs/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python scripts/bench/embed.py
	$(BIN)/python scripts/bench/parquet_codecs.py
	$(BIN)/python scripts/bench/cluster.py
	$(BIN)/python scripts/bench/selection_quality.py
	$(BIN)/python scripts/bench/adaptive.py
	$(BIN)/python scripts/bench/scorers.py

clean:
	rm -rf demo .pytest_cache .ruff_cache
