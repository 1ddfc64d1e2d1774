"""Checkpoints that training resumes from, even after SIGKILL.

A checkpoint is a folder `checkpoints/step-00000300/` holding

- `weights.weights.h5`: the model's weights *and* the optimizer's state
  (Keras saves the compiled optimizer's variables with the model, among
  them `iterations`, which drives the learning-rate schedule);
- `state.json`: the global step, the epoch, the position in the training
  data (batches consumed), the model's config and the sha256 of every other
  file of the checkpoint, which `restore_checkpoint` verifies before it
  loads anything;
- `lora.npz` for a model with LoRA adapters: each adapted layer's frozen kernel
  and its two adapter matrices. Keras saves such a layer's kernel with the
  adapters merged in and zeroes the adapters when it loads one, which would
  leave both at zero, where they get no gradient: training would stop learning.

It is written under a temporary name and renamed into place, so a
checkpoint folder without the `.tmp` suffix is complete: a process killed
while saving leaves at most a `.tmp` folder, which is ignored and removed by
the next save. A damaged checkpoint (bytes zeroed, truncated or overwritten)
fails its checksums; `restore_latest` and `latest_good_checkpoint` report it
in one line and take the one before it. Only the chief worker writes under multi-worker training;
other workers write to a scratch folder that is deleted again (every worker
must take part in saving, as `tf.distribute` expects).
"""

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np

from tfllm.models import legacy
from tfllm.training.strategy import is_chief

WEIGHTS_FILE = "weights.weights.h5"
STATE_FILE = "state.json"
LORA_FILE = "lora.npz"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})$")


class CheckpointError(ValueError):
    """A checkpoint is corrupted or does not fit the model being trained."""


class CheckpointDamagedError(CheckpointError):
    """A checkpoint's files are damaged: unreadable, missing or not their checksums."""


