"""Saving and loading whole runs, and starting a fine-tuning run from a finished one.

The run directory's files and their names belong to `tfllm.runs.RunDirectory`; these are
the functions training jobs and commands call with it.
"""

import dataclasses

from tfllm.runs import RunDirectory, write_json  # noqa: F401  (write_json: used by jobs)


def save_run(directory, model, tokenizer, config=None, metrics=None):
    """Saves model, tokenizer, config and metrics into `directory` (created if needed).

    Args:
        directory: the run directory, e.g. `runs/gpt`, or a `RunDirectory`.
        model: a Keras model; one with LoRA adapters is saved merged
            (`TrainableModel.merge_lora`).
        tokenizer: any tfllm tokenizer (`tfllm.data.load_tokenizer` reads it back).
        config: a dict or dataclass describing the run (written as JSON).
        metrics: a dict of final figures (written as JSON).

    Returns:
        The run directory as a `Path`.
    """
    run = RunDirectory(directory)
    run.save_model(model)
    run.save_tokenizer(tokenizer)
    if config is not None:
        run.write_config(dataclasses.asdict(config) if dataclasses.is_dataclass(config)
                         else config)
    if metrics is not None:
        run.write_metrics(metrics)
    return run.path


def load_run(directory):
    """Loads `(model, tokenizer)` from a run directory (`RunDirectory.load`).

    The finished model (`model.keras`) when there is one, else the model of the latest
    checkpoint of an unfinished run (rebuilt from the model config that checkpoint
    records).
    """
    return RunDirectory(directory).load()


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
    run = RunDirectory(directory)
    config = run.read_config()
    if not run.is_finished():
        raise FileNotFoundError(
            f"{run.path} holds no finished model ({run.MODEL}) to start from: finish its "
            "training first (running its command again resumes it).")
    tokenizer = run.tokenizer()
    if lora_rank is not None and config.get("model_class") != "GPT":
        raise ValueError(
            f"LoRA adapts attention projections; {run.path} holds a "
            f"{config.get('model_class')}, which has none.")

    def create_model():
        model = run.load_model()
        run.check_vocabulary_size(model, tokenizer)
        if lora_rank is not None:
            model.enable_lora(lora_rank)
        return model

    return create_model, tokenizer, config
