"""Training and evaluating next-token language models with `model.fit`.

`train_and_evaluate` is the job behind `tfllm train --model gpt | lstm` and the example
scripts: it builds the model in the strategy's scope, trains it with `model.fit` from the
last checkpoint of its run directory (if any), writes TensorBoard logs, scores the
held-out documents, samples text and saves the run (through `tfllm.training.job`). The
pieces (`compile_language_model`, `fit_language_model`, `held_out_loss`) are there for
your own loops; the settings are `tfllm.training.config.TrainingConfig`.
"""

import math
import weakref

import numpy as np

from tfllm.constants import PRECISIONS  # noqa: F401  (re-exported)
from tfllm.data.datasets import encode_documents, joined_text, language_model_dataset
from tfllm.generation import generate_text
from tfllm.metrics import Perplexity, bits_per_character
from tfllm.training.callbacks import ValidationBitsPerCharacter
from tfllm.training.config import TrainingConfig, make_optimizer, precision_scope  # noqa: F401
from tfllm.training.job import (  # noqa: F401  (FitOutcome, Stopwatch re-exported)
    FitOutcome,
    Stopwatch,
    TrainingJob,
    compile_for_training,
    finish_job,
    first_batch,
    held_out_losses,
    print_training_speed,
    run_job,
)
from tfllm.training.strategy import with_data_sharding
from tfllm.training.xla_choice import resolve_jit_compile

#: The TrainingConfig each model was compiled for by `compile_language_model`.
_COMPILED_FOR = weakref.WeakKeyDictionary()


def compile_language_model(model, config, strategy=None, print_function=print):
    """Compiles `model` for `config` inside `strategy.scope()` (default: the model's).

    The loss is cross-entropy in nats per token, with `Perplexity` as a
    metric; XLA as `config.jit_compile` asks, where the strategy allows it
    (`jit_compile_for`). With `"auto"` and no choice made for `model` yet, steps
    with and without XLA are timed first on copies of it, over a batch of random
    tokens of the config's shape (`tfllm.training.xla_choice`; one line printed).
    """
    strategy = strategy or model.distribute_strategy

    def random_tokens():
        tokens = np.random.default_rng(config.seed).integers(
            0, model.vocabulary_size, (2, config.batch_size, config.sequence_length))
        return tokens[0], tokens[1]

    resolve_jit_compile(model, compile_language_model, config, strategy, random_tokens,
                        print_function=print_function)
    compile_for_training(model, config, strategy, metrics=[Perplexity()])
    _COMPILED_FOR[model] = config  # what `fit_language_model` checks
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
    if not model.compiled or _COMPILED_FOR.get(model) != config:
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


def train_and_evaluate(model, corpus, tokenizer, config, run_directory=None, *, strategy=None,
                       resume=True, prompt="\n", sample_length=300, temperature=0.8,
                       print_function=print, verbose=1, run_config=None):
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
            samples are up to 200 tokens); 0 writes no samples at all.
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
    streams, characters, held_out = _encoded_splits(corpus, tokenizer, config)
    print_function(_plan(len(streams["train"]), config))
    sample = _sampler(tokenizer, prompt, temperature, sample_length)
    job = _language_model_job(model, streams, characters, held_out, config, sample, verbose,
                              run_config)
    outcome = run_job(job, config, tokenizer, run_directory, strategy=strategy, resume=resume,
                      print_function=print_function)
    metrics = _figures_and_held_out_losses(outcome, streams, characters, held_out, corpus,
                                           config, print_function)
    print_training_speed(metrics, print_function)
    metrics["sample"] = sample(outcome.model, sample_length) if sample else ""
    if sample:
        print_function("Sample:\n" + metrics["sample"])
    finish_job(outcome, tokenizer, metrics, print_function=print_function,
               held_out={**held_out_losses(metrics, held_out),
                         **{f"heldout_{split}_bits_per_character":
                            metrics[f"{split}_bits_per_character"] for split in held_out}})
    return metrics


def _encoded_splits(corpus, tokenizer, config):
    """`({split: token stream}, {split: characters of its text}, held-out splits long
    enough for one window)` of `corpus`."""
    splits = ("train", "validation", "test")
    streams = {split: encode_documents(tokenizer, corpus.documents(split)) for split in splits}
    characters = {split: len(joined_text(corpus.documents(split))) for split in splits}
    held_out = [split for split in ("validation", "test")
                if len(streams[split]) > config.sequence_length]
    return streams, characters, held_out


def _plan(train_tokens, config):
    """The line that says how long training is, in steps and passes over the text."""
    tokens_per_step = config.batch_size * config.sequence_length
    return (f"Training on {train_tokens:,} tokens for {config.steps} steps of "
            f"{config.batch_size} × {config.sequence_length} tokens "
            f"({config.steps * tokens_per_step / train_tokens:.2f} passes over the "
            "training text).")


def _sampler(tokenizer, prompt, temperature, sample_length):
    """`sample(model, length)`, by default TensorBoard's length (up to 200 tokens); None
    when `sample_length` is 0."""
    if not sample_length:
        return None

    def sample(model, length=min(sample_length, 200)):
        return generate_text(model, tokenizer, prompt, max_new_tokens=length,
                             temperature=temperature, seed=1)

    return sample


def _language_model_job(model, streams, characters, held_out, config, sample, verbose,
                        run_config):
    """The `TrainingJob` of `train_and_evaluate`: its hooks over the encoded corpus."""
    validation_ids = streams["validation"] if "validation" in held_out else None
    callbacks = () if validation_ids is None else (
        ValidationBitsPerCharacter(len(validation_ids) / characters["validation"]),)

    def fit(model, callbacks, initial_step):
        history = fit_language_model(model, streams["train"], validation_ids, config,
                                     callbacks=callbacks, verbose=verbose,
                                     initial_step=initial_step)
        return history.history.get("loss", [])

    return TrainingJob(
        create_model=model, compile_model=compile_language_model, fit=fit,
        example_batch=lambda: first_batch(training_dataset(streams["train"], config)),
        tokens_per_step=config.batch_size * config.sequence_length, sample=sample,
        run_config=dict(run_config or {}), callbacks=callbacks,
        hparams_metrics=("loss", "perplexity", "val_loss", "val_perplexity",
                         "val_bits_per_character", "heldout_validation_loss",
                         "heldout_test_loss", "heldout_validation_bits_per_character",
                         "heldout_test_bits_per_character"))


def _figures_and_held_out_losses(outcome, streams, characters, held_out, corpus, config,
                                 print_function):
    """The run's figures, the last epoch's training loss and the held-out losses and bits
    per character (printed)."""
    metrics = outcome.figures(config)
    if outcome.losses:
        metrics["train_loss_last_epoch"] = float(outcome.losses[-1])
    for split in held_out:
        metrics[f"{split}_loss"] = loss = held_out_loss(
            outcome.model, streams[split], config.sequence_length, config.batch_size)
        metrics[f"{split}_bits_per_character"] = bits = bits_per_character(
            loss, len(streams[split]), characters[split])
        metrics[f"{split}_tokens_per_character"] = len(streams[split]) / characters[split]
        print_function(f"Held-out {split} loss over {len(corpus.documents(split))} whole "
                       f"documents: {loss:.4f} nats/token (perplexity {math.exp(loss):.2f}), "
                       f"{bits:.4f} bits/character")
    return metrics
