"""The training-job runner every job shares: the model in the strategy's scope, resuming
from the run's checkpoint, the run directory's files, logs, checkpoints, the end of a run.

A job (`train_and_evaluate`, the BERT jobs) describes itself with a `TrainingJob` (its
named hooks: how to create, compile and fit its model, what to sample) and hands it to
`run_job`, which returns a `FitOutcome`; `finish_job` then writes the held-out figures to
TensorBoard, saves the run and says where it went. What the jobs' hooks and ends have in
common is here too: `compile_for_training`, `fit_hook` (`model.fit` over ready datasets),
`print_training_speed` and `held_out_losses`.
"""

import dataclasses
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from tfllm.runs import RunDirectory
from tfllm.training.callbacks import TextSamples, TrainingSummaries
from tfllm.training.checkpoints import (
    CheckpointError,
    CheckpointEveryEpoch,
    list_checkpoints,
    restore_checkpoint,
)
from tfllm.training.config import make_optimizer, precision_scope
from tfllm.training.hparams import HParamsSummary
from tfllm.training.runs import save_run
from tfllm.training.strategy import (
    describe_strategy,
    is_chief,
    jit_compile_for,
    with_data_sharding,
)


class Stopwatch(keras.callbacks.Callback):
    """Measures a `fit` run: total seconds, and tokens per second of training.

    The first step traces and compiles the train function, so throughput is
    measured from its end; `seconds` is the whole run, validation included.
    """

    def __init__(self, tokens_per_step):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.seconds = 0.0
        self.steps = 0
        self._training_seconds = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps > 1:
            self._training_seconds += time.perf_counter() - self._step_start

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self._start

    @property
    def tokens_per_second(self):
        """Training tokens per second, the first (compiling) step left out."""
        if self.steps < 2:
            return 0.0
        return (self.steps - 1) * self.tokens_per_step / max(self._training_seconds, 1e-9)


def _training_differences(saved, current):
    return [
        f"{key}: saved {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]


def _check_resumable(run, config, tokenizer):
    """The latest checkpoint of `run` if this training can continue it, else an error."""
    checkpoints = list_checkpoints(run.checkpoints)
    if not checkpoints:
        return None
    step, path = checkpoints[-1]
    try:
        saved_training = run.read_config()["training"]
        saved_vocabulary = run.read_tokenizer_json()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{run.path} holds checkpoints but its {run.CONFIG} or {run.TOKENIZER} cannot "
            f"be read ({error}); start a new run directory."
        ) from None
    differences = _training_differences(saved_training, dataclasses.asdict(config))
    if differences:
        raise CheckpointError(
            f"{run.path} was started with other training settings "
            f"({'; '.join(differences)}). Resume with the settings it was started with, or "
            "use a new run directory."
        )
    if saved_vocabulary.get("vocabulary") != tokenizer.vocabulary:
        raise CheckpointError(
            f"{run.path} was trained with another vocabulary (another corpus?); resume it "
            "with the corpus it was started with, or use a new run directory."
        )
    return step, path


@dataclasses.dataclass
class TrainingJob:
    """What a job tells `run_job`: its named hooks and what it records.

    Attributes:
        create_model: `create_model()` → the model; called in the strategy's scope and
            the config's dtype policy (a model created in `strategy.scope()` works too).
        compile_model: `compile_model(model, config, strategy)`.
        fit: `fit(model, callbacks, initial_step)` → the per-epoch training losses;
            runs `model.fit` with `callbacks` from `initial_step` on.
        tokens_per_step: tokens in one global batch (for tokens/s).
        hparams_metrics: the metric names the HParams dashboard shows.
        sample: `sample(model)` → a text for TensorBoard's Text tab after each epoch, or
            None.
        run_config: more entries for the run's `config.json` (`"job"`, ...).
        callbacks: Keras callbacks run before the ones that log and checkpoint.
    """

    create_model: Callable
    compile_model: Callable
    fit: Callable
    tokens_per_step: int
    hparams_metrics: tuple = ()
    sample: Callable | None = None
    run_config: dict = dataclasses.field(default_factory=dict)
    callbacks: tuple = ()


