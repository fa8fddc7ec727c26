# The README's two commands: `make demo` and `make test`. Both create the virtual
# environment on first use (VENV, default .venv) and reinstall only when pyproject.toml
# changes. PYTHON picks the interpreter that creates it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp names the dependency list and this checkout, so a venv kept outside the clone
# (as .ci/run does) is reused while neither changes.
STAMP := $(VENV)/.geofm-$(shell cat pyproject.toml | sha256sum | cut -c1-16)-$(shell echo "$(CURDIR)" | sha256sum | cut -c1-8)

.PHONY: setup demo test test-all lint bench bench-encoders bench-gfm-mini clean

LINTED := geofm gfm_bench tests benchmarks datasets/scripts notebooks

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.geofm-*
	touch $@

# The main job: figures of the bundled samples, then LESS ViT pretrained on them (minutes).
demo: setup
	$(BIN)/geofm demo --out outputs/demo
	$(BIN)/geofm pretrain --config configs/pretrain/quickstart.yaml

# lint, format check and type check first (seconds; mypy's first run, under a minute), then
# the tests; CI runs exactly this. mypy checks the files listed under [tool.mypy] in
# pyproject.toml. `ruff format $(LINTED)` fixes what the format check finds.
test: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -m ''

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/bench_reading.py

# About 40 minutes on 2 CPU cores; writes its table into docs/benchmarks.md.
bench-encoders: setup
	$(BIN)/python benchmarks/encoders.py --record docs/benchmarks.md

# The GFM-Bench mini suite on the bundled samples (random-init LESS ViT-Ti unless ENCODER
# names weights, e.g. ENCODER=less_vit_tiny:encoder.pt); resumes an interrupted run.
ENCODER ?= less_vit_tiny
bench-gfm-mini: setup
	$(BIN)/gfm-bench run --suite mini --encoder $(ENCODER) --resume \
		--output outputs/gfm_bench/mini.csv --report outputs/gfm_bench/mini.md

clean:
	rm -rf outputs .pytest_cache
