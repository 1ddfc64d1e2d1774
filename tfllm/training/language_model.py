"""Training and evaluating next-token language models with `model.fit`.

`train_and_evaluate` is the whole job behind `tfllm train` and the example
scripts: it builds the model in the strategy's scope, trains it with
`model.fit` from the last checkpoint of its run directory (if any), writes
TensorBoard logs, scores the held-out documents, samples text and saves the
run. The pieces (`TrainingConfig`, `compile_language_model`,
`fit_language_model`, `held_out_loss`) are there for your own loops.
"""

import contextlib
import dataclasses
import math
import time

import keras
import tensorflow as tf

from tfllm.constants import PRECISIONS
from tfllm.data.datasets import encode_documents, language_model_dataset
from tfllm.generation import generate_text
from tfllm.layers.validation import check_positive_int
from tfllm.metrics import Perplexity
from tfllm.training.callbacks import HParamsSummary, TextSamples, TrainingSummaries
from tfllm.training.checkpoints import (
    CheckpointError,
    CheckpointEveryEpoch,
    list_checkpoints,
    restore_checkpoint,
)
from tfllm.runs import RunDirectory
from tfllm.training.runs import save_run
from tfllm.training.schedules import WarmupCosineDecay
from tfllm.training.strategy import (
    describe_strategy,
    is_chief,
    jit_compile_for,
    with_data_sharding,
)




@dataclasses.dataclass
class TrainingConfig:
    """How to train: window, batch, length of training, optimiser and precision.

    Attributes:
        sequence_length: tokens per training window `T`.
        batch_size: windows per step: the global batch, split between the
            replicas of a `tf.distribute` strategy.
        steps: optimiser steps in total.
        steps_per_epoch: steps between validations, checkpoints, text samples
            and epoch summaries.
        peak_learning_rate: AdamW's rate after warm-up.
        warmup_steps: steps of linear warm-up (then cosine decay to 10 %).
        weight_decay: AdamW's decoupled weight decay; not applied to biases
            and normalisation parameters.
        clip_norm: global gradient-norm clipping (see the README on clipping
            under several replicas).
        jit_compile: compile train steps with XLA where the strategy allows
            (one replica); faster for the GPT on this CPU, slower for the LSTM.
        precision: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (Keras adds dynamic loss scaling for the latter).
        validation_batches: batches of held-out text scored after each epoch
            (the full held-out score comes from `held_out_loss`).
        seed: seed of the initial weights, window offsets and order.
    """

    sequence_length: int = 256
    batch_size: int = 32
    steps: int = 2000
    steps_per_epoch: int = 200
    peak_learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    jit_compile: bool = True
    precision: str = "float32"
    validation_batches: int = 16
    seed: int = 1

    def __post_init__(self):
        for name in ("sequence_length", "batch_size", "steps", "steps_per_epoch",
                     "validation_batches"):
            check_positive_int(name, getattr(self, name))
        if not self.peak_learning_rate > 0:
            raise ValueError(f"`peak_learning_rate` must be positive; got {self.peak_learning_rate}.")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"`warmup_steps` ({self.warmup_steps}) must be smaller than `steps` ({self.steps})."
            )
        if not self.weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0; got {self.weight_decay}.")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"`clip_norm` must be positive or None; got {self.clip_norm}.")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}."
            )

    @property
    def epochs(self):
        """Epochs of `fit`: `steps` rounded up to whole epochs."""
        return max(1, math.ceil(self.steps / self.steps_per_epoch))

    @property
    def epoch_steps(self):
        """Steps in each epoch, so that `epochs * epoch_steps` covers `steps`."""
        return math.ceil(self.steps / self.epochs)