@dataclasses.dataclass
class FitOutcome:
    """What `run_job` hands back: the trained model and how its training went."""

    model: keras.Model
    stopwatch: Stopwatch
    hparams: HParamsSummary | None  # still open: `finish_job` writes and closes it
    initial_step: int
    losses: list
    run: RunDirectory | None = None
    strategy: tf.distribute.Strategy | None = None

    def figures(self, config):
        """The run's basic figures: steps, where it resumed, seconds and tokens/s."""
        return {
            "steps": config.epochs * config.epoch_steps,
            "resumed_from_step": self.initial_step,
            "training_seconds": round(self.stopwatch.seconds, 1),
            "tokens_per_second": round(self.stopwatch.tokens_per_second, 1),
        }


def run_job(job, config, tokenizer, run=None, *, strategy=None, resume=True,
            print_function=print):
    """The part every training job shares: model in the strategy's scope, resuming, logs.

    Creates and compiles the model (`job.create_model`, `job.compile_model`) in
    `strategy.scope()` and `config.precision`; restores the run's latest checkpoint
    (after checking that it was written with the same settings and vocabulary); writes
    `config.json` (with `job.run_config` added) and the tokenizer; then calls
    `job.fit(model, callbacks, initial_step)` with the callbacks (tokens/s, TensorBoard
    summaries, text samples from `job.sample`, HParams, history.csv and a checkpoint per
    epoch).

    Args:
        job: a `TrainingJob`.
        config: the `TrainingConfig`.
        tokenizer: the run's tokenizer (saved with the run, compared on resuming).
        run: the run directory (a path or a `tfllm.runs.RunDirectory`), or None to keep
            nothing.
        strategy: a `tf.distribute.Strategy`; default: the strategy in scope.
        resume: continue from the run's latest checkpoint; with False a run directory
            that holds checkpoints is refused.

    Returns:
        A `FitOutcome`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    run = None if run is None else RunDirectory(run)
    latest = _latest_checkpoint(run, config, tokenizer, resume)
    model = _created_and_compiled(job, config, strategy)
    print_function(f"Strategy: {describe_strategy(strategy)}.")
    initial_step = _restore(latest, model, strategy, run, print_function)
    if run is not None and is_chief(strategy):
        _write_run_files(run, job, model, config, tokenizer)
    stopwatch = Stopwatch(job.tokens_per_step)
    hparams = None if run is None else _hparams_summary(run, job, model, config, strategy)
    callbacks = [stopwatch, keras.callbacks.TerminateOnNaN(), *job.callbacks,
                 *_run_callbacks(job, model, config, run, hparams, strategy)]
    losses = []
    if initial_step >= config.epochs * config.epoch_steps:
        print_function(f"{run.path} has finished training; evaluating it again.")
    else:
        losses = job.fit(model, callbacks, initial_step)
    return FitOutcome(model, stopwatch, hparams, initial_step, list(losses), run, strategy)


def finish_job(outcome, tokenizer, metrics, held_out=None, print_function=print):
    """The end of every job: held-out figures to HParams, the run saved (by the chief).

    Args:
        outcome: the job's `FitOutcome`.
        tokenizer: saved with the model.
        metrics: the dict for `metrics.json`.
        held_out: `{name: value}` for the HParams dashboard (e.g. held-out losses).
    """
    if outcome.hparams is not None:
        outcome.hparams.write_metrics(held_out or {})
        outcome.hparams.close()
    if outcome.run is not None and is_chief(outcome.strategy):
        save_run(outcome.run, outcome.model, tokenizer, metrics=metrics)
        print_function(f"Saved the run to {outcome.run.path}/")


def compile_for_training(model, config, strategy=None, **metrics):
    """What every job's `compile_model` does: compiles `model` in `strategy.scope()`
    (default: the model's) with AdamW for `config`, the model's own loss, XLA as
    `config.jit_compile` asks where the strategy allows it, and `metrics` (the
    `metrics=` / `weighted_metrics=` of `model.compile`)."""
    strategy = strategy or model.distribute_strategy
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config),
            jit_compile=jit_compile_for(strategy, config.jit_compile),
            **metrics,
        )
    return model


def fit_hook(train_data_for, validation_data, config, verbose):
    """A `fit(model, callbacks, initial_step)` hook (`TrainingJob.fit`) over ready datasets:
    `train_data_for(initial_step)` and `validation_data` (or None)."""

    def fit(model, callbacks, initial_step):
        history = model.fit(
            with_data_sharding(train_data_for(initial_step)),
            epochs=config.epochs,
            initial_epoch=initial_step // config.epoch_steps,
            steps_per_epoch=config.epoch_steps,
            validation_data=(with_data_sharding(validation_data)
                             if validation_data is not None else None),
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the datasets shuffle themselves, reproducibly
        )
        return history.history.get("loss", [])

    return fit


def print_training_speed(figures, print_function=print):
    """Prints the time and tokens per second of a job's `FitOutcome.figures`."""
    print_function(f"Trained in {figures['training_seconds']:.0f} s, "
                   f"{figures['tokens_per_second']:,.0f} tokens/s.")


def held_out_losses(metrics, splits):
    """`{heldout_SPLIT_loss: metrics[SPLIT_loss]}`: the held-out losses, as the HParams
    dashboard names them (`finish_job`'s `held_out`)."""
    return {f"heldout_{split}_loss": metrics[f"{split}_loss"] for split in splits}


def _latest_checkpoint(run, config, tokenizer, resume):
    """`(step, path)` of the checkpoint the run continues from, or None; checked first."""
    if run is None:
        return None
    latest = _check_resumable(run, config, tokenizer)
    if latest is not None and not resume:
        raise CheckpointError(
            f"{run.path} already holds checkpoints (the latest at step {latest[0]}); resume "
            "it, or choose another run directory."
        )
    return latest


def _created_and_compiled(job, config, strategy):
    keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
    with strategy.scope(), precision_scope(config.precision):
        model = job.create_model() if callable(job.create_model) and not isinstance(
            job.create_model, keras.Model) else job.create_model
        if strategy.num_replicas_in_sync > 1 and model._distribute_strategy is not strategy:
            raise ValueError(
                "The model was created outside the strategy's scope; pass a function that "
                "creates it, or create it in `strategy.scope()`."
            )
        job.compile_model(model, config, strategy)
    return model


def _restore(latest, model, strategy, run, print_function):
    """Restores `latest` (`(step, path)` or None) into `model`; returns the step it resumes
    from (0 for a new run)."""
    if latest is None:
        return 0
    step, path = latest
    with strategy.scope():
        if not model.built:
            model.build((None, None))
        restore_checkpoint(path, model)
    print_function(f"Resuming {run.path} from its checkpoint at step {step}.")
    return step


def _write_run_files(run, job, model, config, tokenizer):
    """The run's `config.json` (model, training settings, `job.run_config`) and tokenizer."""
    run.write_config({
        "model_class": type(model).__name__,
        "model": model.get_config(),
        "training": dataclasses.asdict(config),
        **job.run_config,
    })
    run.save_tokenizer(tokenizer)


def _hparams_summary(run, job, model, config, strategy):
    """The run's `HParamsSummary`: the model's and the training's settings, the replicas."""
    return HParamsSummary(
        run.logs,
        {"model": {"class": type(model).__name__, **_plain(model.get_config())},
         "training": dataclasses.asdict(config),
         "replicas": strategy.num_replicas_in_sync},
        metrics=job.hparams_metrics, trial_id=run.name)


def _run_callbacks(job, model, config, run, hparams, strategy):
    """The callbacks that write the run directory: summaries, samples, HParams, history,
    checkpoints."""
    if run is None:
        return []
    callbacks = [TrainingSummaries(run.logs, job.tokens_per_step,
                                   update_freq=min(10, config.epoch_steps))]
    if job.sample is not None:
        callbacks.append(TextSamples(run.logs, lambda: job.sample(model)))
    callbacks.append(hparams)
    if is_chief(strategy):
        # Before the checkpoint: a kill between the two repeats an epoch's row on
        # resuming rather than losing it.
        callbacks.append(keras.callbacks.CSVLogger(str(run.history_file), append=True))
    callbacks.append(CheckpointEveryEpoch(run.checkpoints, config.epoch_steps))
    return callbacks


def _plain(config):
    """The JSON-friendly scalars of a model config, for the HParams dashboard."""
    return {key: value for key, value in config.items()
            if isinstance(value, (bool, int, float, str)) and key not in ("name", "trainable")}
