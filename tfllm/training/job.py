"""The training-job runner every job shares: the model in the strategy's scope, resuming
from the run's checkpoint, the run directory's files, logs, checkpoints, the end of a run.

A job (`train_and_evaluate`, the BERT jobs) describes itself with a `TrainingJob` (its
named hooks: how to create, compile and fit its model, what to sample) and hands it to
`run_job`, which returns a `FitOutcome`; `finish_job` then writes the held-out figures to
TensorBoard, saves the run and says where it went. What the jobs' hooks and ends have in
common is here too: `compile_for_training`, `fit_hook` (`model.fit` over ready datasets),
`print_training_speed` and `held_out_losses`.

What never happens to a run directory: two processes training it at once (the run's lock,
`RunDirectory.lock`, is held from `run_job` to `finish_job`); a finished run retrained or
its `model.keras` rewritten by running its command again (it is evaluated again, its
recorded figures kept); training resumed from a damaged checkpoint (the one before it is
taken, `restore_latest`); diverged weights saved (`StopOnDivergence`: the last good
checkpoint is put back and saved, then `TrainingDivergedError` ends the job).
"""

import dataclasses
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from tfllm.runs import RunDirectory
from tfllm.training.callbacks import StopOnDivergence, TextSamples, TrainingSummaries
from tfllm.training.checkpoints import CheckpointEveryEpoch, restore_latest
from tfllm.training.resuming import (
    divergence_advice,
    finished_model,
    latest_checkpoint,
    restore_latest_into,
    write_run_files,
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
from tfllm.training.xla_choice import JitChoice, recorded_jit_compile, resolve_jit_compile


#: The figures of how a run trained: a finished run evaluated again keeps its recorded ones.
TRAINING_FIGURES = ("steps", "resumed_from_step", "training_seconds", "tokens_per_second")


class TrainingDivergedError(RuntimeError):
    """The training loss became non-finite; the message says at which step and what to try."""


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
        example_batch: `example_batch()` → one training batch as `fit` sees it
            (`(x, y)` or `(x, y, sample_weight)`), for timing steps with and without
            XLA when the config's `jit_compile` is `"auto"`; None: never measured.
    """

    create_model: Callable
    compile_model: Callable
    fit: Callable
    tokens_per_step: int
    hparams_metrics: tuple = ()
    sample: Callable | None = None
    run_config: dict = dataclasses.field(default_factory=dict)
    callbacks: tuple = ()
    example_batch: Callable | None = None


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
    #: A finished run evaluated again: its metrics.json as it was (kept, model not saved).
    previous_metrics: dict | None = None
    #: `{"step", "loss", "kept_step"}` when training diverged (`finish_job` then raises).
    divergence: dict | None = None
    advice: str = ""
    lock: object = None

    def figures(self, config):
        """The run's basic figures: steps, where it resumed, seconds and tokens/s (for a
        finished run evaluated again, those it recorded when it trained)."""
        figures = {
            "steps": config.epochs * config.epoch_steps,
            "resumed_from_step": self.initial_step,
            "training_seconds": round(self.stopwatch.seconds, 1),
            "tokens_per_second": round(self.stopwatch.tokens_per_second, 1),
        }
        previous = self.previous_metrics or {}
        figures.update({key: previous[key] for key in TRAINING_FIGURES if key in previous})
        return figures


def run_job(job, config, tokenizer, run=None, *, strategy=None, resume=True,
            print_function=print):
    """The part every training job shares: model in the strategy's scope, resuming, logs.

    Takes the run's lock (the chief; `finish_job` releases it); creates and compiles the
    model (`job.create_model`, `job.compile_model`) in `strategy.scope()` and
    `config.precision`; restores the run's latest good checkpoint (after checking that it
    was written with the same settings and vocabulary); writes `config.json` (with
    `job.run_config` added) and the tokenizer; then calls `job.fit(model, callbacks,
    initial_step)` with the callbacks (tokens/s, divergence, TensorBoard summaries, text
    samples from `job.sample`, HParams, history.csv and a checkpoint per epoch). A finished
    run is not trained: its `model.keras` comes back to be evaluated again. After a
    divergence the model is that of the last good checkpoint (`FitOutcome.divergence`).

    Args:
        job: a `TrainingJob`.
        config: the `TrainingConfig`.
        tokenizer: the run's tokenizer (saved with the run, compared on resuming).
        run: the run directory (a path or a `tfllm.runs.RunDirectory`), or None to keep
            nothing.
        strategy: a `tf.distribute.Strategy`; default: the strategy in scope.
        resume: continue from the run's latest checkpoint; with False a run directory
            that holds checkpoints or a model is refused.

    Returns:
        A `FitOutcome`.

    Raises:
        tfllm.runs.RunBusyError: another process trains or exports the run.
        CheckpointError: the run cannot be continued safely (the message says why).
        TrainingDivergedError: the loss became non-finite before the first checkpoint.
    """
    strategy = strategy or tf.distribute.get_strategy()
    run = None if run is None else RunDirectory(run)
    lock = run.lock(purpose="train") if run is not None and is_chief(strategy) else None
    try:
        outcome = _run_locked(job, config, tokenizer, run, strategy, resume, print_function)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    outcome.lock = lock
    return outcome


def _run_locked(job, config, tokenizer, run, strategy, resume, print_function):
    """`run_job` once the run's lock is held."""
    latest = latest_checkpoint(run, config, tokenizer, resume)
    print_function(f"Strategy: {describe_strategy(strategy)}.")
    # A resumed run compiles its steps as it chose when it started (XLA or not).
    recorded = recorded_jit_compile(run.read_config()) if latest is not None else None
    if latest is not None and run.is_finished():
        outcome = _evaluated_again(job, config, run, strategy, print_function, recorded)
        if outcome is not None:
            return outcome
    model = _created_and_compiled(job, config, strategy, recorded, print_function)
    initial_step = (0 if latest is None
                    else restore_latest_into(model, strategy, run, print_function))
    if run is not None and is_chief(strategy):
        write_run_files(run, job, model, config, tokenizer)
    stopwatch, divergence = Stopwatch(job.tokens_per_step), StopOnDivergence()
    hparams = None if run is None else _hparams_summary(run, job, model, config, strategy)
    callbacks = [stopwatch, divergence, *job.callbacks,
                 *_run_callbacks(job, model, config, run, hparams, strategy)]
    losses = []
    if initial_step >= config.epochs * config.epoch_steps:
        print_function(f"{run.path} has finished training; evaluating it again.")
    else:
        losses = job.fit(model, callbacks, initial_step)
    outcome = FitOutcome(model, stopwatch, hparams, initial_step, list(losses), run, strategy)
    if divergence.step is not None:
        _go_back_before_divergence(outcome, divergence, config, print_function)
    return outcome


