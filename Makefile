# Two entry points, each from a fresh clone: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-lstm bert test test-fast benchmark clean

setup: $(STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Train a small GPT on the bundled plays, print held-out loss, sample text, save to runs/.
demo: setup
	$(BIN)/python examples/train_gpt.py --quick

demo-lstm: setup
	$(BIN)/python examples/train_lstm.py --quick

# Pre-train a small BERT, fine-tune it to tell comedy / history / tragedy, compare baselines.
bert: setup
	$(BIN)/python examples/pretrain_bert.py --quick
	$(BIN)/python examples/finetune_classifier.py --quick

# The whole suite (slow tests included); `make test-fast` skips tests marked slow.
test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

benchmark: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
