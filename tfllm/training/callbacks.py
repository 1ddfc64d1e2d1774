"""TensorBoard summaries of a training run: curves, text samples, hyperparameters.

Three Keras callbacks fill a run's log folder, one summary writer per folder
(TensorBoard's event reader follows one open event file per folder):

```
runs/NAME/logs/
  train/        TrainingSummaries: step/* and epoch/* scalars of training
  validation/   TrainingSummaries: epoch/* scalars of validation
  samples/      TextSamples: generated text at epoch ends
  (the folder)  HParamsSummary: hyperparameters and final/* metrics
```

Train and validation write the same `epoch/*` tags, so TensorBoard draws them
on one chart. Every summary's step is the optimiser's global step, so all
charts share one x-axis and a resumed run continues its curves.

Only the chief worker writes; other workers of a multi-worker run do the
same work (some of it reads metrics, which takes every worker) and write
nowhere. Do not point `keras.callbacks.TensorBoard` at the same folder: two
writers in one folder hide each other's events from TensorBoard's reader.
"""

import math
import numbers
import os
from pathlib import Path
from time import perf_counter

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from tfllm.layers.validation import check_positive_int
from tfllm.training.strategy import is_chief

TRAIN_FOLDER = "train"
VALIDATION_FOLDER = "validation"
SAMPLES_FOLDER = "samples"

#: The names `HParamsSummary` reports by default: Keras log names.
DEFAULT_HPARAMS_METRICS = ("val_loss", "val_perplexity", "loss", "perplexity")


def perplexity_from_loss(loss):
    """`exp(loss)` for a loss in nats per token; infinity instead of an overflow."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def summary_writer(directory):
    """A file writer for `directory` on the chief worker, a no-op writer elsewhere."""
    if is_chief():
        return tf.summary.create_file_writer(str(directory))
    return tf.summary.create_noop_writer()


def global_step(model):
    """The optimiser's step count (0 before the model is compiled)."""
    if getattr(model, "optimizer", None) is None:
        return 0
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _check_log_dir(log_dir):
    if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
        raise ValueError(f"`log_dir` must be a folder path; got {log_dir!r}.")
    return Path(log_dir)


def _numbers_only(logs):
    return {
        name: float(value)
        for name, value in (logs or {}).items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def _with_perplexities(logs):
    """Epoch logs plus `perplexity = exp(loss)` and `val_perplexity = exp(val_loss)`."""
    values = _numbers_only(logs)
    for prefix in ("", "val_"):
        if prefix + "loss" in values:
            values[prefix + "perplexity"] = perplexity_from_loss(values[prefix + "loss"])
    return values


def _loss_tracker(model):
    """The `Mean` metric behind Keras' `loss` log, or None for a custom train step."""
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "total") and hasattr(metric, "count"):
            return metric
    return None