def _evaluated_again(job, config, run, strategy, print_function, recorded):
    """The `FitOutcome` of a finished run run again: its `model.keras`, to be evaluated;
    nothing trains, and the model and the recorded training figures are not written again.
    None when the file is damaged (`finished_model`)."""
    finished = finished_model(job, config, run, strategy, print_function,
                              jit_choice=recorded or JitChoice(False, "set"))
    if finished is None:
        return None
    model, previous = finished
    print_function(f"{run.path} has finished training; evaluating its {run.MODEL} again "
                   "(neither it nor the recorded training figures change).")
    total = config.epochs * config.epoch_steps
    return FitOutcome(model, Stopwatch(job.tokens_per_step), None, total, [], run, strategy,
                      previous_metrics=previous)


def _go_back_before_divergence(outcome, divergence, config, print_function):
    """After a non-finite loss: the last good checkpoint back into the model (it is what
    `finish_job` saves), or, with none, the metrics written and the job ended."""
    run, model = outcome.run, outcome.model
    restored = None
    if run is not None:
        with outcome.strategy.scope():
            restored = restore_latest(run.checkpoints, model, print_function)
    outcome.divergence = {"step": divergence.step, "loss": str(divergence.loss),
                          "kept_step": None if restored is None else restored[0]}
    outcome.advice = divergence_advice(config)
    where = f"training diverged at step {divergence.step} (loss {divergence.loss})"
    if restored is None:
        if run is not None and is_chief(outcome.strategy):
            run.write_metrics({**outcome.figures(config), "diverged": outcome.divergence})
        raise TrainingDivergedError(
            f"{where} before its first checkpoint: nothing was saved as a model. "
            + outcome.advice)
    print_function(f"The {where}; going back to its checkpoint of step {restored[0]}.")


