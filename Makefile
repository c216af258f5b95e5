# dataselect: `make demo` runs the pipeline on the built-in example, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch; a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint docs browser bench bench-peer-venv bench-ray-job clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[embed,dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dataselect example demo/data --limit 2000
	$(BIN)/dataselect run configs/demo.yaml
	$(BIN)/dataselect report demo/run

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

# docs/cli.md: every command's --help (tests/test_docs.py fails when it is stale)
docs: $(STAMP)
	$(BIN)/python -m dataselect.cli.reference > docs/cli.md

# The report test renders report.html in headless Chromium (Debian's package). Installed here
# when missing and apt-get can run; otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null) ; } \
	  || echo "chromium not installed: the report rendering test will skip"

test: lint browser
	$(BIN)/python -m pytest -q

bench: $(STAMP) bench-peer-venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python scripts/bench/embed.py
	$(BIN)/python scripts/bench/embed_backends.py
	$(BIN)/python scripts/bench/padding.py
	$(BIN)/python scripts/bench/parquet_codecs.py
	$(BIN)/python scripts/bench/cluster.py
	$(BIN)/python scripts/bench/assign_parts.py
	$(BIN)/python scripts/bench/selection_quality.py
	$(BIN)/python scripts/bench/selection_sensitivity.py
	$(BIN)/python scripts/bench/adaptive.py
	$(BIN)/python scripts/bench/scorers.py
	$(BIN)/python scripts/bench/report.py
	$(BIN)/python scripts/bench/dedup.py
	$(BIN)/python scripts/bench/dry_run.py
	$(BIN)/python scripts/bench/crash.py
	$(BIN)/python scripts/bench/crash.py --overlap
	$(BIN)/python scripts/bench/verify_cost.py
	$(BIN)/python scripts/bench/scale.py
	$(BIN)/python scripts/bench/workers.py
	$(MAKE) bench-ray-job

# sentence-transformers' own ONNX backend needs transformers < 4.58: a venv of its own, used
# by scripts/bench/embed_backends.py only
PEER := scripts/bench/.venv-peer
bench-peer-venv: $(PEER)/installed
$(PEER)/installed: scripts/bench/peer-requirements.txt
	python3 -m venv $(PEER)
	$(PEER)/bin/python -m pip install --quiet torch==2.13.0
	$(PEER)/bin/python -m pip install --quiet -r scripts/bench/peer-requirements.txt
	touch $@

# every stage as a `ray job submit` job on a one-node Ray head: needs the job server
bench-ray-job: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[ray-cluster]'
	$(BIN)/python scripts/bench/ray_job.py

clean:
	rm -rf demo .pytest_cache .ruff_cache
