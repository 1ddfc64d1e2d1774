"""A run directory: the one owner of every path and file of a run.

```
runs/NAME/
  config.json        how the run was made: "model_class", "model" (its config),
                     "training" (the TrainingConfig), and what the job adds ("job",
                     "class_names", "pretrained", "init_from", ...)
  tokenizer.json     the tokenizer, any kind in one file ("format" says which: characters,
                     byte-level BPE vocabulary + merges, SentencePiece proto, word pieces)
  checkpoints/       step-NNNNNNNN/ folders that training resumes from
  logs/              TensorBoard logs (train/, validation/, samples/, evaluation/, hparams)
  history.csv        per-epoch losses (appended to when a run resumes)
  model.keras        the trained model, written when training ends
  metrics.json       the held-out figures measured at the end
  comparison.json    a classifier run's baselines
```

`config.json` and `tokenizer.json` are written when training starts, `model.keras` and
`metrics.json` when it ends. Nothing outside this module spells these names. This module
imports no TensorFlow: a command can read a run's config before TensorFlow starts; the
methods that load a model or a tokenizer import what they need when called.
"""

import json
import os
from pathlib import Path


def write_json(path, data):
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


class RunDirectory:
    """The files of one run (`runs/NAME/`), read and written through one object.

    Args:
        path: the run directory (it need not exist yet).

    Example:

    >>> run = RunDirectory("runs/gpt-quick")
    >>> run.is_finished(), run.model_class()
    (True, 'GPT')
    >>> model, tokenizer = run.load()
    """

    CONFIG = "config.json"
    TOKENIZER = "tokenizer.json"
    CHECKPOINTS = "checkpoints"
    LOGS = "logs"
    HISTORY = "history.csv"
    MODEL = "model.keras"
    METRICS = "metrics.json"
    COMPARISON = "comparison.json"

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunDirectory({str(self.path)!r})"

    def __fspath__(self):
        return os.fspath(self.path)

    @property
    def name(self):
        return self.path.name

    # Paths.
    config_file = property(lambda self: self.path / self.CONFIG)
    tokenizer_file = property(lambda self: self.path / self.TOKENIZER)
    checkpoints = property(lambda self: self.path / self.CHECKPOINTS)
    logs = property(lambda self: self.path / self.LOGS)
    history_file = property(lambda self: self.path / self.HISTORY)
    model_file = property(lambda self: self.path / self.MODEL)
    metrics_file = property(lambda self: self.path / self.METRICS)
    comparison_file = property(lambda self: self.path / self.COMPARISON)

    def sibling(self, suffix):
        """Another run directory beside this one: `runs/NAME{suffix}`."""
        return RunDirectory(self.path.parent / f"{self.path.name}{suffix}")

    # State.
    def exists(self):
        return self.path.is_dir()

    def is_finished(self):
        """Whether training finished (the model was saved)."""
        return self.model_file.is_file()

    def has_tokenizer(self):
        return self.tokenizer_file.is_file()

    # config.json.
    def read_config(self):
        """`config.json` as a dict.

        Raises:
            FileNotFoundError: the directory or its config does not exist.
            ValueError: the config is not a JSON object.
        """
        self._require_directory()
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a complete tfllm run directory: missing {self.CONFIG}.")
        try:
            config = json.loads(self.config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.config_file} cannot be read ({error}).") from None
        if not isinstance(config, dict):
            raise ValueError(f"{self.config_file} does not hold a JSON object.")
        return config

    def write_config(self, config):
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_file, config)

    def model_class(self):
        """The class name of the run's model (`"GPT"`, `"BertClassifier"`, ...)."""
        return self.read_config().get("model_class")

    def model_settings(self):
        """The run's model config (`config.json`'s `"model"`)."""
        return self.read_config().get("model", {})

    def class_names(self):
        """A classifier run's class names, in class-id order."""
        names = self.read_config().get("class_names")
        if not names:
            raise ValueError(f"{self.path} is not a classifier run: its {self.CONFIG} names "
                             "no classes.")
        return list(names)

    def is_classifier(self):
        return bool(self.read_config().get("class_names"))

    # metrics.json and comparison.json.
    def write_metrics(self, metrics):
        write_json(self.metrics_file, metrics)

    def read_metrics(self):
        return json.loads(self.metrics_file.read_text(encoding="utf-8"))

    def write_comparison(self, results):
        write_json(self.comparison_file, results)

    # tokenizer.json.
    def tokenizer(self):
        """The run's tokenizer (character, BPE, SentencePiece or WordPiece: whichever the
        file holds)."""
        self._require_tokenizer()
        from tfllm.data.tokenizer_files import load_tokenizer

        return load_tokenizer(self.tokenizer_file)

    def read_tokenizer_json(self):
        """`tokenizer.json` as a dict (its vocabulary among it), without TensorFlow."""
        return json.loads(self.tokenizer_file.read_text(encoding="utf-8"))

    def save_tokenizer(self, tokenizer):
        self.path.mkdir(parents=True, exist_ok=True)
        tokenizer.save(self.tokenizer_file)

    # model.keras.
    def load_model(self):
        """The finished model (`model.keras`); files of tfllm's older attention layout
        load too (`tfllm.models.legacy`)."""
        if not self.is_finished():
            raise FileNotFoundError(
                f"{self.path} holds no finished model ({self.MODEL}): finish its training "
                "first (running its command again resumes it).")
        import tfllm.models  # noqa: F401  (registers the model classes for loading)
        import tfllm.training.schedules  # noqa: F401  (and the learning-rate schedule)
        from tfllm.models import legacy

        return legacy.load_model(self.model_file)

    def save_model(self, model):
        """Saves `model` as `model.keras`, under a temporary name first (a reader never
        sees half a file); a model with LoRA adapters is saved merged."""
        self.path.mkdir(parents=True, exist_ok=True)
        if getattr(model, "lora_layers", None):
            model = model.merge_lora()
        temporary = self.path / (self.MODEL + ".tmp.keras")
        model.save(temporary)
        os.replace(temporary, self.model_file)

    def load(self):
        """`(model, tokenizer)`: the finished model, or, for a run that has not finished,
        the model of its latest checkpoint (rebuilt from the config the checkpoint
        records, weights loaded, no optimizer state)."""
        tokenizer = self.tokenizer()
        if self.is_finished():
            return self.load_model(), tokenizer
        from tfllm.training.checkpoints import list_checkpoints, load_checkpoint_model

        checkpoints = list_checkpoints(self.checkpoints)
        if not checkpoints:
            raise FileNotFoundError(
                f"{self.path} is not a complete tfllm run directory: missing {self.MODEL} "
                "and it holds no checkpoint.")
        return load_checkpoint_model(checkpoints[-1][1]), tokenizer

    def require(self):
        """Returns this run; raises FileNotFoundError, naming the path and the missing file,
        if it is no folder or has no tokenizer (what `load` needs first; no TensorFlow)."""
        self._require_tokenizer()
        return self

    def _require_tokenizer(self):
        self._require_directory()
        if not self.has_tokenizer():
            raise FileNotFoundError(
                f"{self.path} is not a complete tfllm run directory: missing {self.TOKENIZER}.")

    def _require_directory(self):
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path} is not a run directory: it does not exist.")
