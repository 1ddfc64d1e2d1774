"""A run directory: everything needed to generate from or evaluate a trained model.

```
runs/NAME/
  config.json        how the run was made (model and training settings)
  tokenizer.json     the tokenizer's vocabulary (characters or word pieces)
  checkpoints/       step-NNNNNNNN/ folders that training resumes from
  logs/              TensorBoard logs (train/, validation/, samples/, hparams)
  history.csv        per-epoch losses (appended to when a run resumes)
  model.keras        the trained model (architecture + weights + optimizer)
  metrics.json       the held-out figures measured at the end
```

Config and tokenizer are written when training starts, `model.keras` and
`metrics.json` when it ends; `load_run` falls back to the latest checkpoint
of a run that has not finished.
"""

import dataclasses
import json
import os
from pathlib import Path


from tfllm.data.tokenizer_files import load_tokenizer

MODEL_FILE = "model.keras"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def write_json(path, data):
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def save_run(directory, model, tokenizer, config=None, metrics=None):
    """Saves model, tokenizer, config and metrics into `directory` (created if needed).

    Args:
        directory: the run directory, e.g. `runs/gpt`.
        model: a Keras model; one with LoRA adapters is saved merged
            (`TrainableModel.merge_lora`).
        tokenizer: a `CharacterTokenizer` or `WordPieceTokenizer`.
        config: a dict or dataclass describing the run (written as JSON).
        metrics: a dict of final figures (written as JSON).

    Returns:
        The run directory as a `Path`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if getattr(model, "lora_layers", None):
        # The finished model is a plain one, the adapters merged into its kernels.
        model = model.merge_lora()
    # Save to a temporary name first, so an interrupted save never leaves a
    # truncated model.keras behind in place of a good one.
    temporary = directory / (MODEL_FILE + ".tmp.keras")
    model.save(temporary)
    os.replace(temporary, directory / MODEL_FILE)
    tokenizer.save(directory / TOKENIZER_FILE)
    if config is not None:
        if dataclasses.is_dataclass(config):
            config = dataclasses.asdict(config)
        write_json(directory / CONFIG_FILE, config)
    if metrics is not None:
        write_json(directory / METRICS_FILE, metrics)
    return directory


def fine_tuning_start(directory, lora_rank=None):
    """What fine-tuning a finished run starts from: `(create_model, tokenizer, config)`.

    `create_model()` loads the run's `model.keras` (call it in the strategy's scope, as
    `train_and_evaluate` does) and, with `lora_rank`, freezes it and adds LoRA adapters
    to its attention's query and value projections (`TrainableModel.enable_lora`).
    `config` is the run's `config.json` (its `"model"` settings among them).

    Raises:
        FileNotFoundError: `directory` is not a finished run (no model.keras).
        ValueError: `lora_rank` is given for a model without attention.
    """
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} holds no finished model ({MODEL_FILE}) to start from: finish its "
            "training first (running its command again resumes it).")
    tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if lora_rank is not None and config.get("model_class") != "GPT":
        raise ValueError(
            f"LoRA adapts attention projections; {directory} holds a "
            f"{config.get('model_class')}, which has none.")

    def create_model():
        model, _ = load_run(directory)
        if lora_rank is not None:
            model.enable_lora(lora_rank)
        return model

    return create_model, tokenizer, config


def load_run(directory):
    """Loads `(model, tokenizer)` from a run directory.

    The finished model (`model.keras`) when there is one, else the model of
    the latest checkpoint of an unfinished run (rebuilt from `config.json`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a run directory: it does not exist.")
    if not (directory / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} is not a complete tfllm run directory: missing {TOKENIZER_FILE}."
        )
    tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    import tfllm.models  # noqa: F401  (registers the model classes for loading)
    from tfllm.models import legacy

    if (directory / MODEL_FILE).is_file():
        return legacy.load_model(directory / MODEL_FILE), tokenizer
    from tfllm.training.checkpoints import list_checkpoints, load_checkpoint_model

    checkpoints = list_checkpoints(directory / "checkpoints")
    if not checkpoints:
        raise FileNotFoundError(
            f"{directory} is not a complete tfllm run directory: missing {MODEL_FILE} "
            "and it holds no checkpoint."
        )
    return load_checkpoint_model(checkpoints[-1][1]), tokenizer
