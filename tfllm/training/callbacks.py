"""TensorBoard summaries of a training run: curves and text samples.

Three Keras callbacks fill a run's log folder, one summary writer per folder
(TensorBoard's event reader follows one open event file per folder); the two
here, and `HParamsSummary` in `tfllm.training.hparams`:

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
import tensorflow as tf

from tfllm.layers.validation import check_positive_int
from tfllm.training.strategy import is_chief

TRAIN_FOLDER = "train"
VALIDATION_FOLDER = "validation"
SAMPLES_FOLDER = "samples"


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


def check_log_dir(log_dir):
    """`log_dir` as a `Path`, checked: a callback's log folder."""
    if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
        raise ValueError(f"`log_dir` must be a folder path; got {log_dir!r}.")
    return Path(log_dir)


def _numbers_only(logs):
    return {
        name: float(value)
        for name, value in (logs or {}).items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def with_perplexities(logs):
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
        self.log_dir = check_log_dir(log_dir)
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
        values = with_perplexities(logs)
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


class StopOnDivergence(keras.callbacks.Callback):
    """Stops `fit` at the first step whose training loss is not finite (NaN, infinity).

    Keras's `loss` log is the running mean of the epoch, so it turns non-finite at the
    step that diverged and stays so; it is read after every step, as Keras's own
    `TerminateOnNaN` reads it. A step's loss is that of the weights before its update,
    so the validation loss at the end of an epoch (`val_loss`), of the weights after its
    last update, is checked too. The callback records where it happened (`step`, the
    global step, counted from 1, and `loss`) and sets `model.stop_training`; what to
    keep is the job's decision (`tfllm.training.job` puts back the last good checkpoint).

    Example:

    >>> divergence = StopOnDivergence()
    >>> model.fit(data, epochs=3, steps_per_epoch=100, callbacks=[divergence])
    >>> divergence.step  # None: it did not diverge
    """

    def __init__(self):
        super().__init__()
        self.step = None
        self.loss = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.step is not None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            steps_per_epoch = (self.params or {}).get("steps") or 0
            self.step = self._epoch * steps_per_epoch + batch + 1
            self.loss = loss
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if self.step is None and loss is not None and not math.isfinite(float(loss)):
            self.step = (epoch + 1) * ((self.params or {}).get("steps") or 0)
            self.loss = float(loss)
            self.model.stop_training = True


class ValidationBitsPerCharacter(keras.callbacks.Callback):
    """Adds `val_bits_per_character` to each epoch's logs, from `val_loss` (nats per token).

    Put it before the callbacks that write logs (TensorBoard's validation scalars,
    history.csv): they see the new entry. `tokens_per_character` is the held-out text's
    (`tfllm.metrics.bits_per_character`).
    """

    def __init__(self, tokens_per_character):
        super().__init__()
        self.tokens_per_character = float(tokens_per_character)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_loss" in logs:
            logs["val_bits_per_character"] = (
                float(logs["val_loss"]) * self.tokens_per_character / math.log(2))


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
        self.log_dir = check_log_dir(log_dir)
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
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return  # diverged weights write only replacement characters
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
