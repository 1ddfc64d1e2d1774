"""A run's hyperparameters and final metrics, for TensorBoard's HParams dashboard.

`HParamsSummary` is the Keras callback that writes them into the run's log folder itself,
beside the folders of `tfllm.training.callbacks`; `flatten_hparams` turns nested settings
into the dotted names the dashboard holds.
"""

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from tfllm.training.callbacks import (
    check_log_dir,
    global_step,
    summary_writer,
    with_perplexities,
)

#: The names `HParamsSummary` reports by default: Keras log names.
DEFAULT_HPARAMS_METRICS = ("val_loss", "val_perplexity", "loss", "perplexity")


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
        self.log_dir = check_log_dir(log_dir)
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
        self._last_epoch_values = with_perplexities(logs)

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
