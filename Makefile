# Two entry points, each from a fresh clone: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-lstm bert test test-all test-fast benchmark benchmark-pytorch clean

setup: $(STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Train a small GPT on the bundled plays, print held-out loss, sample text, save to runs/,
# export a SavedModel version to saved_models/gpt-quick/.
demo: setup
	$(BIN)/python examples/train_gpt.py --quick --export saved_models/gpt-quick

demo-lstm: setup
	$(BIN)/python examples/train_lstm.py --quick

# Pre-train a small BERT, fine-tune it to tell comedy / history / tragedy, compare baselines.
bert: setup
	$(BIN)/python examples/pretrain_bert.py --quick
	$(BIN)/python examples/finetune_classifier.py --quick

# The suite CI runs (slow tests included), one worker per core; `make test-all` adds the
# heavy end-to-end tests, `make test-fast` skips the slow ones.
test: setup
	$(BIN)/python -m pytest -n auto -m "not heavy"

test-all: setup
	$(BIN)/python -m pytest -n auto

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

benchmark: setup
	$(BIN)/python benchmarks/train_throughput.py

# tfllm against PyTorch (benchmarks/vs_pytorch.py). PyTorch goes into a venv of its own,
# so the one `make test` uses never has it.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -e ".[bench]"
	touch $@

benchmark-pytorch: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/vs_pytorch.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info .pytest_cache
