"""A run directory: everything needed to generate from or evaluate a trained model.

```
runs/NAME/
  model.keras        the model (architecture + weights + optimizer)
  tokenizer.json     the tokenizer's vocabulary
  config.json        how the run was made (model and training settings)
  metrics.json       the held-out figures measured at the end
```
"""

import dataclasses
import json
import os
from pathlib import Path

import keras

from tfllm.data.tokenizers import CharacterTokenizer

MODEL_FILE = "model.keras"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def _write_json(path, data):
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def save_run(directory, model, tokenizer, config=None, metrics=None):
    """Saves model, tokenizer, config and metrics into `directory` (created if needed).

    Args:
        directory: the run directory, e.g. `runs/gpt`.
        model: a Keras model.
        tokenizer: a `CharacterTokenizer`.
        config: a dict or dataclass describing the run (written as JSON).
        metrics: a dict of final figures (written as JSON).

    Returns:
        The run directory as a `Path`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Save to a temporary name first, so an interrupted save never leaves a
    # truncated model.keras behind in place of a good one.
    temporary = directory / (MODEL_FILE + ".tmp.keras")
    model.save(temporary)
    os.replace(temporary, directory / MODEL_FILE)
    tokenizer.save(directory / TOKENIZER_FILE)
    if config is not None:
        if dataclasses.is_dataclass(config):
            config = dataclasses.asdict(config)
        _write_json(directory / CONFIG_FILE, config)
    if metrics is not None:
        _write_json(directory / METRICS_FILE, metrics)
    return directory


def load_run(directory):
    """Loads `(model, tokenizer)` from a run directory written by `save_run`."""
    directory = Path(directory)
    missing = [name for name in (MODEL_FILE, TOKENIZER_FILE) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory} is not a complete tfllm run directory: missing {', '.join(missing)}."
        )
    model = keras.saving.load_model(directory / MODEL_FILE)
    tokenizer = CharacterTokenizer.load(directory / TOKENIZER_FILE)
    return model, tokenizer
