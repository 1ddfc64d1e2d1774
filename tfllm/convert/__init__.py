"""Hugging Face checkpoint folders → tfllm run directories (`tfllm convert DIR --run-dir RUN`).

`convert_checkpoint("gpt2-folder", "runs/gpt2")` reads a folder as `save_pretrained` writes
it (`config.json`, `model.safetensors`, the tokenizer's files; torch is never needed and
nothing downloads) and writes a finished run: `config.json`, the tokenizer, `model.keras`
and `metrics.json`, through `tfllm.runs.RunDirectory`. `tfllm generate`, `tfllm export`,
`tfllm train --init-from RUN` (GPT-2; LoRA too) and `--pretrained RUN` (BERT, for the
classifier) take the run as they take a trained one, and
`keras.saving.load_model(RUN/model.keras)` loads it after `import tfllm`.

- `model_type: gpt2` → `tfllm.models.GPT` with GPT-2's byte-level BPE tokenizer
  (`gpt2.py`);
- `model_type: bert` → `BertMaskedLM(BertEncoder(...))` in BERT's original layout, with its
  WordPiece tokenizer (`bert.py`).

`checkpoint_folder.py` reads the folder and checks every weight's shape against its config.
"""

import os

from tfllm.convert.checkpoint_folder import CheckpointFolder

#: The Hugging Face `model_type`s converted, and the model class each becomes.
SUPPORTED_MODEL_TYPES = {"bert": "BertMaskedLM", "gpt2": "GPT"}
#: The tokenizer files each model type needs, and what they are.
TOKENIZER_FILES = {"gpt2": {"vocab.json": "GPT-2's tokenizer vocabulary",
                            "merges.txt": "GPT-2's tokenizer merges"},
                   "bert": {"vocab.txt": "BERT's WordPiece vocabulary"}}


def check_checkpoint_folder(source):
    """The `CheckpointFolder` of `source` if it is a complete folder of a converted model
    type (no TensorFlow: the command line calls it before TensorFlow loads).

    Raises:
        FileNotFoundError: no folder, or no `config.json`, weights or tokenizer file in it
            (named).
        ValueError: a `model_type` tfllm does not convert (named with the ones it does).
    """
    folder = CheckpointFolder(source)
    if folder.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{folder.path} holds a {folder.model_type!r} model; tfllm converts "
            f"{' and '.join(repr(kind) for kind in sorted(SUPPORTED_MODEL_TYPES))} only.")
    folder.weight_files()
    for name, what in TOKENIZER_FILES[folder.model_type].items():
        folder.require(name, what)
    return folder


def convert_checkpoint(source, run_directory):
    """Converts the Hugging Face folder `source` into the run directory `run_directory`.

    Args:
        source: a folder `save_pretrained` wrote (GPT-2 or BERT).
        run_directory: the new run's folder; it must not hold a run already.

    Returns:
        `(RunDirectory, report)`: the finished run and a dict of what was converted (also
        its `metrics.json`).

    Raises:
        FileNotFoundError: the folder or one of its files is missing (named).
        ValueError: an unsupported `model_type`, a config that disagrees with the weights
            (the weight named), or a run directory that already holds a run.
    """
    from tfllm.runs import RunDirectory

    folder = check_checkpoint_folder(source)
    run = RunDirectory(run_directory)
    if run.exists() and any(path != run.lock_file for path in run.path.iterdir()):
        raise ValueError(f"{run.path} is not empty; convert into a new run directory.")
    with run.lock(purpose="convert"):  # (the command line holds it already: re-entry)
        return _convert_into(folder, run)


def _convert_into(folder, run):
    notes = {}
    if folder.model_type == "gpt2":
        from tfllm.convert.gpt2 import convert_gpt2

        model, tokenizer, settings = convert_gpt2(folder)
    else:
        from tfllm.convert.bert import convert_bert

        model, tokenizer, settings, notes = convert_bert(folder)
    report = {"converted_from": os.path.abspath(folder.path),
              "model_type": folder.model_type,
              "parameters": int(model.count_params()), **notes}
    run.write_config({"model_class": type(model).__name__, "model": settings,
                      "job": "convert", "converted_from": report["converted_from"],
                      "source_config": folder.config})
    run.save_tokenizer(tokenizer)
    run.save_model(model)
    run.write_metrics(report)
    return run, report


__all__ = ["SUPPORTED_MODEL_TYPES", "CheckpointFolder", "check_checkpoint_folder",
           "convert_checkpoint"]