@contextlib.contextmanager
def precision_scope(precision):
    """Layers created inside use the Keras dtype policy `precision`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(config):
    """AdamW with warm-up + cosine decay, clipping, and no decay on norms / biases."""
    schedule = WarmupCosineDecay(
        config.peak_learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.steps - config.warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        beta_2=0.99,
        global_clipnorm=config.clip_norm,
    )
    # Decaying LayerNorm scales and biases towards 0 only hurts.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def compile_language_model(model, config, strategy=None):
    """Compiles `model` for `config` inside `strategy.scope()` (default: the model's).

    The loss is cross-entropy in nats per token, with `Perplexity` as a
    metric; XLA as `config.jit_compile` asks, where the strategy allows it
    (`jit_compile_for`).
    """
    strategy = strategy or model.distribute_strategy
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config),
            metrics=[Perplexity()],
            jit_compile=jit_compile_for(strategy, config.jit_compile),
        )
    model._tfllm_training_config = config  # what `fit_language_model` checks
    return model


def training_dataset(train_ids, config, initial_step=0):
    """The repeated, shuffled training batches, from batch `initial_step` on.

    The sequence of batches depends only on the stream and `config.seed`, so
    a resumed run skips exactly the batches it has trained on, and every
    worker of a multi-worker run sees the same global batches (each keeps
    its share, `with_data_sharding`).
    """
    data = language_model_dataset(
        train_ids, config.sequence_length, config.batch_size,
        shuffle=True, seed=config.seed, repeat=True,
    )
    if initial_step:
        data = data.skip(initial_step)
    return with_data_sharding(data)


def validation_dataset(validation_ids, config):
    """The first `config.validation_batches` batches of held-out windows, in order."""
    return with_data_sharding(
        language_model_dataset(
            validation_ids, config.sequence_length, config.batch_size, shuffle=False,
            drop_remainder=False,  # a short held-out text still gives one (partial) batch
        ).take(config.validation_batches)
    )


def fit_language_model(model, train_ids, validation_ids, config, callbacks=None, verbose=1,
                       initial_step=0):
    """Trains `model` on a token stream with `model.fit`.

    Args:
        model: a tfllm language model; compiled with `compile_language_model`
            unless that was done already for this `config` (a model compiled
            otherwise, e.g. by `held_out_loss`, is compiled again).
        train_ids: `[N]` integer training token stream.
        validation_ids: `[M]` held-out token stream, or None.
        config: a `TrainingConfig`.
        callbacks: extra Keras callbacks.
        verbose: Keras progress output (1 = progress bar with loss and ETA).
        initial_step: the global step to continue from (a restored
            checkpoint's); must fall on an epoch boundary.

    Returns:
        The Keras `History` of the run.
    """
    if not model.compiled or getattr(model, "_tfllm_training_config", None) != config:
        compile_language_model(model, config)
    if initial_step % config.epoch_steps:
        raise ValueError(
            f"`initial_step` ({initial_step}) must be a multiple of the steps per epoch "
            f"({config.epoch_steps})."
        )
    validation_data = None
    if validation_ids is not None:
        validation_data = validation_dataset(validation_ids, config)
    return model.fit(
        training_dataset(train_ids, config, initial_step),
        epochs=config.epochs,
        initial_epoch=initial_step // config.epoch_steps,
        steps_per_epoch=config.epoch_steps,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles its windows itself
    )


def held_out_loss(model, token_ids, sequence_length, batch_size=32):
    """Mean next-token loss (nats per token) over a whole held-out stream.

    The stream is cut into consecutive windows of `sequence_length`, every
    full window is scored, none twice; `exp` of the result is the perplexity.
    """
    data = with_data_sharding(language_model_dataset(
        token_ids, sequence_length, batch_size, shuffle=False, drop_remainder=False
    ))
    if not model.compiled:
        with model.distribute_strategy.scope():
            model.compile()
    return float(model.evaluate(data, verbose=0, return_dict=True)["loss"])


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


def train_and_evaluate(
    model,
    corpus,
    tokenizer,
    config,
    run_directory=None,
    *,
    strategy=None,
    resume=True,
    prompt="\n",
    sample_length=300,
    temperature=0.8,
    print_function=print,
    verbose=1,
    run_config=None,
):
    """The whole job: train on `corpus.train`, score the held-out documents, sample, save.

    With a run directory, training is resumable: the config and tokenizer
    are written first, a checkpoint after every epoch, and running the same
    job again continues from the latest checkpoint at the same step, with
    the same optimizer state and the same next batches. TensorBoard logs go
    to `run_directory/logs` (see `tfllm.training.callbacks`).

    Held-out losses are over the whole validation and test documents (see
    `held_out_loss`), in nats per token.

    Args:
        model: a function of no arguments that creates the model (called in
            the strategy's scope and the precision's dtype policy), or a
            model already created in `strategy.scope()`, not yet compiled.
        corpus: a `tfllm.data.Corpus`.
        tokenizer: the tokenizer the model's vocabulary comes from.
        config: a `TrainingConfig`.
        run_directory: where the run lives (`runs/NAME`); None to keep
            nothing (no checkpoints, logs or saved model).
        strategy: a `tf.distribute.Strategy` (`resolve_strategy`); default:
            the strategy in scope.
        resume: continue from the run's latest checkpoint. With False, a run
            directory that holds checkpoints is refused rather than overwritten.
        prompt: text to start the samples from.
        sample_length: tokens of the final sample (TensorBoard's per-epoch
            samples are up to 200 tokens).
        temperature: sampling temperature of the samples.
        print_function: where progress lines go.
        verbose: Keras progress output (1: a progress bar with loss and ETA).
        run_config: more entries for the run's `config.json` (e.g. where a
            fine-tuning run started from).

    Returns:
        A dict of figures: held-out losses, time, tokens per second, the sample.

    Raises:
        CheckpointError: the run directory holds a checkpoint this training
            cannot continue (other settings, corrupted files), or `resume` is
            False and the run directory holds checkpoints.
    """
    strategy = strategy or tf.distribute.get_strategy()
    run = RunDirectory(run_directory) if run_directory is not None else None
    streams = {split: encode_documents(tokenizer, corpus.documents(split)) for split in
               ("train", "validation", "test")}
    held_out = {split: len(streams[split]) > config.sequence_length
                for split in ("validation", "test")}
    tokens_per_step = config.batch_size * config.sequence_length
    print_function(
        f"Training on {len(streams['train']):,} tokens for {config.steps} steps of "
        f"{config.batch_size} × {config.sequence_length} tokens "
        f"({config.steps * tokens_per_step / len(streams['train']):.2f} passes over the "
        "training text)."
    )

    def fit(model, callbacks, initial_step):
        history = fit_language_model(
            model, streams["train"], streams["validation"] if held_out["validation"] else None,
            config, callbacks=callbacks, verbose=verbose, initial_step=initial_step)
        return history.history.get("loss", [])

    def sample(model):
        return generate_text(model, tokenizer, prompt, max_new_tokens=min(sample_length, 200),
                             temperature=temperature, seed=1)

    outcome = fit_in_run(
        model, compile_language_model, fit, config, tokenizer, run, strategy=strategy,
        resume=resume, tokens_per_step=tokens_per_step, sample_fn=sample, run_config=run_config,
        hparams_metrics=("loss", "perplexity", "val_loss", "val_perplexity",
                         "heldout_validation_loss", "heldout_test_loss"),
        print_function=print_function,
    )
    model, hparams = outcome.model, outcome.hparams
    metrics = outcome.figures(config)
    if outcome.losses:
        metrics["train_loss_last_epoch"] = float(outcome.losses[-1])
    for split in ("validation", "test"):
        if held_out[split]:
            metrics[f"{split}_loss"] = held_out_loss(
                model, streams[split], config.sequence_length, config.batch_size
            )
            print_function(
                f"Held-out {split} loss over {len(corpus.documents(split))} whole documents: "
                f"{metrics[f'{split}_loss']:.4f} nats/token "
                f"(perplexity {math.exp(metrics[f'{split}_loss']):.2f})"
            )
    print_function(
        f"Trained in {metrics['training_seconds']:.0f} s, "
        f"{metrics['tokens_per_second']:,.0f} tokens/s."
    )
    if hparams is not None:
        hparams.write_metrics({f"heldout_{split}_loss": metrics[f"{split}_loss"]
                               for split in ("validation", "test") if held_out[split]})
        hparams.close()
    metrics["sample"] = generate_text(
        model, tokenizer, prompt, max_new_tokens=sample_length, temperature=temperature, seed=1
    )
    print_function("Sample:\n" + metrics["sample"])
    if run is not None and is_chief(strategy):
        save_run(run, model, tokenizer, metrics=metrics)
        print_function(f"Saved the run to {run.path}/")
    return metrics


@dataclasses.dataclass
class FitOutcome:
    """What `fit_in_run` hands back: the trained model and how its training went."""

    model: keras.Model
    stopwatch: Stopwatch
    hparams: HParamsSummary | None  # still open: write held-out metrics, then close it
    initial_step: int
    losses: list

    def figures(self, config):
        """The run's basic figures: steps, where it resumed, seconds and tokens/s."""
        return {
            "steps": config.epochs * config.epoch_steps,
            "resumed_from_step": self.initial_step,
            "training_seconds": round(self.stopwatch.seconds, 1),
            "tokens_per_second": round(self.stopwatch.tokens_per_second, 1),
        }


def fit_in_run(model, compile_model, fit, config, tokenizer, run=None, *, strategy=None,
               resume=True, tokens_per_step, hparams_metrics, run_config=None, sample_fn=None,
               callbacks=(), print_function=print):
    """The part every training job shares: model in the strategy's scope, resuming, logs.

    Creates and compiles the model in `strategy.scope()` and `config.precision`; restores
    the run's latest checkpoint (after checking that it was written with the same
    settings and vocabulary); writes `config.json` (with `run_config` added) and the
    tokenizer; then calls `fit(model, callbacks, initial_step)`, which runs `model.fit`
    with the callbacks (tokens/s, TensorBoard summaries, text samples from `sample_fn`,
    HParams, history.csv and a checkpoint per epoch) from `initial_step` on, and returns
    the per-epoch training losses.

    Args:
        model: a function of no arguments that creates the model, or a model created in
            `strategy.scope()`.
        compile_model: `compile_model(model, config, strategy)`.
        fit: `fit(model, callbacks, initial_step)` → list of epoch losses.
        config: the `TrainingConfig`.
        tokenizer: the run's tokenizer (saved with the run, compared on resuming).
        run: the run directory (a path or a `tfllm.runs.RunDirectory`), or None to keep
            nothing.
        callbacks: more Keras callbacks, run before the ones that log and checkpoint.

    Returns:
        A `FitOutcome`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    run = None if run is None else RunDirectory(run)
    latest = None
    if run is not None:
        latest = _check_resumable(run, config, tokenizer)
        if latest is not None and not resume:
            raise CheckpointError(
                f"{run.path} already holds checkpoints (the latest at step {latest[0]}); resume "
                "it, or choose another run directory."
            )
    keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
    with strategy.scope(), precision_scope(config.precision):
        if not isinstance(model, keras.Model):
            model = model()
        if strategy.num_replicas_in_sync > 1 and model._distribute_strategy is not strategy:
            raise ValueError(
                "The model was created outside the strategy's scope; pass a function that "
                "creates it, or create it in `strategy.scope()`."
            )
        compile_model(model, config, strategy)
    print_function(f"Strategy: {describe_strategy(strategy)}.")

    initial_step = 0
    if latest is not None:
        step, path = latest
        with strategy.scope():
            if not model.built:
                model.build((None, None))
            restore_checkpoint(path, model)
        initial_step = step
        print_function(f"Resuming {run.path} from its checkpoint at step {step}.")
    if run is not None and chief:
        run.write_config({
            "model_class": type(model).__name__,
            "model": model.get_config(),
            "training": dataclasses.asdict(config),
            **(run_config or {}),
        })
        run.save_tokenizer(tokenizer)

    stopwatch = Stopwatch(tokens_per_step)
    callbacks = [stopwatch, keras.callbacks.TerminateOnNaN(), *callbacks]
    hparams = None
    if run is not None:
        logs = run.logs
        hparams = HParamsSummary(
            logs,
            {"model": {"class": type(model).__name__, **_plain(model.get_config())},
             "training": dataclasses.asdict(config),
             "replicas": strategy.num_replicas_in_sync},
            metrics=hparams_metrics,
            trial_id=run.name,
        )
        callbacks += [TrainingSummaries(logs, tokens_per_step,
                                        update_freq=min(10, config.epoch_steps))]
        if sample_fn is not None:
            callbacks.append(TextSamples(logs, lambda: sample_fn(model)))
        callbacks.append(hparams)
        if chief:
            # Before the checkpoint: a kill between the two repeats an epoch's row
            # on resuming rather than losing it.
            callbacks.append(keras.callbacks.CSVLogger(str(run.history_file), append=True))
        callbacks.append(CheckpointEveryEpoch(run.checkpoints, config.epoch_steps))

    losses = []
    if initial_step >= config.epochs * config.epoch_steps:
        print_function(f"{run.path} has finished training; evaluating it again.")
    else:
        losses = fit(model, callbacks, initial_step)
    return FitOutcome(model, stopwatch, hparams, initial_step, list(losses))


def _plain(config):
    """The JSON-friendly scalars of a model config, for the HParams dashboard."""
    return {key: value for key, value in config.items()
            if isinstance(value, (bool, int, float, str)) and key not in ("name", "trainable")}
