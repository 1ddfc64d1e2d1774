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
  .lock              the lock a process takes to use the run (`RunDirectory.lock`)
```

`config.json` and `tokenizer.json` are written when training starts, `model.keras` and
`metrics.json` when it ends; every file is written under a temporary name and renamed into
place (a reader sees the old file or the new one). Training holds the run's lock for as long
as it runs, an export a shared one: a second trainer is refused with the pid of the first.
Nothing outside this module spells these names. This module
imports no TensorFlow: a command can read a run's config before TensorFlow starts; the
methods that load a model or a tokenizer import what they need when called.
"""

import json
import math
import os
import sys
from pathlib import Path

from tfllm.locks import FileLock, LockBusyError, describe_holders


class RunBusyError(LockBusyError):
    """Another process uses the run directory (it holds the run's lock)."""


class DamagedModelError(ValueError):
    """A run's `model.keras` cannot be read and no good checkpoint replaces it."""


def temporary_path(path):
    """Where `path` is written before it is renamed into place (one name per process)."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def write_bytes_atomically(path, data):
    """Writes `data` to `path` through a temporary file: the old file or the new, never half."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def finite_json_values(data):
    """`data` with every non-finite float (NaN, infinity) as None: JSON has no NaN."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: finite_json_values(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json_values(value) for value in data]
    return data


def write_json(path, data):
    """Writes JSON atomically: a reader sees the old file or the new one, never half.
    NaN and infinities are written as `null` (JSON has neither)."""
    text = json.dumps(finite_json_values(data), indent=2, sort_keys=True, allow_nan=False)
    write_bytes_atomically(path, (text + "\n").encode("utf-8"))


def _first_line(error):
    """`"TypeName: the first line of its message"` of an exception."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


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
    LOCK = ".lock"

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
    lock_file = property(lambda self: self.path / self.LOCK)

    def sibling(self, suffix):
        """Another run directory beside this one: `runs/NAME{suffix}`."""
        return RunDirectory(self.path.parent / f"{self.path.name}{suffix}")

    # The lock.
    def lock(self, shared=False, purpose="train"):
        """Takes the run's lock and returns it (a `tfllm.locks.FileLock` on `.lock`).

        Use it as a context manager, or keep it for the life of the process: the kernel
        releases it when the process ends, however it ends. Training takes it exclusively,
        an export shared (exports of one run may run side by side, not beside training);
        a process that holds it already gets it again.

        Args:
            shared: a shared lock (for readers) instead of an exclusive one.
            purpose: a word the refused process reads beside the holder's pid.

        Raises:
            RunBusyError: another process holds the lock; the message names its pid.

        Example:

        >>> with RunDirectory("runs/gpt-quick").lock(shared=True, purpose="export"):
        ...     export_run("runs/gpt-quick")
        """
        lock = FileLock(self.lock_file, shared=shared, purpose=purpose)
        try:
            return lock.acquire()
        except LockBusyError as error:
            raise RunBusyError(
                f"{self.path} is in use: {describe_holders(error.holders)} holds its lock "
                f"({self.LOCK}); wait for it to end, or use another run directory.",
                error.holders) from None
        except PermissionError:
            if shared:  # a read-only run can still be read
                return FileLock(self.lock_file, shared=True)
            raise RuntimeError(f"{self.path} cannot be written: no permission to create "
                               f"its {self.LOCK}.") from None

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
        """Writes `tokenizer.json` atomically; an unchanged file is left as it is."""
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = temporary_path(self.tokenizer_file)
        try:
            tokenizer.save(temporary)
            if not (self.has_tokenizer()
                    and temporary.read_bytes() == self.tokenizer_file.read_bytes()):
                os.replace(temporary, self.tokenizer_file)
        finally:
            temporary.unlink(missing_ok=True)

    # model.keras.
    def load_model(self):
        """The finished model (`model.keras`); files of tfllm's older attention layout
        load too (`tfllm.models.legacy`).

        Raises:
            FileNotFoundError: the run has not finished.
            DamagedModelError: the file is damaged (not a complete archive, a member that
                fails its CRC, an unreadable weights file), in one line.
        """
        if not self.is_finished():
            raise FileNotFoundError(
                f"{self.path} holds no finished model ({self.MODEL}): finish its training "
                "first (running its command again resumes it).")
        damage = self.model_file_damage()
        if damage is None:
            import zipfile

            import tfllm.models  # noqa: F401  (registers the model classes for loading)
            import tfllm.training.schedules  # noqa: F401  (and the learning-rate schedule)
            from tfllm.models import legacy

            try:
                return legacy.load_model(self.model_file)
            except (zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
                damage = _first_line(error)
        raise DamagedModelError(f"{self.model_file} is damaged ({damage}).")

    def model_file_damage(self):
        """Why `model.keras` cannot be read (a zip archive whose every member passes its
        CRC), or None when it looks whole. No TensorFlow."""
        import zipfile

        try:
            with zipfile.ZipFile(self.model_file) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            return f"not a readable .keras archive: {error}"
        return None if bad is None else f"{bad} inside it fails its CRC check"

    def save_model(self, model):
        """Saves `model` as `model.keras`, under a temporary name first (a reader never
        sees half a file); a model with LoRA adapters is saved merged."""
        self.path.mkdir(parents=True, exist_ok=True)
        if getattr(model, "lora_layers", None):
            model = model.merge_lora()
        temporary = self.path / (self.MODEL + ".tmp.keras")
        model.save(temporary)
        os.replace(temporary, self.model_file)

    def load(self, report=None):
        """`(model, tokenizer)`: the finished model, or, for a run that has not finished
        or whose `model.keras` is damaged, the model of its latest good checkpoint (rebuilt
        from the config the checkpoint records, weights loaded, no optimizer state).

        Args:
            report: where a line about a damaged file goes (default: stderr).

        Raises:
            DamagedModelError: `model.keras` is damaged and no good checkpoint is left.
            ValueError: the tokenizer's vocabulary size differs from the model's.
        """
        tokenizer = self.tokenizer()
        report = report or (lambda line: print(line, file=sys.stderr))
        damage = None
        if self.is_finished():
            try:
                model = self.load_model()
            except DamagedModelError as error:
                damage = error
        if not self.is_finished() or damage is not None:
            model = self._latest_checkpoint_model(damage, report)
        self.check_vocabulary_size(model, tokenizer)
        return model, tokenizer

    def _latest_checkpoint_model(self, damage, report):
        """The model of the latest good checkpoint (`damage`: why model.keras is not used)."""
        from tfllm.training.checkpoints import latest_good_checkpoint, load_checkpoint_model

        latest = latest_good_checkpoint(self.checkpoints, report)
        if latest is None and damage is not None:
            raise DamagedModelError(f"{damage} and {self.path} holds no good checkpoint to "
                                    "use instead; train the run again in a new directory.")
        if latest is None:
            raise FileNotFoundError(
                f"{self.path} is not a complete tfllm run directory: missing {self.MODEL} "
                "and it holds no checkpoint.")
        if damage is not None:
            report(f"warning: {damage} Using its checkpoint of step {latest[0]} instead.")
        return load_checkpoint_model(latest[1])

    def check_vocabulary_size(self, model, tokenizer):
        """Refuses a tokenizer whose vocabulary size is not the model's (a tokenizer.json
        of another run would read and write the wrong ids)."""
        expected = getattr(model, "vocabulary_size", None)
        if expected is not None and tokenizer.vocabulary_size != expected:
            raise ValueError(
                f"{self.tokenizer_file} holds {tokenizer.vocabulary_size} tokens but the "
                f"model was built for {expected}: it is not this run's tokenizer.")

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