def file_sha256(path):
    """The sha256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_checkpoints(directory):
    """Complete checkpoint folders in `directory`, oldest first, as `(step, path)`."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _comparable(config):
    """A model config as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(config))


def save_checkpoint(directory, model, step, epoch, keep=3):
    """Writes a checkpoint of `model` (and its optimizer) at `step`; keeps the last `keep`.

    Returns:
        The checkpoint's folder (a scratch folder on non-chief workers).
    """
    directory = Path(directory)
    chief = is_chief(model.distribute_strategy)
    if chief:
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        final = directory / f"step-{step:08d}"
        temporary = directory / f"step-{step:08d}.tmp"
    else:
        temporary = Path(tempfile.mkdtemp(prefix="tfllm-checkpoint-"))
    temporary.mkdir(parents=True, exist_ok=True)
    model.save_weights(temporary / WEIGHTS_FILE)
    lora_layers = _lora_layers(model)
    if lora_layers:
        np.savez(temporary / LORA_FILE, *[
            keras.ops.convert_to_numpy(variable) for layer in lora_layers
            for variable in (layer._kernel, layer.lora_kernel_a, layer.lora_kernel_b)])
    state = {
        "step": int(step),
        "epoch": int(epoch),
        "batches_consumed": int(step),
        # Differs from `step` under mixed_float16, whose loss scaling skips the
        # updates of steps with non-finite gradients.
        "optimizer_iterations": (
            int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            if model.optimizer is not None else None
        ),
        "model_class": type(model).__name__,
        "model_config": _comparable(model.get_config()),
        "lora_layers": _relative_paths(lora_layers),
        "checksums": {path.name: file_sha256(path) for path in sorted(temporary.iterdir())
                      if path.is_file() and path.name != STATE_FILE},
    }
    (temporary / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    if not chief:
        shutil.rmtree(temporary, ignore_errors=True)
        return temporary
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    for _, old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path):
    """Checks a checkpoint's files against the checksums its `state.json` records (a
    checkpoint written before checksums: that its weights are a readable HDF5 file);
    returns its state dict.

    Raises:
        CheckpointDamagedError: a file is missing, unreadable or not its checksum.
    """
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointDamagedError(
            f"checkpoint {path} is corrupted: cannot read its {STATE_FILE} ({error})."
        ) from None
    checksums = state.get("checksums")
    for name, expected in (checksums or {}).items():
        if not (path / name).is_file():
            raise CheckpointDamagedError(f"checkpoint {path} is corrupted: {name} is missing.")
        if file_sha256(path / name) != expected:
            raise CheckpointDamagedError(
                f"checkpoint {path} is corrupted: {name} does not match its recorded sha256.")
    if checksums is None:
        try:
            with h5py.File(path / WEIGHTS_FILE, "r"):
                pass
        except OSError as error:
            raise CheckpointDamagedError(
                f"checkpoint {path} is corrupted: {WEIGHTS_FILE} is not a readable HDF5 "
                f"file ({error})."
            ) from None
    return state


def restore_checkpoint(path, model):
    """Loads a checkpoint into a built, compiled `model`; returns its state dict.

    The checkpoint's files are verified first (`verify_checkpoint`): a damaged one leaves
    the model as it was.

    Raises:
        CheckpointDamagedError: the checkpoint is unreadable or fails its checksums.
        CheckpointError: it was written by a model of another class or configuration.
    """
    path = Path(path)
    state = verify_checkpoint(path)
    step = int(state["step"])
    differences = _config_differences(state, model)
    if differences:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({'; '.join(differences)}). "
            "Resume with the settings the run was started with, or start a new run directory."
        )
    weights = path / WEIGHTS_FILE
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        legacy.load_weights(model, weights)
        _restore_lora(path, model)
    except (ValueError, KeyError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} could not be loaded: {error}") from None
    expected = state.get("optimizer_iterations", step)
    if model.optimizer is not None and expected is not None and int(
        keras.ops.convert_to_numpy(model.optimizer.iterations)
    ) != expected:
        raise CheckpointError(
            f"checkpoint {path} holds no optimizer state for step {step}; it cannot resume "
            "training exactly."
        )
    return state


def latest_good_checkpoint(directory, report=print):
    """`(step, path)` of the newest checkpoint in `directory` that passes
    `verify_checkpoint`, or None; each damaged newer one is reported in one line."""
    for step, path in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointDamagedError as error:
            report(f"{error} Skipping it for the checkpoint before it.")
            continue
        return step, path
    return None


def restore_latest(directory, model, report=print):
    """Restores the newest good checkpoint of `directory` into `model` (damaged newer ones
    are reported in one line each and skipped); returns `(step, state)`, or None when
    `directory` holds no checkpoint.

    Raises:
        CheckpointError: every checkpoint is damaged, or one does not fit `model`.
    """
    checkpoints = list_checkpoints(directory)
    for step, path in reversed(checkpoints):
        try:
            return step, restore_checkpoint(path, model)
        except CheckpointDamagedError as error:
            report(f"{error} Skipping it for the checkpoint before it.")
    if checkpoints:
        raise CheckpointError(
            f"every checkpoint in {directory} is damaged; nothing to resume from. Start a "
            "new run directory (or delete the checkpoints to train this one from scratch).")
    return None


def _lora_layers(model):
    return list(getattr(model, "lora_layers", []))


def _relative_paths(layers):
    """Layer paths without the model's own name (which Keras numbers per session)."""
    return [layer.path.split("/", 1)[-1] for layer in layers]


def _restore_lora(path, model):
    """Puts back the adapted layers' frozen kernels and adapters (see the module doc)."""
    lora_layers = _lora_layers(model)
    if not lora_layers:
        return
    with np.load(path / LORA_FILE) as saved:
        values = [saved[f"arr_{index}"] for index in range(len(saved.files))]
    variables = [variable for layer in lora_layers
                 for variable in (layer._kernel, layer.lora_kernel_a, layer.lora_kernel_b)]
    if len(values) != len(variables):
        raise ValueError(f"{LORA_FILE} holds {len(values)} arrays, the model's LoRA "
                         f"layers {len(variables)}.")
    for variable, value in zip(variables, values):
        variable.assign(value)