def finish_job(outcome, tokenizer, metrics, held_out=None, print_function=print):
    """The end of every job: held-out figures to HParams, the run saved (by the chief), the
    run's lock released.

    A finished run evaluated again keeps its `model.keras` and the figures it recorded
    (`metrics` gains those it lacks); after a divergence the last good checkpoint's model
    is saved, `metrics["diverged"]` says where, and `TrainingDivergedError` is raised.

    Args:
        outcome: the job's `FitOutcome`.
        tokenizer: saved with the model.
        metrics: the dict for `metrics.json` (completed in place).
        held_out: `{name: value}` for the HParams dashboard (e.g. held-out losses).
    """
    try:
        for key, value in (outcome.previous_metrics or {}).items():
            metrics.setdefault(key, value)
        if outcome.divergence is not None:
            metrics["diverged"] = outcome.divergence
        if outcome.hparams is not None:
            outcome.hparams.write_metrics(held_out or {})
            outcome.hparams.close()
        if outcome.run is not None and is_chief(outcome.strategy):
            if outcome.previous_metrics is None:
                save_run(outcome.run, outcome.model, tokenizer, metrics=metrics)
                print_function(f"Saved the run to {outcome.run.path}/")
            else:
                outcome.run.write_metrics(metrics)
    finally:
        if outcome.lock is not None:
            outcome.lock.release()
            outcome.lock = None
    if outcome.divergence is not None:
        divergence = outcome.divergence
        raise TrainingDivergedError(
            f"training diverged at step {divergence['step']} (loss {divergence['loss']}); "
            f"the model saved is that of its last good checkpoint (step "
            f"{divergence['kept_step']}). " + outcome.advice)


def compile_for_training(model, config, strategy=None, **metrics):
    """What every job's `compile_model` does: compiles `model` in `strategy.scope()`
    (default: the model's) with AdamW for `config`, the model's own loss, XLA as
    `config.jit_compile` asks where the strategy allows it (`"auto"`: the choice made
    for `model`, `xla_choice.resolve_jit_compile`), and `metrics` (the `metrics=` /
    `weighted_metrics=` of `model.compile`)."""
    strategy = strategy or model.distribute_strategy
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config),
            jit_compile=jit_compile_for(strategy, config.jit_compile, model),
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


def _created_and_compiled(job, config, strategy, recorded, print_function):
    keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
    with strategy.scope(), precision_scope(config.precision):
        model = job.create_model() if callable(job.create_model) and not isinstance(
            job.create_model, keras.Model) else job.create_model
        if strategy.num_replicas_in_sync > 1 and model._distribute_strategy is not strategy:
            raise ValueError(
                "The model was created outside the strategy's scope; pass a function that "
                "creates it, or create it in `strategy.scope()`."
            )
    resolve_jit_compile(model, job.compile_model, config, strategy, job.example_batch,
                        recorded, print_function)
    with strategy.scope(), precision_scope(config.precision):
        job.compile_model(model, config, strategy)
    return model


def first_batch(dataset):
    """The first element of `dataset` (an `example_batch` for `TrainingJob`)."""
    return next(iter(dataset))


def _hparams_summary(run, job, model, config, strategy):
    """The run's `HParamsSummary`: the model's and the training's settings, the replicas,
    and whether the steps run with XLA (`xla`: what `jit_compile` resolved to)."""
    return HParamsSummary(
        run.logs,
        {"model": {"class": type(model).__name__, **_plain(model.get_config())},
         "training": dataclasses.asdict(config),
         "replicas": strategy.num_replicas_in_sync,
         "xla": bool(model.jit_compile)},
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