class TrainingSummaries(keras.callbacks.Callback):
    """Scalars of training: loss, perplexity, learning rate and tokens per second.

    Writes into `log_dir/train/` every `update_freq` steps (and at the last
    step of each epoch), at the global step:

    - `step/loss`: mean training loss over the steps since the last write
      (with `update_freq=1`, each step's own loss; Keras' `loss` log is
      instead the running mean since the epoch began, and is what is
      written for a model whose custom train step has no `loss` metric);
    - `step/perplexity`: `exp(step/loss)`;
    - `step/learning_rate`: the optimiser's rate at that step (its schedule
      at the current iteration, i.e. the rate of the next update);
    - `step/tokens_per_second`: training tokens per second of train-step
      time over those steps; the first step of `fit`, which traces and
      compiles, is left out.

    and at the end of every epoch, at the global step:

    - `log_dir/train/`: `epoch/loss` (the epoch's mean training loss),
      `epoch/perplexity` (its `exp`), and `epoch/NAME` for other metrics;
    - `log_dir/validation/`: the same tags for the validation scores.

    Nothing here reads the device more often than Keras' own logs do: the
    interval loss comes from the loss metric's running sums, read once per
    write.

    Args:
        log_dir: the run's log folder, e.g. `runs/NAME/logs`.
        tokens_per_step: int, tokens in one global batch
            (`batch_size * sequence_length`).
        update_freq: int, steps between `step/*` summaries.

    Example:

    >>> model.fit(data, epochs=10, steps_per_epoch=200, validation_data=held_out,
    ...           callbacks=[TrainingSummaries("runs/gpt/logs", 32 * 256)])
    """

    def __init__(self, log_dir, tokens_per_step, update_freq=10):
        super().__init__()
        self.log_dir = _check_log_dir(log_dir)
        self.tokens_per_step = check_positive_int("tokens_per_step", tokens_per_step)
        self.update_freq = check_positive_int("update_freq", update_freq)
        self._writers = {}

    def on_train_begin(self, logs=None):
        self._writers = {
            TRAIN_FOLDER: summary_writer(self.log_dir / TRAIN_FOLDER),
            VALIDATION_FOLDER: summary_writer(self.log_dir / VALIDATION_FOLDER),
        }
        self._step = global_step(self.model)
        self._loss_tracker = _loss_tracker(self.model)
        self._compiling = True
        self._timed_steps = 0
        self._timed_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        # Keras resets its metrics before every epoch: the sums start again.
        self._summed_loss = 0.0
        self._summed_weight = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._first_batch = batch
        self._batch_start = perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = perf_counter() - self._batch_start
        steps = batch - self._first_batch + 1  # > 1 with steps_per_execution
        if self._compiling:
            self._compiling = False
        else:
            self._timed_steps += steps
            self._timed_seconds += seconds
        previous_step, self._step = self._step, self._step + steps
        steps_per_epoch = (self.params or {}).get("steps")
        last_of_epoch = steps_per_epoch is not None and batch + 1 >= steps_per_epoch
        if self._step // self.update_freq > previous_step // self.update_freq or last_of_epoch:
            self._write_step_summaries(logs)

    def _interval_loss(self, logs):
        """Mean loss of the steps since the last write, from the loss metric's sums."""
        if self._loss_tracker is None:
            return (logs or {}).get("loss")
        total = float(keras.ops.convert_to_numpy(self._loss_tracker.total))
        weight = float(keras.ops.convert_to_numpy(self._loss_tracker.count))
        new_loss, new_weight = total - self._summed_loss, weight - self._summed_weight
        self._summed_loss, self._summed_weight = total, weight
        return new_loss / new_weight if new_weight > 0 else None

    def _write_step_summaries(self, logs):
        loss = self._interval_loss(logs)
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        with self._writers[TRAIN_FOLDER].as_default(step=self._step):
            if loss is not None:
                tf.summary.scalar("step/loss", loss)
                tf.summary.scalar("step/perplexity", perplexity_from_loss(loss))
            tf.summary.scalar("step/learning_rate", learning_rate)
            if self._timed_steps:
                tf.summary.scalar(
                    "step/tokens_per_second",
                    self._timed_steps * self.tokens_per_step / max(self._timed_seconds, 1e-9),
                )
        self._timed_steps = 0
        self._timed_seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        values = _with_perplexities(logs)
        folders = {
            TRAIN_FOLDER: {k: v for k, v in values.items() if not k.startswith("val_")},
            VALIDATION_FOLDER: {k[4:]: v for k, v in values.items() if k.startswith("val_")},
        }
        for folder, scalars in folders.items():
            with self._writers[folder].as_default(step=self._step):
                for name, value in scalars.items():
                    tf.summary.scalar(f"epoch/{name}", value)
            self._writers[folder].flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _as_code_block(text):
    """Markdown that shows `text` as it is (TensorBoard renders text as Markdown)."""
    return "\n".join("    " + line for line in text.split("\n"))


class TextSamples(keras.callbacks.Callback):
    """Text the model generates, as a TensorBoard text summary after each epoch.

    Every `every_epochs` epochs calls `sample_fn()` and writes what it
    returns into `log_dir/samples/` under `tag`, at the global step: a
    rank-1 string tensor, one element per sample, each a Markdown code
    block (every line indented by four spaces) so that TensorBoard shows
    the text verbatim. Only the chief worker samples.

    Args:
        log_dir: the run's log folder, e.g. `runs/NAME/logs`.
        sample_fn: a function of no arguments returning a string or a list
            of strings, e.g. a closure around `tfllm.generation.generate_text`.
        every_epochs: int, epochs between samples.
        tag: the summary's tag.

    Example:

    >>> samples = TextSamples("runs/gpt/logs", lambda: generate_text(
    ...     model, tokenizer, "ROMEO:", max_new_tokens=200, temperature=0.8, seed=1))
    """

    def __init__(self, log_dir, sample_fn, every_epochs=1, tag="samples"):
        super().__init__()
        self.log_dir = _check_log_dir(log_dir)
        if not callable(sample_fn):
            raise ValueError(f"`sample_fn` must be a function of no arguments; got {sample_fn!r}.")
        self.sample_fn = sample_fn
        self.every_epochs = check_positive_int("every_epochs", every_epochs)
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"`tag` must be a non-empty string; got {tag!r}.")
        self.tag = tag
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = summary_writer(self.log_dir / SAMPLES_FOLDER)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs or not is_chief():
            return
        samples = self.sample_fn()
        if isinstance(samples, str):
            samples = [samples]
        if not isinstance(samples, (list, tuple)) or not samples or not all(
            isinstance(sample, str) for sample in samples
        ):
            raise TypeError(
                f"`sample_fn` must return a string or a non-empty list of strings; got {samples!r}."
            )
        with self._writer.as_default(step=global_step(self.model)):
            tf.summary.text(self.tag, tf.constant([_as_code_block(s) for s in samples]))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def flatten_hparams(hparams, prefix=""):
    """A flat `{name: bool | int | float | str}` dict of hyperparameters.

    Nested dicts become dotted names (`{"model": {"num_layers": 4}}` gives
    `"model.num_layers"`); values TensorBoard cannot hold (None, lists,
    tuples) become their `repr`.
    """
    if not isinstance(hparams, dict):
        raise ValueError(f"`hparams` must be a dict; got {hparams!r}.")
    flat = {}
    for name, value in hparams.items():
        name = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten_hparams(value, prefix=name + "."))
        elif isinstance(value, np.generic):
            flat[name] = value.item()
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = repr(value)
    return flat