#: Config entries that do not shape a model (names are numbered per process).
_NOT_SETTINGS = ("name", "trainable", "build_config", "compile_config", "module",
                 "registered_name")


def _settings(config, prefix=""):
    """A config's settings as a flat dict; a serialised sublayer's (a task's encoder)
    under `"encoder.hidden_dim"` and so on."""
    flat = {}
    for key, value in config.items():
        if key in _NOT_SETTINGS:
            continue
        if isinstance(value, dict) and "class_name" in value and "config" in value:
            flat[f"{prefix}{key}"] = value["class_name"]
            flat.update(_settings(value["config"], f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _config_differences(state, model):
    differences = []
    if state.get("model_class") != type(model).__name__:
        differences.append(f"it holds a {state.get('model_class')}, not a {type(model).__name__}")
        return differences
    saved_lora = state.get("lora_layers", [])
    current_lora = _relative_paths(_lora_layers(model))
    if saved_lora != current_lora:
        differences.append(f"LoRA layers: saved {saved_lora or 'none'}, now "
                           f"{current_lora or 'none'}")
    saved = _settings(state.get("model_config", {}))
    current = _settings(_comparable(model.get_config()))
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            differences.append(f"{key}: saved {saved.get(key)!r}, now {current.get(key)!r}")
    return differences


class CheckpointEveryEpoch(keras.callbacks.Callback):
    """Saves a checkpoint at the end of every epoch of `fit`.

    Args:
        directory: the checkpoint folder, e.g. `runs/NAME/checkpoints`.
        steps_per_epoch: steps per epoch, to turn epochs into global steps.
        keep: how many checkpoints to keep.
    """

    def __init__(self, directory, steps_per_epoch, keep=3):
        super().__init__()
        self.directory = Path(directory)
        self.steps_per_epoch = steps_per_epoch
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        bad = [f"{name} is {logs[name]}" for name in ("loss", "val_loss")
               if logs.get(name) is not None and not math.isfinite(float(logs[name]))]
        if not bad and not all(np.isfinite(value).all() for value in self.model.get_weights()):
            bad = ["a weight is not finite"]
        if bad:
            # Never replace a good checkpoint with diverged weights.
            print(f"Not saving a checkpoint after epoch {epoch + 1}: {', '.join(bad)}.")
            return
        step = (epoch + 1) * self.steps_per_epoch
        save_checkpoint(self.directory, self.model, step=step, epoch=epoch + 1, keep=self.keep)


def load_checkpoint_model(path):
    """The model of a checkpoint, rebuilt from its saved config, without optimizer state
    (the checkpoint verified first: `verify_checkpoint`)."""
    path = Path(path)
    state = verify_checkpoint(path)
    try:
        model_class = keras.saving.get_registered_object(f"tfllm>{state['model_class']}")
        config = state["model_config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupted: {error}") from None
    if model_class is None:
        raise CheckpointError(f"checkpoint {path} holds an unknown model {state['model_class']!r}.")
    model = model_class.from_config(config)
    model.build((None, None))
    try:
        # The file also holds optimizer variables, which an uncompiled model skips.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy.load_weights(model, path / WEIGHTS_FILE)
    except (ValueError, KeyError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} could not be loaded: {error}") from None
    return model


class KeepBestWeights(keras.callbacks.Callback):
    """When training ends, puts back the weights of the epoch with the best `monitor`.

    Early stopping without stopping: every epoch runs (so the checkpoints and curves are
    those of the whole run), and the model leaves `fit` with the weights that scored best
    on the held-out data. A resumed run keeps the best of the epochs it ran itself.

    Args:
        monitor: a Keras log name, e.g. `"val_accuracy"`.
        mode: `"max"` or `"min"`: whether a larger value is better.
    """

    def __init__(self, monitor="val_accuracy", mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'; got {mode!r}.")
        self.monitor, self.mode = monitor, mode
        self.best = None
        self.best_epoch = None
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.best_epoch = value, epoch + 1
            self._weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)