def _hparams_metric(name):
    """The dashboard's column for metric `name`: `val_loss` shows as "validation loss"."""
    if name.startswith("val_"):
        return hp.Metric(f"final/{name}", display_name="validation " + name[4:],
                         dataset_type=hp.Metric.VALIDATION)
    if name in ("loss", "perplexity"):
        return hp.Metric(f"final/{name}", display_name="training " + name,
                         dataset_type=hp.Metric.TRAINING)
    return hp.Metric(f"final/{name}", display_name=name.replace("_", " "))


class HParamsSummary(keras.callbacks.Callback):
    """The run's hyperparameters and final metrics, for TensorBoard's HParams dashboard.

    At the start of training writes, into `log_dir` itself (the HParams
    "session", whose `train/` and `validation/` folders are its runs), the
    experiment configuration (`hp.hparams_config`: every hyperparameter and
    one metric per name in `metrics`) and the session's values
    (`hp.hparams`). At the end of training writes the final value of each
    of `metrics` found in the last epoch's logs as a scalar `final/NAME`,
    which the dashboard shows beside the hyperparameters. `perplexity` and
    `val_perplexity` are `exp` of `loss` and `val_loss`. Figures measured
    after `fit` (e.g. a held-out loss) go in with `write_metrics`, provided
    their names were listed in `metrics`.

    TensorBoard uses one experiment configuration per log folder it is
    given (any one, when several runs have one), so give every run the same
    hyperparameter names to compare runs side by side.

    Args:
        log_dir: the run's log folder, e.g. `runs/NAME/logs`.
        hparams: dict of hyperparameters: values bool, int, float or str;
            nested dicts are flattened (`flatten_hparams`).
        metrics: names of the final metrics, as Keras logs name them
            (`val_loss`) or as later given to `write_metrics`.
        trial_id: str or None, the session's group name in the dashboard
            (defaults to a hash of the hyperparameters).

    Example:

    >>> hparams = HParamsSummary("runs/gpt/logs", {"num_layers": 4, "batch_size": 32})
    >>> model.fit(..., callbacks=[hparams])
    >>> hparams.write_metrics({"test_loss": 1.52})  # if "test_loss" is in `metrics`
    """

    def __init__(self, log_dir, hparams, metrics=DEFAULT_HPARAMS_METRICS, trial_id=None):
        super().__init__()
        self.log_dir = _check_log_dir(log_dir)
        self.hparams = flatten_hparams(hparams)
        if isinstance(metrics, str) or not all(isinstance(m, str) and m for m in metrics):
            raise ValueError(f"`metrics` must be a list of metric names; got {metrics!r}.")
        self.metrics = tuple(metrics)
        if trial_id is not None and not isinstance(trial_id, str):
            raise ValueError(f"`trial_id` must be a string or None; got {trial_id!r}.")
        self.trial_id = trial_id
        self._writer = None
        self._last_epoch_values = {}

    def _ensure_writer(self):
        # One writer for the whole life of the callback: a second event file
        # in the same folder would hide the first from TensorBoard's reader.
        if self._writer is None:
            self._writer = summary_writer(self.log_dir)
        return self._writer

    def on_train_begin(self, logs=None):
        self._last_epoch_values = {}
        with self._ensure_writer().as_default(step=0):
            hp.hparams_config(
                hparams=[hp.HParam(name) for name in sorted(self.hparams)],
                metrics=[_hparams_metric(name) for name in self.metrics],
            )
            hp.hparams(self.hparams, trial_id=self.trial_id)
        self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch_values = _with_perplexities(logs)

    def on_train_end(self, logs=None):
        self.write_metrics(
            {name: self._last_epoch_values[name] for name in self.metrics
             if name in self._last_epoch_values}
        )

    def write_metrics(self, values, step=None):
        """Writes `{name: value}` as `final/NAME` scalars at `step` (default: the global step).

        Names not declared in `metrics` are written too, but the HParams
        dashboard only shows the declared ones.
        """
        if step is None:
            step = global_step(self.model) if self.model is not None else 0
        with self._ensure_writer().as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"final/{name}", float(value))
        self._writer.flush()

    def close(self):
        """Closes the event file (also closed when the callback is garbage collected)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
